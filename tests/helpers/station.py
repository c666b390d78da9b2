"""Station-side helpers of the CSMS tests: requests every test needs, routers, and the public
:class:`~ocpp_trio.testing.FakeStation` at the end of a memory pair."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ocpp_trio import Version
from ocpp_trio.errors import CallError
from ocpp_trio.messages import Request, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.runtime.events import Broadcast, StationEvent
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.testing import FakeStation, open_station_pair

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


def waiting_router(release: trio.Event) -> Router:
    """A router accepting every boot whose DataTransfer handler waits for ``release`` (so the
    CALLs behind it queue up)."""
    router = boot_router()

    @router.on(v2_0_1.DataTransferRequest)
    async def slow(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        await release.wait()
        return v2_0_1.DataTransferResponse(status=v2_0_1.DataTransferStatusEnumType.ACCEPTED)

    return router


@asynccontextmanager
async def running_station(
    router: Router,
    version: Version = Version.V201,
    *,
    config: StationConfig | None = None,
    initial_status: RegistrationStatus | None = None,
    events: Broadcast[StationEvent] | None = None,
) -> AsyncIterator[tuple[Station, FakeStation]]:
    """One Station "CS1" with a FakeStation at the other end."""
    async with open_station_pair(
        router, version, config=config, initial_status=initial_status, events=events
    ) as pair:
        yield pair


def error_of(result: object) -> tuple[str, str, dict[str, Any]]:
    """(wire code, description, details) of a CALLERROR answer (``FakeStation.exchange``)."""
    assert isinstance(result, CallError), result
    return result.code.wire(Version.V201), result.description, dict(result.details)


__all__ = [
    "MODULES",
    "NOW",
    "FakeStation",
    "boot_request",
    "boot_router",
    "error_of",
    "heartbeat",
    "running_station",
    "status_notification",
    "waiting_router",
]
