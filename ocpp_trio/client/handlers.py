"""The station side's handler registry: how a charge point answers the CSMS's requests.

:class:`ChargePointRouter` is the station-side twin of :class:`~ocpp_trio.Router`: it maps
request classes of CSMS-to-station actions (one per action and version) to async handlers, and
mypy checks each handler's request and response types at the decorator::

    router = ChargePointRouter()

    @router.on(v2_0_1.ResetRequest)
    async def reset(cp: ChargePoint, request: v2_0_1.ResetRequest) -> v2_0_1.ResetResponse:
        cp.request_reboot("RemoteReset")
        return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)

A handler returns the response (sent as the CALLRESULT), raises
:class:`~ocpp_trio.CallError` (sent as that CALLERROR), or raises anything else (answered
``InternalError`` and logged).  A request without a handler goes to the fallback
(:meth:`ChargePointRouter.fallback`, untyped), else to the built-in answers (TriggerMessage for
BootNotification and Heartbeat), else it is answered ``NotSupported``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ocpp_trio.messages._base import Request, Response

if TYPE_CHECKING:
    from ocpp_trio.client.charge_point import ChargePoint

__all__ = ["AnyChargePointHandler", "ChargePointHandler", "ChargePointRouter"]

Q = TypeVar("Q", bound=Request[Any])
Q2 = TypeVar("Q2", bound=Request[Any])
Q_co = TypeVar("Q_co", bound=Request[Any], covariant=True)
R = TypeVar("R", bound=Response)

#: An async handler of one CSMS request type.
ChargePointHandler = Callable[["ChargePoint", Q], Awaitable[R]]
#: The untyped form the runtime calls (and :meth:`ChargePointRouter.fallback` takes).
AnyChargePointHandler = Callable[["ChargePoint", Request[Any]], Awaitable[Response]]


class _On(Generic[Q_co, Q]):
    """The decorator :meth:`ChargePointRouter.on` returns (the typing trick of
    :class:`~ocpp_trio.Router`: ``Q_co`` yields the response type, ``Q`` pins the request)."""

    def __init__(self, router: ChargePointRouter, request_type: type[Q]) -> None:
        self._router = router
        self._request_type = request_type

    def __call__(
        self: _On[Request[R], Q2], handler: Callable[[ChargePoint, Q2], Awaitable[R]]
    ) -> Callable[[ChargePoint, Q2], Awaitable[R]]:
        self._router._add(self._request_type, handler)
        return handler


class ChargePointRouter:
    """Maps the CSMS's request classes to the charge point's handlers.

    Plain data: it may be shared by many charge points (a simulator runs hundreds on one) and
    filled before or after they start.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Request[Any]], AnyChargePointHandler] = {}
        self._fallback: AnyChargePointHandler | None = None

    def on(self, request_type: type[Q]) -> _On[Q, Q]:
        """Decorator registering the handler of ``request_type`` (replacing an earlier one).

        The handler is ``async def (charge_point, request) -> <request_type>.RESPONSE``; it runs
        in the charge point's handler task and may itself ``await charge_point.call(...)``.
        """
        if not (isinstance(request_type, type) and issubclass(request_type, Request)):
            raise TypeError(f"{request_type!r} is not a request class")
        return _On(self, request_type)

    def fallback(self, handler: AnyChargePointHandler) -> AnyChargePointHandler:
        """Decorator registering an untyped handler for every request without its own.

        It may raise ``CallError(ErrorCode.NOT_SUPPORTED, ...)`` to decline (the built-in
        answers then apply, else ``NotSupported`` goes out); its return value is checked at run
        time (a wrong type is answered ``InternalError``).
        """
        if not _is_async(handler):
            raise TypeError("the fallback handler must be an async function")
        self._fallback = handler
        return handler

    def remove(self, request_type: type[Request[Any]]) -> None:
        """Forget the handler of ``request_type`` (no error when there is none)."""
        self._handlers.pop(request_type, None)

    def handler_for(self, request_type: type[Request[Any]]) -> AnyChargePointHandler | None:
        """The handler of ``request_type``: its own, else the fallback, else ``None``."""
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


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(type(handler), "__call__", None)  # noqa: B004 - async callable objects
    )
