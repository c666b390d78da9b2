"""Test-side helpers: a tiny station made of an RpcConnection(role="station") over a memory pair.

(Named ``test_station_*`` so it sits with the station tests; it holds no tests itself.)
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ocpp_trio import Version
from ocpp_trio.messages import Request, Response, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.rpc import CallCompleted, CallFailed, Dropped, IncomingCall, RpcConnection
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.runtime.events import Broadcast, StationEvent
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.transport.base import MemoryTransport, memory_transport_pair

MODULES = {Version.V16: v1_6, Version.V201: v2_0_1, Version.V21: v2_1}
NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def boot_request(version: Version) -> Request[Any]:
    if version is Version.V16:
        return v1_6.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
    m = MODULES[version]
    return m.BootNotificationRequest(  # type: ignore[attr-defined,no-any-return]
        reason=m.BootReasonEnumType.POWER_UP,  # type: ignore[attr-defined]
        charging_station=m.ChargingStationType(model="M", vendor_name="V"),  # type: ignore[attr-defined]
    )


def heartbeat(version: Version) -> Request[Any]:
    return MODULES[version].HeartbeatRequest()  # type: ignore[attr-defined,no-any-return]


def status_notification(version: Version, evse: int, connector: int) -> Request[Any]:
    if version is Version.V16:
        return v1_6.StatusNotificationRequest(
            connector_id=connector,
            error_code=v1_6.ChargePointErrorCode.NO_ERROR,
            status=v1_6.ChargePointStatus.AVAILABLE,
        )
    m = MODULES[version]
    return m.StatusNotificationRequest(  # type: ignore[attr-defined,no-any-return]
        timestamp=NOW,
        connector_status=m.ConnectorStatusEnumType.AVAILABLE,  # type: ignore[attr-defined]
        evse_id=evse,
        connector_id=connector,
    )


def boot_router(status: str = "Accepted", interval: int = 300) -> Router:
    router = Router()
    router.set_default_boot(RegistrationStatus(status), interval)
    return router


class FakeStation:
    """The station end: sends CALLs, answers the CSMS's CALLs, reads raw frames."""

    def __init__(self, transport: MemoryTransport, version: Version) -> None:
        self.transport = transport
        self.version = version
        self.rpc = RpcConnection(version, role="station")
        self.incoming: list[IncomingCall] = []

    async def send_raw(self, frame: list[Any]) -> None:
        await self.transport.send_message(json.dumps(frame))

    async def start(self, request: Request[Any]) -> str:
        message_id, text = self.rpc.start_call(request)
        await self.transport.send_message(text)
        return message_id

    async def reply(self, message_id: str) -> Response | CallFailed:
        """Read until the reply to ``message_id``; the CSMS's CALLs met meanwhile are kept."""
        while True:
            data = await self.transport.get_message()
            for event in self.rpc.receive(data).events:
                if isinstance(event, IncomingCall):
                    self.incoming.append(event)
                elif isinstance(event, CallCompleted) and event.message_id == message_id:
                    return event.response
                elif isinstance(event, CallFailed) and event.message_id == message_id:
                    return event
                elif isinstance(event, Dropped):
                    continue  # a late reply to a call abandoned above
                else:  # pragma: no cover - a test bug
                    raise AssertionError(f"unexpected {event!r}")

    async def call(self, request: Request[Any]) -> Response | CallFailed:
        message_id = await self.start(request)
        try:
            return await self.reply(message_id)
        except BaseException:
            # cancelled or failed while waiting: free the slot, as a real station would after
            # its timeout; the late reply then arrives as a Dropped event
            self.rpc.abandon_call(message_id)
            raise

    async def call_raw(self, request: Request[Any]) -> list[Any]:
        """Send ``request`` and return the next frame as parsed JSON (the raw reply)."""
        message_id = await self.start(request)
        data = await self.transport.get_message()
        self.rpc.receive(data)
        frame = json.loads(data)
        assert frame[1] == message_id, frame
        return frame  # type: ignore[no-any-return]

    async def expect_call(self) -> IncomingCall:
        """The next CALL from the CSMS."""
        if self.incoming:
            return self.incoming.pop(0)
        while True:
            data = await self.transport.get_message()
            events = self.rpc.receive(data).events
            calls = [e for e in events if isinstance(e, IncomingCall)]
            assert len(calls) == len(events), events
            if calls:
                self.incoming.extend(calls[1:])
                return calls[0]

    async def answer(self, call: IncomingCall, response: Response) -> None:
        await self.transport.send_message(self.rpc.answer(call.message_id, response))

    async def nothing_arrives(self, seconds: float = 1.0) -> bool:
        with trio.move_on_after(seconds):
            await self.transport.get_message()
            return False
        return True


@asynccontextmanager
async def running_station(
    router: Router,
    version: Version = Version.V201,
    *,
    config: StationConfig | None = None,
    initial_status: RegistrationStatus | None = None,
    events: Broadcast[StationEvent] | None = None,
) -> AsyncIterator[tuple[Station, FakeStation]]:
    ours, theirs = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        station = Station(
            "CS1",
            version,
            ours,
            router,
            config=config,
            initial_status=initial_status,
            events=events,
        )
        await nursery.start(station.run)
        yield station, FakeStation(theirs, version)
        nursery.cancel_scope.cancel()


def error_of(result: object) -> tuple[str, str, dict[str, Any]]:
    """(wire code, description, details) of a CALLERROR reply."""
    assert isinstance(result, CallFailed), result
    error = result.error
    code = getattr(error, "code", None)
    wire = code.wire(Version.V201) if hasattr(code, "wire") else str(code)
    return wire, getattr(error, "description", ""), dict(getattr(error, "details", {}))
