"""A scripted station for testing a CSMS: :class:`FakeStation` and the ways to connect one.

A :class:`FakeStation` is the station end of a memory transport, driven by the test: it sends
CALLs and returns the CSMS's typed answers, boots in one line, answers the CSMS's CALLs (from a
handler, or one by one with :meth:`FakeStation.expect_call` and :meth:`FakeStation.answer`),
and can send raw frames to see how the CSMS copes with broken ones.  It runs no task of its
own: every method reads the transport itself, so a test decides exactly what happens when.

Connect one to a whole CSMS with :func:`open_fake_station`, or to a single
:class:`~ocpp_trio.Station` with :func:`open_station_pair`::

    async with open_csms(router, None, None) as csms:
        async with open_fake_station(csms, "CS1") as fake:
            await fake.boot()
            answer = await fake.call(v2_0_1.HeartbeatRequest())
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from ocpp_trio import messages
from ocpp_trio.csms.core import CSMS
from ocpp_trio.errors import CallError, ErrorCode
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.rpc import CallCompleted, CallFailed, Dropped, IncomingCall, RpcConnection
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Broadcast, StationEvent
from ocpp_trio.runtime.router import CSMSRouterBase
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.transport.base import ConnectionInfo, Transport, memory_transport_pair

__all__ = [
    "CSMSCallHandler",
    "FakeStation",
    "boot_request",
    "open_fake_station",
    "open_station_pair",
]

R = TypeVar("R", bound=Response)

#: Answers a CSMS CALL: returns the response, or raises :class:`~ocpp_trio.CallError`.
CSMSCallHandler = Callable[[Request[Any]], Awaitable[Response]]


class FakeStation:
    """The station end of a connection to a CSMS, driven step by step by a test.

    CALLs the CSMS sends while the fake waits for an answer of its own go to ``handler`` when
    one is set (answered at once), else they are kept, in order, for :meth:`expect_call`.

    Args:
        transport: the station's end of the connection (e.g. of a memory transport pair).
        version: the OCPP version spoken.
        handler: answers the CSMS's CALLs (see :attr:`handler`).
    """

    def __init__(
        self,
        transport: Transport,
        version: Version | str,
        *,
        handler: CSMSCallHandler | None = None,
    ) -> None:
        self.transport = transport
        self.version = Version(version)
        #: the sans-IO RPC state of the station end (``role="station"``)
        self.rpc = RpcConnection(self.version, role="station")
        #: the CSMS's CALLs received and not yet taken by :meth:`expect_call`
        self.incoming: list[IncomingCall] = []
        #: answers the CSMS's CALLs as they arrive, when set
        self.handler = handler

    # -- our CALLs -----------------------------------------------------------------------

    async def call(self, request: Request[R]) -> R:
        """Send ``request`` and return the CSMS's answer.

        Waits for: the answer, without a time limit (use ``trio.fail_after``).
        Cancellation: the call is abandoned (a late answer is dropped).

        Raises:
            CallError: the CSMS answered with a CALLERROR.
            RemoteProtocolError: the answer was broken or failed its schema.
        """
        result = await self.exchange(request)
        if isinstance(result, CallError):
            raise result
        return result

    async def exchange(self, request: Request[R]) -> R | CallError:
        """Send ``request`` and return the CSMS's answer, or its CALLERROR as a value (handy
        for asserting on refusals); otherwise as :meth:`call`."""
        message_id = await self.start(request)
        try:
            result = await self.reply(message_id)
        except BaseException:
            # cancelled or failed while waiting: free the slot, as a real station would after
            # its timeout; the late reply then arrives as a Dropped event
            self.rpc.abandon_call(message_id)
            raise
        if isinstance(result, CallFailed):
            if isinstance(result.error, CallError):
                return result.error
            raise result.error
        return result  # type: ignore[return-value]  # the answer to Request[R] is an R

    async def start(self, request: Request[Any]) -> str:
        """Send ``request`` without waiting for the answer; returns its message id (for
        :meth:`reply`)."""
        message_id, text = self.rpc.start_call(request)
        try:
            await self.transport.send_message(text)
        except BaseException:
            # cancelled or failed before the CALL was surely out: free the slot (a reply to
            # it, if it went out after all, is dropped)
            self.rpc.abandon_call(message_id)
            raise
        return message_id

    async def reply(self, message_id: str) -> Response | CallFailed:
        """Read until the answer to ``message_id``: the response, or the
        :class:`~ocpp_trio.protocol.rpc.CallFailed` event of a CALLERROR or broken answer.
        The CSMS's CALLs met meanwhile are answered by :attr:`handler` or kept."""
        while True:
            data = await self.transport.get_message()
            for event in self.rpc.receive(data).events:
                if isinstance(event, IncomingCall):
                    await self._incoming(event)
                elif isinstance(event, CallCompleted) and event.message_id == message_id:
                    return event.response
                elif isinstance(event, CallFailed) and event.message_id == message_id:
                    return event
                elif isinstance(event, Dropped):
                    continue  # a late reply to a call abandoned earlier
                else:
                    raise AssertionError(f"unexpected {event!r} while waiting for {message_id}")

    async def boot(
        self, *, vendor: str = "ocpp-trio", model: str = "FakeStation", reason: str = "PowerUp"
    ) -> Response:
        """Send a BootNotification of the fake's version and return the answer.

        Raises:
            CallError: the CSMS answered with a CALLERROR.
        """
        return await self.call(boot_request(self.version, vendor, model, reason))

    async def send_raw(self, frame: list[Any] | str) -> None:
        """Send ``frame`` as it is (a JSON array given as a list, or any text)."""
        await self.transport.send_message(frame if isinstance(frame, str) else json.dumps(frame))

    async def call_raw(self, request: Request[Any]) -> list[Any]:
        """Send ``request`` and return the next frame as parsed JSON (the raw answer)."""
        message_id = await self.start(request)
        data = await self.transport.get_message()
        self.rpc.receive(data)
        frame: list[Any] = json.loads(data)
        if frame[1] != message_id:
            raise AssertionError(f"expected the answer to {message_id}, got {frame!r}")
        return frame

    # -- the CSMS's CALLs ----------------------------------------------------------------

    async def _incoming(self, event: IncomingCall) -> None:
        if self.handler is None:
            self.incoming.append(event)
            return
        try:
            response = await self.handler(event.request)
        except CallError as exc:
            text = self.rpc.answer_error(event.message_id, exc.code, exc.description, exc.details)
        else:
            text = self.rpc.answer(event.message_id, response)
        await self.transport.send_message(text)

    async def expect_call(self) -> IncomingCall:
        """The next CALL from the CSMS (one kept earlier, else the next frame, which must be a
        CALL).  Waits for: it, without a time limit."""
        if self.incoming:
            return self.incoming.pop(0)
        while True:
            data = await self.transport.get_message()
            events = self.rpc.receive(data).events
            calls = [e for e in events if isinstance(e, IncomingCall)]
            if len(calls) != len(events):
                raise AssertionError(f"expected a CALL from the CSMS, got {events!r}")
            if calls:
                self.incoming.extend(calls[1:])
                return calls[0]

    async def answer(self, call: IncomingCall, response: Response) -> None:
        """Answer the CSMS's ``call`` with ``response``."""
        await self.transport.send_message(self.rpc.answer(call.message_id, response))

    async def answer_error(
        self, call: IncomingCall, code: ErrorCode, description: str = ""
    ) -> None:
        """Answer the CSMS's ``call`` with a CALLERROR."""
        await self.transport.send_message(self.rpc.answer_error(call.message_id, code, description))

    async def serve(self) -> None:
        """Answer the CSMS's CALLs with :attr:`handler` until the connection closes (run it in
        a nursery while the test looks elsewhere).

        Raises:
            ValueError: no handler is set.
        """
        if self.handler is None:
            raise ValueError("set FakeStation.handler to serve the CSMS's CALLs")
        while True:
            while self.incoming:
                await self._incoming(self.incoming.pop(0))
            try:
                data = await self.transport.get_message()
            except trio.BrokenResourceError:
                return
            for event in self.rpc.receive(data).events:
                if isinstance(event, IncomingCall):
                    await self._incoming(event)

    async def nothing_arrives(self, seconds: float = 1.0) -> bool:
        """Whether no frame arrives within ``seconds`` (a frame that does is consumed)."""
        with trio.move_on_after(seconds):
            await self.transport.get_message()
            return False
        return True

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (the CSMS sees the station close it); idempotent."""
        await self.transport.aclose(code, reason)


def boot_request(
    version: Version | str,
    vendor: str = "ocpp-trio",
    model: str = "FakeStation",
    reason: str = "PowerUp",
) -> Request[Any]:
    """A BootNotificationRequest of ``version`` (``reason`` is ignored on 1.6)."""
    version = Version(version)
    if version is Version.V16:
        payload: dict[str, Any] = {"chargePointVendor": vendor, "chargePointModel": model}
    else:
        payload = {"reason": reason, "chargingStation": {"vendorName": vendor, "model": model}}
    request = messages.decode_request(version, "BootNotification", payload)
    assert isinstance(request, Request)
    return request


@asynccontextmanager
async def open_fake_station(
    csms: CSMS,
    identity: str = "CS1",
    version: Version | str = Version.V201,
    *,
    handler: CSMSCallHandler | None = None,
) -> AsyncIterator[FakeStation]:
    """Connect a :class:`FakeStation` to ``csms`` over a memory transport for the duration of
    an ``async with`` block (the CSMS serves it as it serves a WebSocket connection).

    Waits for: the CSMS to serve the connection before entering (``csms.get_station(identity)``
    is the CSMS's end); on exit, the connection to close.  Closes: the connection.
    """
    version = Version(version)
    info = ConnectionInfo(subprotocol=version.subprotocol)
    ours, theirs = memory_transport_pair(info_a=info, info_b=info)
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.serve_station, theirs, identity, version)
        try:
            yield FakeStation(ours, version, handler=handler)
        finally:
            await ours.aclose()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_station_pair(
    router: CSMSRouterBase[Station],
    version: Version | str = Version.V201,
    *,
    identity: str = "CS1",
    config: StationConfig | None = None,
    initial_status: RegistrationStatus | None = None,
    events: Broadcast[StationEvent] | None = None,
    handler: CSMSCallHandler | None = None,
) -> AsyncIterator[tuple[Station, FakeStation]]:
    """Run one :class:`~ocpp_trio.Station` (no CSMS around it) with a :class:`FakeStation` at
    the other end, for the duration of an ``async with`` block.

    Waits for: the station to run before entering.  Closes: the station (1001) on exit.
    """
    ours, theirs = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        station = Station(
            identity,
            version,
            ours,
            router,
            config=config,
            initial_status=initial_status,
            events=events,
        )
        await nursery.start(station.run)
        try:
            yield station, FakeStation(theirs, version, handler=handler)
        finally:
            nursery.cancel_scope.cancel()
