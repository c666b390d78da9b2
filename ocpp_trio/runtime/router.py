"""The handler API of both sides: how an application answers its peer's requests.

A router maps request classes (one per action *and* version, since every version has its own
generated classes) to async handlers ``async def f(peer, request) -> <request>.RESPONSE``.
:class:`RouterBase` is generic over the peer its handlers receive; the CSMS's
:class:`~ocpp_trio.Router` (handlers get the :class:`~ocpp_trio.Station`) and the station
side's :class:`~ocpp_trio.ChargePointRouter` (handlers get the :class:`~ocpp_trio.ChargePoint`)
are thin subclasses, defined next to their peer classes so that no module needs the other
only for its types::

    router = Router()

    @router.on(v2_0_1.BootNotificationRequest)
    async def boot(
        station: Station, request: v2_0_1.BootNotificationRequest
    ) -> v2_0_1.BootNotificationResponse:
        ...

mypy checks that the handler takes that request and returns exactly its response type: ``on``
captures the request class in an invariant slot and its response type through a self-typed
``__call__``, so a handler returning the wrong response (or taking the wrong request, or
another peer) is an argument-type error at the decorator.

Handlers may also live on an object, as methods marked with :func:`handles` and registered with
:meth:`RouterBase.include`.  Outcomes at run time (see :mod:`ocpp_trio.runtime.session`): the
returned response is sent; :class:`~ocpp_trio.CallError` raised means that CALLERROR; anything
else, or a wrong return type, means ``InternalError`` (logged with the handler's name).  A
request without a handler goes to the fallback, else to the side's built-in answers, else it
is answered ``NotSupported``.  BootNotification has no implicit default on the CSMS side (the
CSMS must decide) unless :meth:`CSMSRouterBase.set_default_boot` is called.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Generic, TypeVar

import attrs

from ocpp_trio import messages
from ocpp_trio.messages._base import Request, Response, Send
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version

__all__ = [
    "AnyHandler",
    "CSMSRouterBase",
    "DefaultBoot",
    "Handler",
    "RouterBase",
    "SendHandler",
    "boot_response",
    "handler_name",
    "handles",
    "heartbeat_response",
]

Q = TypeVar("Q", bound=Request[Any])
Q2 = TypeVar("Q2", bound=Request[Any])
Q_co = TypeVar("Q_co", bound=Request[Any], covariant=True)
R = TypeVar("R", bound=Response)
M = TypeVar("M", bound=Send)
S = TypeVar("S")
P = TypeVar("P")
PeerT = TypeVar("PeerT")

#: An async handler of one request type, given the peer of type ``PeerT``.
Handler = Callable[[PeerT, Q], Awaitable[R]]
#: The untyped form the runtime calls (what :meth:`RouterBase.handler_for` returns).
AnyHandler = Callable[[PeerT, Request[Any]], Awaitable[Response]]
#: An async handler of a 2.1 SEND message (never answered).
SendHandler = Callable[[PeerT, M], Awaitable[None]]

_MARK: Final = "__ocpp_trio_handles__"


@attrs.frozen
class DefaultBoot:
    """The answer given to a BootNotification that no typed handler handles."""

    status: RegistrationStatus
    interval: int


class _On(Generic[PeerT, Q_co, Q]):
    """The decorator :meth:`RouterBase.on` returns.

    ``Q_co`` (covariant) lets the self-type of ``__call__`` read the response type ``R`` out of
    ``Request[R]``; ``Q`` (invariant) pins the exact request class the handler must accept.
    """

    def __init__(self, router: RouterBase[PeerT], request_type: type[Q]) -> None:
        self._router = router
        self._request_type = request_type

    def __call__(
        self: _On[PeerT, Request[R], Q2], handler: Callable[[PeerT, Q2], Awaitable[R]]
    ) -> Callable[[PeerT, Q2], Awaitable[R]]:
        self._router._add(self._request_type, handler)
        return handler


class _Handles(Generic[Q_co, Q]):
    """The decorator :func:`handles` returns (for methods; see :meth:`Router.include`)."""

    def __init__(self, request_type: type[Q]) -> None:
        self._request_type = request_type

    def __call__(
        self: _Handles[Request[R], Q2], method: Callable[[S, P, Q2], Awaitable[R]]
    ) -> Callable[[S, P, Q2], Awaitable[R]]:
        marks: list[type[Any]] = list(getattr(method, _MARK, ()))
        marks.append(self._request_type)
        setattr(method, _MARK, tuple(marks))
        return method


def handles(request_type: type[Q]) -> _Handles[Q, Q]:
    """Mark a method as the handler of ``request_type``; register its object with
    :meth:`RouterBase.include`.  Type-checked like :meth:`Router.on`::

        class Handlers:
            @handles(v1_6.HeartbeatRequest)
            async def heartbeat(
                self, station: Station, request: v1_6.HeartbeatRequest
            ) -> v1_6.HeartbeatResponse: ...

        router.include(Handlers())
    """
    return _Handles(request_type)


class _OnSend(Generic[PeerT, M]):
    def __init__(self, router: CSMSRouterBase[PeerT], message_type: type[M]) -> None:
        self._router = router
        self._message_type = message_type

    def __call__(
        self, handler: Callable[[PeerT, M], Awaitable[None]]
    ) -> Callable[[PeerT, M], Awaitable[None]]:
        self._router._add_send(self._message_type, handler)
        return handler


class RouterBase(Generic[PeerT]):
    """Maps request classes to handlers taking a peer of type ``PeerT``.

    A router is plain data: it can be shared by several CSMS objects or charge points and
    filled before or after it is handed to one (lookups happen per CALL).
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Request[Any]], AnyHandler[PeerT]] = {}
        self._fallback: AnyHandler[PeerT] | None = None

    def on(self, request_type: type[Q]) -> _On[PeerT, Q, Q]:
        """Decorator registering the handler of ``request_type`` (replacing an earlier one).

        The handler is ``async def (peer, request) -> <request_type>.RESPONSE``; it runs in
        the connection's handler task, may ``await peer.call(...)``, and may raise
        :class:`~ocpp_trio.CallError` to answer with a chosen code.
        """
        if not (isinstance(request_type, type) and issubclass(request_type, Request)):
            raise TypeError(f"{request_type!r} is not a request class")
        return _On(self, request_type)

    def fallback(self, handler: AnyHandler[PeerT]) -> AnyHandler[PeerT]:
        """Decorator registering an untyped handler for every request without its own.

        It may raise ``CallError(ErrorCode.NOT_SUPPORTED, ...)`` to decline (the side's
        built-in answers then apply, else ``NotSupported`` goes out); its return value is
        checked at run time (a wrong type is answered ``InternalError``).
        """
        if not _is_async(handler):
            raise TypeError("the fallback handler must be an async function")
        self._fallback = handler
        return handler

    def include(self, obj: object) -> None:
        """Register every method of ``obj`` marked with :func:`handles`."""
        found = False
        for _name, member in inspect.getmembers(obj, inspect.ismethod):
            for request_type in getattr(member, _MARK, ()):
                self._add(request_type, member)
                found = True
        if not found:
            raise ValueError(f"{type(obj).__name__} has no method marked with @handles")

    def remove(self, request_type: type[Request[Any]]) -> None:
        """Forget the handler of ``request_type`` (no error when there is none)."""
        self._handlers.pop(request_type, None)

    def handler_for(self, request_type: type[Request[Any]]) -> AnyHandler[PeerT] | None:
        """The handler for ``request_type``: its own, else the fallback, else ``None``."""
        return self._handlers.get(request_type, self._fallback)

    def has_handler(self, request_type: type[Request[Any]]) -> bool:
        """Whether ``request_type`` has a handler of its own (the fallback does not count)."""
        return request_type in self._handlers

    def __iter__(self) -> Iterator[type[Request[Any]]]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def _add(self, request_type: type[Any], handler: Callable[..., Awaitable[Any]]) -> None:
        if not _is_async(handler):
            raise TypeError(f"the handler of {request_type.__name__} must be an async function")
        self._handlers[request_type] = handler


