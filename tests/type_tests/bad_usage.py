"""Read by mypy only (tests/test_type_tests.py): mistakes mypy must reject.

Each mistake is on its own line, marked ``# E: <error code>``; mypy must report exactly the
marked lines, each with the marked code.  ruff does not read this file.
"""

from __future__ import annotations

import datetime
from typing import TypeVar, assert_type

from ocpp_trio.messages import Request, Response, decode_request, v1_6, v2_0_1, v2_1

R = TypeVar("R", bound=Response)

NOW = datetime.datetime.now(datetime.UTC)
STATION = v2_0_1.ChargingStationType(model="M1", vendor_name="Acme")
BOOT = v2_0_1.BootNotificationRequest(charging_station=STATION, reason=v2_0_1.BootReasonEnumType.POWER_UP)
RESPONSE = v2_0_1.BootNotificationResponse(current_time=NOW, interval=300, status=v2_0_1.RegistrationStatusEnumType.ACCEPTED)


async def call(request: Request[R]) -> R:
    raise NotImplementedError


async def mistakes() -> None:
    # a required field is missing
    v2_0_1.BootNotificationRequest(reason=v2_0_1.BootReasonEnumType.POWER_UP)  # E: call-arg
    v1_6.BootNotificationRequest(charge_point_vendor="Acme")  # E: call-arg
    # a field that does not exist
    v2_0_1.HeartbeatRequest(current_time=NOW)  # E: call-arg
    # arguments are keyword-only
    v2_0_1.HeartbeatResponse(NOW)  # E: call-arg
    # an enum member that does not exist
    v2_0_1.BootReasonEnumType.POWERUP  # E: attr-defined
    v1_6.RegistrationStatus.Accepted  # E: attr-defined
    # a field of the wrong type
    v2_0_1.HeartbeatResponse(current_time="2024-01-01T00:00:00Z")  # E: arg-type
    v1_6.BootNotificationRequest(charge_point_vendor=1, charge_point_model="M1")  # E: arg-type
    v2_0_1.SampledValueType(value="1.5")  # E: arg-type
    # a plain str where an enum belongs (accepted at run time, but not by the types)
    v2_0_1.BootNotificationRequest(charging_station=STATION, reason="PowerUp")  # E: arg-type
    # a member of the wrong enum class
    v2_0_1.BootNotificationRequest(charging_station=STATION, reason=v2_0_1.RegistrationStatusEnumType.ACCEPTED)  # E: arg-type
    # a datatype of another version
    v2_0_1.BootNotificationRequest(charging_station=v2_1.ChargingStationType(model="M", vendor_name="V"), reason=v2_0_1.BootReasonEnumType.POWER_UP)  # E: arg-type
    # an array of the wrong item type
    v2_0_1.GetReportRequest(request_id=1, component_criteria=("Active",))  # E: arg-type
    # a response where a request is expected
    await call(RESPONSE)  # E: arg-type
    # a SEND message is not a request: it is never answered
    await call(v2_1.NotifyPeriodicEventStream(id=1, pending=0, basetime=NOW, data=()))  # E: arg-type
    # the response type follows the request type
    heartbeat: v2_0_1.HeartbeatResponse = await call(BOOT)  # E: arg-type
    assert_type(await call(BOOT), v2_1.BootNotificationResponse)  # E: assert-type
    wrong_version: v1_6.BootNotificationResponse = await call(BOOT)  # E: arg-type
    # messages are frozen
    RESPONSE.interval = 60  # E: misc
    # optional fields may be None
    len(STATION.serial_number)  # E: arg-type
    # the RESPONSE class variable is typed per request
    other: type[v2_0_1.HeartbeatResponse] = v2_0_1.BootNotificationRequest.RESPONSE  # E: assignment
    # decoding gives a Message: narrow it before using fields
    decode_request("2.0.1", "BootNotification", {}).reason  # E: attr-defined
    del heartbeat, wrong_version, other
