"""Read by mypy only (tests/test_type_tests.py): correct uses of the message API.

Every line here must type-check under ``mypy --strict``; ``assert_type`` pins the types the
generated classes and the codec give.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, assert_type

from ocpp_trio import Version
from ocpp_trio.messages import (
    ActionSpec,
    Message,
    Request,
    Response,
    Send,
    actions,
    decode_request,
    decode_response,
    encode,
    v1_6,
    v2_0_1,
    v2_1,
)

R = TypeVar("R", bound=Response)

NOW = datetime.datetime.now(datetime.UTC)


async def call(request: Request[R]) -> R:
    """Stands for ``Station.call``: the response type follows from the request type."""
    raise NotImplementedError


def any_request(request: Request[Response]) -> str:
    """``Request`` is covariant in its response type."""
    return request.ACTION


async def v201() -> None:
    station = v2_0_1.ChargingStationType(model="M1", vendor_name="Acme")
    assert_type(station, v2_0_1.ChargingStationType)
    assert_type(station.serial_number, str | None)
    boot = v2_0_1.BootNotificationRequest(
        charging_station=station, reason=v2_0_1.BootReasonEnumType.POWER_UP
    )
    assert_type(boot, v2_0_1.BootNotificationRequest)
    assert_type(boot.reason, v2_0_1.BootReasonEnumType)
    assert_type(boot.custom_data, v2_0_1.CustomDataType | None)

    response = await call(boot)
    assert_type(response, v2_0_1.BootNotificationResponse)
    assert_type(response.status, v2_0_1.RegistrationStatusEnumType)
    assert_type(response.current_time, datetime.datetime)
    assert_type(response.interval, int)

    assert_type(await call(v2_0_1.HeartbeatRequest()), v2_0_1.HeartbeatResponse)
    assert_type(
        await call(v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.ON_IDLE, evse_id=1)),
        v2_0_1.ResetResponse,
    )
    assert_type(v2_0_1.BootNotificationRequest.RESPONSE, type[v2_0_1.BootNotificationResponse])
    assert_type(boot.RESPONSE, type[v2_0_1.BootNotificationResponse])
    assert_type(v2_0_1.BootNotificationRequest.ACTION, str)
    assert_type(v2_0_1.BootNotificationRequest.VERSION, Version)
    assert_type(any_request(boot), str)

    sample = v2_0_1.SampledValueType(value=1.5, measurand=v2_0_1.MeasurandEnumType.VOLTAGE)
    meter = v2_0_1.MeterValuesRequest(
        evse_id=1, meter_value=(v2_0_1.MeterValueType(timestamp=NOW, sampled_value=(sample,)),)
    )
    assert_type(meter.meter_value, tuple[v2_0_1.MeterValueType, ...])
    assert_type(meter.meter_value[0].sampled_value[0].value, float)
    assert_type(await call(meter), v2_0_1.MeterValuesResponse)

    custom = v2_0_1.CustomDataType(vendor_id="acme", extra={"k": [1, 2]})
    assert_type(custom.extra, dict[str, Any])
    data = v2_0_1.DataTransferRequest(vendor_id="acme", data={"any": "json"}, custom_data=custom)
    assert_type(data.data, Any)
    assert_type(await call(data), v2_0_1.DataTransferResponse)

    assert_type(v2_0_1.HeartbeatResponse.from_json({"currentTime": "2024-01-01T00:00:00Z"}),
                v2_0_1.HeartbeatResponse)  # fmt: skip
    assert_type(encode(boot), dict[str, Any])
    assert_type(boot.to_json(), dict[str, Any])


async def v16() -> None:
    boot = v1_6.BootNotificationRequest(charge_point_vendor="Acme", charge_point_model="M1")
    assert_type(boot, v1_6.BootNotificationRequest)
    assert_type(boot.iccid, str | None)
    response = await call(boot)
    assert_type(response, v1_6.BootNotificationResponse)
    assert_type(response.status, v1_6.RegistrationStatus)
    assert_type(v1_6.BootNotificationRequest.RESPONSE, type[v1_6.BootNotificationResponse])

    profile = v1_6.SetChargingProfileRequest(
        connector_id=1,
        cs_charging_profiles=v1_6.ChargingProfile(
            charging_profile_id=1,
            stack_level=0,
            charging_profile_purpose=v1_6.ChargingProfilePurposeType.TX_DEFAULT_PROFILE,
            charging_profile_kind=v1_6.ChargingProfileKindType.ABSOLUTE,
            charging_schedule=v1_6.ChargingSchedule(
                charging_rate_unit=v1_6.ChargingRateUnitType.A,
                charging_schedule_period=(v1_6.ChargingSchedulePeriod(start_period=0, limit=21.4),),
            ),
        ),
    )
    assert_type(await call(profile), v1_6.SetChargingProfileResponse)
    assert_type(
        profile.cs_charging_profiles.charging_schedule.charging_schedule_period,
        tuple[v1_6.ChargingSchedulePeriod, ...],
    )
    assert_type(await call(v1_6.HeartbeatRequest()), v1_6.HeartbeatResponse)


async def v21() -> None:
    boot = v2_1.BootNotificationRequest(
        charging_station=v2_1.ChargingStationType(model="M1", vendor_name="Acme"),
        reason=v2_1.BootReasonEnumType.POWER_UP,
    )
    assert_type(await call(boot), v2_1.BootNotificationResponse)
    assert_type(v2_1.BootNotificationRequest.RESPONSE, type[v2_1.BootNotificationResponse])
    stream = v2_1.NotifyPeriodicEventStream(
        id=1,
        pending=0,
        basetime=NOW,
        data=(v2_1.StreamDataElementType(t=0.5, v="1"),),
    )
    assert_type(stream, v2_1.NotifyPeriodicEventStream)
    sent: Send = stream
    assert_type(sent.ACTION, str)


def codec(payload: dict[str, Any]) -> None:
    assert_type(decode_request(Version.V201, "Heartbeat", payload), Message)
    assert_type(decode_request("2.0.1", "Heartbeat", payload), Message)
    assert_type(decode_response(Version.V16, "Heartbeat", payload), Response)
    registry = actions(Version.V21)
    assert_type(registry, Mapping[str, ActionSpec])
    spec = registry["BootNotification"]
    assert_type(spec.request, type[Message])
    assert_type(spec.response, type[Response] | None)
    message = decode_request(Version.V21, "BootNotification", payload)
    if isinstance(message, v2_1.BootNotificationRequest):
        assert_type(message.reason, v2_1.BootReasonEnumType)


class Handler:
    """A ClassVar holding a request class keeps its exact type."""

    REQUEST: ClassVar[type[v2_0_1.BootNotificationRequest]] = v2_0_1.BootNotificationRequest

    def response_class(self) -> type[v2_0_1.BootNotificationResponse]:
        return self.REQUEST.RESPONSE