class CSMSRouterBase(RouterBase[PeerT]):
    """A router answering a station: also 2.1 SEND handlers and a default BootNotification
    answer (the CSMS's :class:`~ocpp_trio.Router` is this with the
    :class:`~ocpp_trio.Station` as the peer)."""

    def __init__(self) -> None:
        super().__init__()
        self._send_handlers: dict[type[Send], SendHandler[PeerT, Any]] = {}
        self.default_boot: DefaultBoot | None = None

    def on_send(self, message_type: type[M]) -> _OnSend[PeerT, M]:
        """Decorator registering the handler of a 2.1 SEND message (``async def (station,
        message) -> None``).  SENDs without a handler are dropped (they are never answered)."""
        if not (isinstance(message_type, type) and issubclass(message_type, Send)):
            raise TypeError(f"{message_type!r} is not a SEND message class")
        return _OnSend(self, message_type)

    def set_default_boot(
        self,
        status: RegistrationStatus | str = RegistrationStatus.ACCEPTED,
        interval: int = 300,
    ) -> None:
        """Answer every BootNotification without a typed handler (any version) with ``status``
        and ``interval`` (seconds; the heartbeat interval when Accepted, else the retry delay).

        Without this and without a handler, BootNotification is answered ``NotSupported``, so
        the station can never be accepted.
        """
        if interval < 0:
            raise ValueError(f"interval must be >= 0, not {interval}")
        self.default_boot = DefaultBoot(RegistrationStatus(status), interval)

    def handler_for(self, request_type: type[Request[Any]]) -> AnyHandler[PeerT] | None:
        """The handler for ``request_type``: its own, else the default boot answer (for
        BootNotification, once :meth:`set_default_boot` was called), else the fallback, else
        ``None``."""
        handler = self._handlers.get(request_type)
        if handler is not None:
            return handler
        if self.default_boot is not None and request_type.ACTION == "BootNotification":
            return self._answer_default_boot
        return self._fallback

    async def _answer_default_boot(self, peer: PeerT, request: Request[Any]) -> Response:
        default = self.default_boot
        assert default is not None
        return boot_response(request.VERSION, default.status, default.interval)

    def send_handler_for(self, message_type: type[Send]) -> SendHandler[PeerT, Any] | None:
        """The handler of a SEND message class, or ``None``."""
        return self._send_handlers.get(message_type)

    def _add_send(self, message_type: type[Send], handler: Callable[..., Awaitable[None]]) -> None:
        if not _is_async(handler):
            raise TypeError(f"the handler of {message_type.__name__} must be an async function")
        self._send_handlers[message_type] = handler


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(type(handler), "__call__", None)  # noqa: B004 - async callable objects
    )


def handler_name(handler: object) -> str:
    """A readable name of a handler for logs (``module.qualname``)."""
    func = getattr(handler, "__func__", handler)
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(handler)
    return f"{module}.{qualname}"


def _wire_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def boot_response(version: Version, status: RegistrationStatus | str, interval: int) -> Response:
    """A BootNotificationResponse of ``version`` with the current UTC time."""
    spec = messages.actions(version)["BootNotification"]
    assert spec.response is not None
    payload = {"currentTime": _wire_now(), "interval": interval, "status": str(status)}
    return spec.response.from_json(payload)


def heartbeat_response(version: Version) -> Response:
    """A HeartbeatResponse of ``version`` carrying the current UTC time."""
    spec = messages.actions(version)["Heartbeat"]
    assert spec.response is not None
    return spec.response.from_json({"currentTime": _wire_now()})
