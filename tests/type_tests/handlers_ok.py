"""Read by mypy only (tests/test_station_types.py): correct uses of the handler and call API."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import assert_type

from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.csms.core import CSMS
from ocpp_trio.errors import CallError
from ocpp_trio.messages import Request, Response, v1_6, v2_0_1, v2_1
from ocpp_trio.runtime.events import Exchange, StationEvent
from ocpp_trio.runtime.handlers import Router, handles
from ocpp_trio.runtime.station import Station
from ocpp_trio.testing import FakeStation

router = Router()


@router.on(v2_0_1.BootNotificationRequest)
async def boot(
    station: Station, request: v2_0_1.BootNotificationRequest
) -> v2_0_1.BootNotificationResponse:
    return v2_0_1.BootNotificationResponse(
        current_time=datetime.datetime.now(datetime.UTC),
        interval=300,
        status=v2_0_1.RegistrationStatusEnumType.ACCEPTED,
    )


assert_type(
    boot,
    Callable[[Station, v2_0_1.BootNotificationRequest], Awaitable[v2_0_1.BootNotificationResponse]],
)


@router.on(v1_6.BootNotificationRequest)
async def boot16(
    station: Station, request: v1_6.BootNotificationRequest
) -> v1_6.BootNotificationResponse:
    # a handler may call the station; the result is typed from the request
    config = await station.call(v1_6.GetConfigurationRequest())
    assert_type(config, v1_6.GetConfigurationResponse)
    return v1_6.BootNotificationResponse(
        status=v1_6.RegistrationStatus.ACCEPTED,
        current_time=datetime.datetime.now(datetime.UTC),
        interval=300,
    )


# a handler may accept a wider request type than the one it is registered for
@router.on(v2_0_1.HeartbeatRequest)
async def beat(
    station: Station, request: Request[v2_0_1.HeartbeatResponse]
) -> v2_0_1.HeartbeatResponse:
    return v2_0_1.HeartbeatResponse(current_time=datetime.datetime.now(datetime.UTC))


@router.on_send(v2_1.NotifyPeriodicEventStream)
async def stream(station: Station, message: v2_1.NotifyPeriodicEventStream) -> None:
    assert_type(message.id, int)


@router.fallback
async def anything(station: Station, request: Request[Response]) -> Response:
    raise NotImplementedError


class Handlers:
    @handles(v2_0_1.AuthorizeRequest)
    async def authorize(
        self, station: Station, request: v2_0_1.AuthorizeRequest
    ) -> v2_0_1.AuthorizeResponse:
        return v2_0_1.AuthorizeResponse(
            id_token_info=v2_0_1.IdTokenInfoType(status=v2_0_1.AuthorizationStatusEnumType.ACCEPTED)
        )


router.include(Handlers())


async def use(csms: CSMS) -> None:
    station = csms.get_station("CS1")
    assert_type(station, Station | None)
    if station is None:
        return
    response = await station.call(
        v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE), call_timeout=5
    )
    assert_type(response, v2_0_1.ResetResponse)
    async with csms.subscribe() as events:
        async for event in events:
            assert_type(event, StationEvent)

    async def extra(station: Station, exchange: Exchange) -> None:
        assert_type(exchange.response, Response | None)

    csms.add_extra_handler(extra)
    station.add_extra_handler(extra)


cp_router = ChargePointRouter()


@cp_router.on(v2_0_1.ResetRequest)
async def reset(cp: ChargePoint, request: v2_0_1.ResetRequest) -> v2_0_1.ResetResponse:
    # a charge point's handler may call the CSMS; the result is typed from the request
    beat = await cp.call(v2_0_1.HeartbeatRequest())
    assert_type(beat, v2_0_1.HeartbeatResponse)
    return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)


assert_type(
    reset,
    Callable[[ChargePoint, v2_0_1.ResetRequest], Awaitable[v2_0_1.ResetResponse]],
)


async def fake(station: FakeStation) -> None:
    beat = await station.call(v2_0_1.HeartbeatRequest())
    assert_type(beat, v2_0_1.HeartbeatResponse)
    answer = await station.exchange(v2_0_1.HeartbeatRequest())
    assert_type(answer, v2_0_1.HeartbeatResponse | CallError)
