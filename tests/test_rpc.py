"""The per-connection RPC state machine, sans-IO: a CSMS core wired to a station core.

Messages are the real generated ones, built from JSON payloads through the version-independent
``decode_request``/``decode_response`` so one test body serves every version.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ocpp_trio import messages
from ocpp_trio.errors import (
    CallError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    RemoteProtocolError,
)
from ocpp_trio.messages import Request, Response, Send, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.frames import (
    CallErrorFrame,
    CallResultErrorFrame,
    FrameError,
    is_valid_message_id,
    parse_frame,
)
from ocpp_trio.protocol.rpc import (
    CallCompleted,
    CallFailed,
    CallRejected,
    CallResultErrorReceived,
    Dropped,
    Event,
    IncomingCall,
    IncomingSend,
    OutstandingCall,
    Received,
    Role,
    RpcConnection,
    new_message_id,
)
from ocpp_trio.protocol.version import Version

V16, V201, V21 = Version.V16, Version.V201, Version.V21
ALL = [V16, V201, V21]
NOW = "2024-01-01T00:00:00Z"

BOOT: dict[Version, dict[str, Any]] = {
    V16: {"chargePointVendor": "V", "chargePointModel": "M"},
    V201: {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
    V21: {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
}
BOOT_RESPONSE: dict[str, Any] = {"status": "Accepted", "currentTime": NOW, "interval": 300}
HEARTBEAT_RESPONSE = {"currentTime": NOW}
RESET: dict[Version, dict[str, Any]] = {
    V16: {"type": "Soft"},
    V201: {"type": "Immediate"},
    V21: {"type": "Immediate"},
}
RESET_RESPONSE = {"status": "Accepted"}
STREAM: dict[str, Any] = {"id": 1, "pending": 0, "basetime": NOW, "data": [{"t": 0, "v": "1"}]}

# The spelling of each code per version, as the wire must carry it.
OCCURRENCE = {
    V16: "OccurenceConstraintViolation",
    V201: "OccurrenceConstraintViolation",
    V21: "OccurrenceConstraintViolation",
}
FORMAT = {V16: "FormationViolation", V201: "FormatViolation", V21: "FormatViolation"}
FRAMEWORK = {V16: "GenericError", V201: "RpcFrameworkError", V21: "RpcFrameworkError"}


def request(version: Version, action: str, payload: dict[str, Any] | None = None) -> Any:
    if payload is None:
        payload = {
            "BootNotification": BOOT[version],
            "Heartbeat": {},
            "Reset": RESET[version],
            "NotifyPeriodicEventStream": STREAM,
        }[action]
    return messages.decode_request(version, action, payload)


def response(version: Version, action: str, payload: dict[str, Any] | None = None) -> Response:
    if payload is None:
        payload = {
            "BootNotification": BOOT_RESPONSE,
            "Heartbeat": HEARTBEAT_RESPONSE,
            "Reset": RESET_RESPONSE,
        }[action]
    return messages.decode_response(version, action, payload)


def counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def pair(version: Version, **kwargs: Any) -> tuple[RpcConnection, RpcConnection]:
    csms = RpcConnection(version, role="csms", id_factory=counter("c"), **kwargs)
    station = RpcConnection(version, role=Role.STATION, id_factory=counter("s"), **kwargs)
    return csms, station


def only(received: Received, kind: type[Any]) -> Any:
    assert len(received.events) == 1, received
    (event,) = received.events
    assert isinstance(event, kind), event
    return event


def frame_of(text: str) -> list[Any]:
    value = json.loads(text)
    assert isinstance(value, list)
    return value


@pytest.fixture(params=ALL, ids=str)
def version(request: pytest.FixtureRequest) -> Version:
    return Version(request.param)


# --- calls both ways -------------------------------------------------------------------------


def test_station_calls_csms(version: Version) -> None:
    csms, station = pair(version)
    boot = request(version, "BootNotification")
    message_id, text = station.start_call(boot)
    assert message_id == "s1"
    assert station.outstanding == OutstandingCall("s1", "BootNotification")

    got = csms.receive(text)
    assert got.outgoing == []
    call = only(got, IncomingCall)
    assert (call.message_id, call.action, call.request) == ("s1", "BootNotification", boot)
    assert csms.awaiting_answer == {"s1": "BootNotification"}

    answer = response(version, "BootNotification")
    reply = csms.answer("s1", answer)
    assert frame_of(reply)[:2] == [3, "s1"]
    assert csms.awaiting_answer == {}

    done = only(station.receive(reply), CallCompleted)
    assert (done.message_id, done.action, done.response) == ("s1", "BootNotification", answer)
    assert station.outstanding is None


def test_csms_calls_station(version: Version) -> None:
    csms, station = pair(version)
    reset = request(version, "Reset")
    message_id, text = csms.start_call(reset)
    call = only(station.receive(text), IncomingCall)
    assert call.request == reset
    done = only(csms.receive(station.answer(message_id, response(version, "Reset"))), CallCompleted)
    assert done.action == "Reset"
    assert csms.outstanding is None


def test_typed_messages_round_trip() -> None:
    csms, station = pair(V201)
    _, text = station.start_call(v2_0_1.HeartbeatRequest())
    assert text == '[2,"s1","Heartbeat",{}]'
    only(csms.receive(text), IncomingCall)
    reply = csms.answer("s1", response(V201, "Heartbeat"))
    done = only(station.receive(reply), CallCompleted)
    assert isinstance(done.response, v2_0_1.HeartbeatResponse)

    csms16, station16 = pair(V16)
    boot = v1_6.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
    _, text = station16.start_call(boot)
    assert only(csms16.receive(text), IncomingCall).request == boot


def test_calls_cross(version: Version) -> None:
    csms, station = pair(version)
    csms_id, to_station = csms.start_call(request(version, "Reset"))
    station_id, to_csms = station.start_call(request(version, "Heartbeat"))
    # both CALLs are in flight; each side must still take the other's CALL
    assert only(csms.receive(to_csms), IncomingCall).message_id == station_id
    assert only(station.receive(to_station), IncomingCall).message_id == csms_id
    assert csms.outstanding is not None
    assert station.outstanding is not None
    # answer in the "wrong" order: ids, not order, correlate
    heartbeat_reply = csms.answer(station_id, response(version, "Heartbeat"))
    reset_reply = station.answer(csms_id, response(version, "Reset"))
    assert only(csms.receive(reset_reply), CallCompleted).action == "Reset"
    assert only(station.receive(heartbeat_reply), CallCompleted).action == "Heartbeat"
    assert (csms.outstanding, station.outstanding) == (None, None)


def test_several_incoming_calls_await_answers(version: Version) -> None:
    csms, _ = pair(version)
    for n in range(3):
        only(csms.receive(f'[2,"m{n}","Heartbeat",{{}}]'), IncomingCall)
    assert list(csms.awaiting_answer) == ["m0", "m1", "m2"]
    csms.answer("m1", response(version, "Heartbeat"))
    assert list(csms.awaiting_answer) == ["m0", "m2"]
    assert csms.statistics().awaiting_answer == 2


# --- the one-outstanding rule, abandon, late and stray replies --------------------------------


def test_one_outstanding_call(version: Version) -> None:
    csms, _ = pair(version)
    first, _ = csms.start_call(request(version, "Reset"))
    with pytest.raises(LocalProtocolError, match=f"{first}.*outstanding"):
        csms.start_call(request(version, "Reset"))
    assert csms.outstanding == OutstandingCall(first, "Reset")
    assert csms.statistics().calls_sent == 1
    only(csms.receive(f'[3,"{first}",{{"status":"Accepted"}}]'), CallCompleted)
    second, _ = csms.start_call(request(version, "Reset"))
    assert second != first


def test_abandon_and_late_reply(version: Version) -> None:
    csms, station = pair(version)
    old, text = csms.start_call(request(version, "Reset"))
    only(station.receive(text), IncomingCall)
    assert csms.abandon_call(old) is True
    assert csms.abandon_call(old) is False  # idempotent, safe in a finally
    assert csms.outstanding is None

    new, _ = csms.start_call(request(version, "Reset"))
    late = csms.receive(station.answer(old, response(version, "Reset")))
    dropped = only(late, Dropped)
    assert "abandoned" in dropped.reason
    assert dropped.message_id == old
    assert late.outgoing == []
    assert csms.outstanding == OutstandingCall(new, "Reset")  # not disturbed
    assert not csms.abandon_call("not-outstanding")
    assert csms.outstanding == OutstandingCall(new, "Reset")
    stats = csms.statistics()
    assert (stats.calls_abandoned, stats.dropped) == (1, 1)


@pytest.mark.parametrize(
    "reply",
    ['[3,"stale",{"status":"Accepted"}]', '[4,"stale","GenericError","",{}]', '[3,"stale",[]]'],
)
def test_reply_with_unknown_id_is_dropped(version: Version, reply: str) -> None:
    csms, _ = pair(version)
    got = csms.receive(reply)
    assert only(got, Dropped).message_id == "stale"
    assert got.outgoing == []  # not even a 2.1 CALLRESULTERROR for an unknown id

    message_id, _ = csms.start_call(request(version, "Reset"))
    got = csms.receive(reply)
    assert only(got, Dropped).message_id == "stale"
    assert got.outgoing == []
    assert csms.outstanding == OutstandingCall(message_id, "Reset")


def test_callerror_with_unreadable_id_is_dropped(version: Version) -> None:
    csms, _ = pair(version)
    csms.start_call(request(version, "Reset"))
    dropped = only(csms.receive('[4,"-1","RpcFrameworkError","bad frame",{}]'), Dropped)
    assert "could not read" in dropped.reason
    assert csms.outstanding is not None


def test_callerror_fails_the_call(version: Version) -> None:
    csms, station = pair(version)
    message_id, text = csms.start_call(request(version, "Reset"))
    only(station.receive(text), IncomingCall)
    reply = station.answer_error(message_id, ErrorCode.NOT_SUPPORTED, "no resets", {"why": 1})
    failed = only(csms.receive(reply), CallFailed)
    assert failed.message_id == message_id
    assert failed.action == "Reset"
    assert isinstance(failed.error, CallError)
    assert failed.error.code is ErrorCode.NOT_SUPPORTED
    assert (failed.error.description, failed.error.details) == ("no resets", {"why": 1})
    assert csms.outstanding is None


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ("FormationViolation", ErrorCode.FORMAT_VIOLATION),
        ("FormatViolation", ErrorCode.FORMAT_VIOLATION),
        ("OccurenceConstraintViolation", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
        ("OccurrenceConstraintViolation", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
        ("SomethingElse", "SomethingElse"),
    ],
)
def test_callerror_codes_read_in_any_spelling(
    version: Version, wire: str, code: ErrorCode | str
) -> None:
    csms, _ = pair(version)
    message_id, _ = csms.start_call(request(version, "Reset"))
    failed = only(csms.receive(f'[4,"{message_id}","{wire}","",{{}}]'), CallFailed)
    assert isinstance(failed.error, CallError)
    assert failed.error.code == code


# --- bad CALLs: answered here -----------------------------------------------------------------


def rejected(csms: RpcConnection, text: str | bytes) -> tuple[CallRejected, list[Any]]:
    got = csms.receive(text)
    event = only(got, CallRejected)
    assert len(got.outgoing) == 1
    answer = frame_of(got.outgoing[0])
    assert answer[0] == 4
    assert answer[1] == event.message_id
    assert len(answer) == 5
    return event, answer


def test_unknown_action_is_not_implemented(version: Version) -> None:
    csms, _ = pair(version)
    event, answer = rejected(csms, '[2,"m1","NoSuchAction",{}]')
    assert answer[:3] == [4, "m1", "NotImplemented"]
    assert "NoSuchAction" in answer[3]
    assert event.action == "NoSuchAction"
    assert csms.awaiting_answer == {}


def test_signed_variant_is_an_unknown_action(version: Version) -> None:
    csms, _ = pair(version)
    _, answer = rejected(csms, '[2,"m1","BootNotification-Signed",{}]')
    assert answer[2] == "NotImplemented"


def test_wrong_direction_is_not_supported(version: Version) -> None:
    csms, station = pair(version)
    # a station sending what only a CSMS sends
    _, answer = rejected(csms, '[2,"m1","Reset",' + json.dumps(RESET[version]) + "]")
    assert answer[:3] == [4, "m1", "NotSupported"]
    # and the other way round: a station core refuses a CSMS's BootNotification
    _, answer = rejected(station, '[2,"m2","BootNotification",' + json.dumps(BOOT[version]) + "]")
    assert answer[:3] == [4, "m2", "NotSupported"]


def test_both_directions_action() -> None:
    csms, station = pair(V201)
    payload = {"vendorId": "acme"}
    for side in (csms, station):
        assert only(side.receive(f'[2,"d1","DataTransfer",{json.dumps(payload)}]'), IncomingCall)


@pytest.mark.parametrize(
    ("payload", "codes", "path"),
    [
        pytest.param(
            {V16: {"chargePointVendor": "V"}, V201: {"reason": "PowerUp"}},
            OCCURRENCE,
            {V16: "chargePointModel", V201: "chargingStation"},
            id="required-missing",
        ),
        pytest.param(
            {V16: {**BOOT[V16], "extra": 1}, V201: {**BOOT[V201], "extra": 1}},
            FORMAT,
            {V16: "extra", V201: "extra"},
            id="extra-property",
        ),
        pytest.param(
            {
                V16: {"chargePointVendor": 5, "chargePointModel": "M"},
                V201: {"chargingStation": {"model": 5, "vendorName": "V"}, "reason": "PowerUp"},
            },
            dict.fromkeys(ALL, "TypeConstraintViolation"),
            {V16: "chargePointVendor", V201: "chargingStation.model"},
            id="wrong-type",
        ),
        pytest.param(
            {
                V16: {"chargePointVendor": "V" * 21, "chargePointModel": "M"},
                V201: {**BOOT[V201], "reason": "Bored"},
            },
            dict.fromkeys(ALL, "PropertyConstraintViolation"),
            {V16: "chargePointVendor", V201: "reason"},
            id="bad-value",
        ),
    ],
)
def test_invalid_payload_code_per_version(
    version: Version,
    payload: dict[Version, dict[str, Any]],
    codes: dict[Version, str],
    path: dict[Version, str],
) -> None:
    schema_version = V16 if version is V16 else V201  # 2.0.1 and 2.1 share these payloads
    csms, _ = pair(version)
    text = '[2,"m1","BootNotification",' + json.dumps(payload[schema_version]) + "]"
    event, answer = rejected(csms, text)
    assert answer[2] == codes[version]
    assert answer[3].startswith(path[schema_version] + ":")
    assert answer[4] == {"path": path[schema_version]}
    assert isinstance(event.error, MessageValidationError)
    assert csms.awaiting_answer == {}


STATUS: dict[Version, dict[str, Any]] = {
    V16: {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "x"},
    V201: {"timestamp": "x", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    V21: {"timestamp": "x", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
}


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01 00:00"])
def test_bad_date_time_is_rejected(version: Version, bad: str) -> None:
    csms, station = pair(version)
    payload = {**STATUS[version], "timestamp": bad}
    _, answer = rejected(csms, f'[2,"m1","StatusNotification",{json.dumps(payload)}]')
    assert answer[2] == "PropertyConstraintViolation"
    assert answer[4] == {"path": "timestamp"}
    # and in a CALLRESULT
    boot_id, _ = station.start_call(request(version, "BootNotification"))
    reply = json.dumps({**BOOT_RESPONSE, "currentTime": bad})
    failed = only(station.receive(f'[3,"{boot_id}",{reply}]'), CallFailed)
    assert isinstance(failed.error, MessageValidationError)
    assert failed.error.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert "currentTime" in str(failed.error)


def test_long_descriptions_are_cut_on_2x_only(version: Version) -> None:
    csms, _ = pair(version)
    only(csms.receive('[2,"m1","Heartbeat",{}]'), IncomingCall)
    answer = frame_of(csms.answer_error("m1", ErrorCode.INTERNAL_ERROR, "x" * 400))
    assert len(answer[3]) == (400 if version is V16 else 255)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "not json",
            {V16: None, V201: ("-1", "RpcFrameworkError"), V21: ("-1", "RpcFrameworkError")},
        ),
        (
            '[2,"m1","Heartbeat"',
            {
                V16: ("m1", "GenericError"),
                V201: ("m1", FRAMEWORK[V201]),
                V21: ("m1", FRAMEWORK[V21]),
            },
        ),
        (
            '{"not":"an array"}',
            {V16: None, V201: ("-1", FRAMEWORK[V201]), V21: ("-1", FRAMEWORK[V21])},
        ),
        (
            '[2,"m1","Heartbeat"]',
            {
                V16: ("m1", "GenericError"),
                V201: ("m1", FRAMEWORK[V201]),
                V21: ("m1", FRAMEWORK[V21]),
            },
        ),
        (
            '[7,"m1","Heartbeat",{}]',
            {V16: None, V201: ("m1", "MessageTypeNotSupported"), V21: None},
        ),
        (
            '[6,"m1","NotifyPeriodicEventStream",{}]',
            {V16: None, V201: ("m1", "MessageTypeNotSupported"), V21: None},
        ),
        (
            '[5,"m1","FormatViolation","",{}]',
            {V16: None, V201: ("m1", "MessageTypeNotSupported"), V21: "event"},
        ),
        (
            '[2,1234,"Heartbeat",{}]',
            {V16: None, V201: ("-1", FRAMEWORK[V201]), V21: ("-1", FRAMEWORK[V21])},
        ),
        (
            '[2,"' + "x" * 37 + '","Heartbeat",{}]',
            {
                V16: ("x" * 37, "GenericError"),
                V201: ("-1", FRAMEWORK[V201]),
                V21: ("-1", FRAMEWORK[V21]),
            },
        ),
        (
            '[2,"m1","Heartbeat",[]]',
            {V16: ("m1", FORMAT[V16]), V201: ("m1", FORMAT[V201]), V21: ("m1", FORMAT[V21])},
        ),
        (
            b'[2,"m1","Heartbeat",{}]',
            {
                V16: ("m1", "GenericError"),
                V201: ("m1", FRAMEWORK[V201]),
                V21: ("m1", FRAMEWORK[V21]),
            },
        ),
    ],
)
def test_broken_frames_through_receive(
    version: Version, text: str | bytes, expected: dict[Version, Any]
) -> None:
    """Broken frames (JSON, shape, type, id) at a CSMS core: answered or dropped, never raised."""
    csms, _ = pair(version)
    want = expected[version]
    if want is None:
        got = csms.receive(text)
        only(got, Dropped)
        assert got.outgoing == []
    elif want == "event":
        got = csms.receive(text)
        only(got, CallResultErrorReceived)
        assert got.outgoing == []
    else:
        event, answer = rejected(csms, text)
        assert (answer[1], answer[2]) == want
        assert isinstance(event.error, FrameError)
        assert event.action is None
    assert csms.awaiting_answer == {}


def test_binary_frames_accepted_in_lenient_mode(version: Version) -> None:
    csms = RpcConnection(version, role="csms", accept_binary=True)
    assert only(csms.receive(b'[2,"m1","Heartbeat",{}]'), IncomingCall).message_id == "m1"


def test_duplicate_pending_call_id_is_dropped(version: Version) -> None:
    csms, _ = pair(version)
    only(csms.receive('[2,"m1","Heartbeat",{}]'), IncomingCall)
    got = csms.receive('[2,"m1","Heartbeat",{}]')
    assert "still awaiting" in only(got, Dropped).reason
    assert got.outgoing == []
    # a broken CALL with that id is not answered either: the first CALL's answer would clash
    got = csms.receive('[2,"m1","Heartbeat",[]]')
    only(got, Dropped)
    assert got.outgoing == []
    csms.answer("m1", response(version, "Heartbeat"))
    # once answered, the id may come again (a retry); it is a new CALL
    only(csms.receive('[2,"m1","Heartbeat",{}]'), IncomingCall)


# --- bad replies to our CALL -------------------------------------------------------------------


def test_invalid_callresult_fails_the_call(version: Version) -> None:
    csms, _ = pair(version)
    message_id, _ = csms.start_call(request(version, "Reset"))
    got = csms.receive(f'[3,"{message_id}",{{"status":"Maybe"}}]')
    failed = only(got, CallFailed)
    assert failed.action == "Reset"
    assert isinstance(failed.error, MessageValidationError)
    assert failed.error.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert csms.outstanding is None
    if version is V21:
        (text,) = got.outgoing
        answer = frame_of(text)
        assert answer[:3] == [5, message_id, "PropertyConstraintViolation"]
        assert answer[3].startswith("status:")
        assert answer[4] == {"path": "status"}
    else:
        assert got.outgoing == []  # before 2.1 nothing can answer a response


def test_missing_field_in_callresult(version: Version) -> None:
    csms, _ = pair(version)
    message_id, _ = csms.start_call(request(version, "Reset"))
    got = csms.receive(f'[3,"{message_id}",{{}}]')
    assert isinstance(only(got, CallFailed).error, MessageValidationError)
    if version is V21:
        assert frame_of(got.outgoing[0])[2] == OCCURRENCE[V21]


@pytest.mark.parametrize(
    ("template", "callresulterror"),
    [
        ('[3,"{id}"]', True),
        ('[3,"{id}",[]]', True),
        ('[3,"{id}",{{}},{{}}]', True),
        ('[4,"{id}","GenericError"]', False),
        ('[4,"{id}",7,"",{{}}]', False),
        ('[4,"{id}","GenericError","",[]]', False),
    ],
)
def test_broken_reply_frame_naming_our_call(
    version: Version, template: str, callresulterror: bool
) -> None:
    csms, _ = pair(version)
    message_id, _ = csms.start_call(request(version, "Reset"))
    got = csms.receive(template.format(id=message_id))
    failed = only(got, CallFailed)
    assert isinstance(failed.error, FrameError)
    assert csms.outstanding is None
    if callresulterror and version is V21:
        (text,) = got.outgoing
        assert frame_of(text)[:2] == [5, message_id]
    else:
        assert got.outgoing == []


def test_callresulterror_received_is_reported() -> None:
    csms, _ = pair(V21)
    only(csms.receive('[2,"m1","Heartbeat",{}]'), IncomingCall)
    csms.answer("m1", response(V21, "Heartbeat"))
    event = only(
        csms.receive('[5,"m1","OccurenceConstraintViolation","missing x",{"a":1}]'),
        CallResultErrorReceived,
    )
    assert event == CallResultErrorReceived(
        "m1", "Heartbeat", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, "missing x", {"a": 1}
    )
    unknown = only(csms.receive('[5,"zz","Weird","",{}]'), CallResultErrorReceived)
    assert (unknown.action, unknown.error_code) == (None, "Weird")
    assert csms.statistics().callresulterrors_received == 2


# --- SEND (2.1) ------------------------------------------------------------------------------


def test_send_is_exempt_from_the_slot() -> None:
    csms, station = pair(V21)
    call_id, _ = station.start_call(request(V21, "Heartbeat"))
    stream = request(V21, "NotifyPeriodicEventStream")
    assert isinstance(stream, v2_1.NotifyPeriodicEventStream)
    text = station.send(stream)
    text2 = station.send(stream)
    assert station.outstanding == OutstandingCall(call_id, "Heartbeat")
    got = csms.receive(text)
    event = only(got, IncomingSend)
    assert (event.action, event.message) == ("NotifyPeriodicEventStream", stream)
    assert got.outgoing == []
    assert only(csms.receive(text2), IncomingSend).message_id != event.message_id
    assert csms.awaiting_answer == {}  # never answered
    assert station.statistics().sends_sent == 2
    assert csms.statistics().sends_received == 2


@pytest.mark.parametrize(
    "text",
    [
        '[6,"m1","NotifyPeriodicEventStream",{"id":1}]',
        '[6,"m1","NotifyPeriodicEventStream",[]]',
        '[6,"m1","NoSuchThing",{}]',
        '[6,"m1","Heartbeat",{}]',
        '[6,1,"NotifyPeriodicEventStream",{}]',
        '[6,"m1","NotifyPeriodicEventStream"]',
    ],
)
def test_invalid_send_is_dropped_never_answered(text: str) -> None:
    csms, _ = pair(V21)
    got = csms.receive(text)
    only(got, Dropped)
    assert got.outgoing == []


def test_send_only_action_as_call_is_not_supported() -> None:
    csms, _ = pair(V21)
    text = '[2,"m1","NotifyPeriodicEventStream",' + json.dumps(STREAM) + "]"
    _, answer = rejected(csms, text)
    assert answer[2] == "NotSupported"


def test_send_from_the_wrong_side_is_dropped() -> None:
    _, station = pair(V21)
    text = '[6,"m1","NotifyPeriodicEventStream",' + json.dumps(STREAM) + "]"
    only(station.receive(text), Dropped)


def test_send_refused_where_it_does_not_belong(version: Version) -> None:
    csms, station = pair(version)
    if version is not V21:
        with pytest.raises(LocalProtocolError, match="SEND"):
            station.send(request(V21, "NotifyPeriodicEventStream"))
        return
    with pytest.raises(LocalProtocolError, match="may not send"):
        csms.send(request(V21, "NotifyPeriodicEventStream"))
    with pytest.raises(LocalProtocolError, match="not a SEND"):
        station.send(request(V21, "Heartbeat"))
    with pytest.raises(LocalProtocolError, match="send\\(\\)"):
        station.start_call(request(V21, "NotifyPeriodicEventStream"))


# --- our side: what start_call/answer refuse ---------------------------------------------------


def test_start_call_refusals(version: Version) -> None:
    csms, _ = pair(version)
    other = V201 if version is V16 else V16
    with pytest.raises(LocalProtocolError, match="OCPP"):
        csms.start_call(request(other, "Reset"))
    with pytest.raises(LocalProtocolError, match="may not send Heartbeat"):
        csms.start_call(request(version, "Heartbeat"))
    with pytest.raises(LocalProtocolError, match="not a CALL request"):
        csms.start_call(response(version, "Reset"))  # type: ignore[arg-type]
    assert csms.outstanding is None
    assert csms.statistics().frames_sent == 0


def test_invalid_outbound_request_is_ours(version: Version) -> None:
    csms, station = pair(version)
    transfer = request(version, "DataTransfer", {"vendorId": "acme"})
    object.__setattr__(transfer, "vendor_id", "v" * 300)  # slip past the constructor's checks
    with pytest.raises(LocalProtocolError) as info:
        csms.start_call(transfer)
    assert isinstance(info.value.__cause__, MessageValidationError)
    assert csms.outstanding is None

    # with outbound validation off, it goes out and the peer rejects it
    lax = RpcConnection(version, role="csms", validate_outbound=False)
    message_id, text = lax.start_call(transfer)
    _, answer = rejected(station, text)
    assert answer[1:3] == [message_id, "PropertyConstraintViolation"]


def test_answer_refusals(version: Version) -> None:
    csms, _ = pair(version)
    with pytest.raises(LocalProtocolError, match="awaits"):
        csms.answer("nope", response(version, "Heartbeat"))
    with pytest.raises(LocalProtocolError, match="awaits"):
        csms.answer_error("nope", ErrorCode.INTERNAL_ERROR)
    only(csms.receive(f'[2,"m1","BootNotification",{json.dumps(BOOT[version])}]'), IncomingCall)
    with pytest.raises(LocalProtocolError, match="BootNotificationResponse"):
        csms.answer("m1", response(version, "Heartbeat"))
    other = V201 if version is V16 else V16
    with pytest.raises(LocalProtocolError, match="BootNotificationResponse"):
        csms.answer("m1", response(other, "BootNotification"))

    bad = response(version, "BootNotification")
    object.__setattr__(bad, "interval", "300")  # slip past the constructor's checks
    with pytest.raises(LocalProtocolError) as info:
        csms.answer("m1", bad)
    assert isinstance(info.value.__cause__, MessageValidationError)

    with pytest.raises(LocalProtocolError, match="not an OCPP error code"):
        csms.answer_error("m1", "MadeUpError")
    with pytest.raises(LocalProtocolError, match="JSON"):
        csms.answer_error("m1", ErrorCode.INTERNAL_ERROR, "x", {"bad": object()})
    assert csms.awaiting_answer == {"m1": "BootNotification"}  # every refusal left it pending

    text = csms.answer_error("m1", ErrorCode.INTERNAL_ERROR, "our bug")
    assert frame_of(text) == [4, "m1", "InternalError", "our bug", {}]
    with pytest.raises(LocalProtocolError, match="already answered"):
        csms.answer("m1", response(version, "BootNotification"))


@pytest.mark.parametrize(
    ("code", "spelled"),
    [
        (ErrorCode.FORMAT_VIOLATION, FORMAT),
        ("FormatViolation", FORMAT),
        ("FormationViolation", FORMAT),
        (ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, OCCURRENCE),
        ("OccurrenceConstraintViolation", OCCURRENCE),
        (ErrorCode.RPC_FRAMEWORK_ERROR, FRAMEWORK),
        (ErrorCode.SECURITY_ERROR, dict.fromkeys(ALL, "SecurityError")),
        (ErrorCode.NOT_SUPPORTED, dict.fromkeys(ALL, "NotSupported")),
    ],
)
def test_answer_error_spells_per_version(
    version: Version, code: ErrorCode | str, spelled: dict[Version, str]
) -> None:
    csms, _ = pair(version)
    only(csms.receive('[2,"m1","Heartbeat",{}]'), IncomingCall)
    assert frame_of(csms.answer_error("m1", code))[2] == spelled[version]


def test_message_ids() -> None:
    made = {new_message_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(is_valid_message_id(m) and uuid.UUID(m).version == 4 for m in made)
    csms = RpcConnection(V201, role="csms")
    message_id, _ = csms.start_call(request(V201, "Reset"))
    assert uuid.UUID(message_id).version == 4


@pytest.mark.parametrize("bad", ["", "x" * 37, "\ud800"])
def test_id_factory_must_make_valid_ids(bad: str) -> None:
    csms = RpcConnection(V201, role="csms", id_factory=lambda: bad)
    with pytest.raises(LocalProtocolError, match="id_factory"):
        csms.start_call(request(V201, "Reset"))
    assert csms.outstanding is None


def test_id_factory_must_not_repeat() -> None:
    csms = RpcConnection(V201, role="csms", id_factory=lambda: "same")
    csms.start_call(request(V201, "Reset"))
    csms.abandon_call("same")
    with pytest.raises(LocalProtocolError, match="again"):
        csms.start_call(request(V201, "Reset"))


def test_statistics(version: Version) -> None:
    csms, station = pair(version)
    _, text = station.start_call(request(version, "Heartbeat"))
    csms.receive(text)
    csms.receive("garbage")
    csms.receive('[3,"stale",{}]')
    reply = csms.answer("s1", response(version, "Heartbeat"))
    station.receive(reply)
    call_id, _ = csms.start_call(request(version, "Reset"))
    csms.receive(f'[4,"{call_id}","NotSupported","",{{}}]')
    stats = csms.statistics()
    assert stats.frames_received == 4
    assert stats.calls_received == 1
    assert stats.results_sent == 1
    assert stats.calls_sent == 1
    assert stats.calls_failed == 1
    assert stats.dropped == (2 if version is V16 else 1)
    assert stats.calls_rejected == (0 if version is V16 else 1)
    assert stats.errors_sent == (0 if version is V16 else 1)
    assert stats.frames_sent == stats.results_sent + stats.errors_sent + stats.calls_sent
    assert station.statistics().calls_completed == 1


def test_role_and_version_are_checked() -> None:
    with pytest.raises(ValueError, match="operator"):
        RpcConnection(V201, role="operator")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"3\.0"):
        RpcConnection("3.0", role="csms")
    assert RpcConnection("2.0.1", role="csms").version is V201


# --- our decoder failing is our bug, not the peer's -----------------------------------------------


def test_decoder_bug_answers_internal_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    csms, _ = pair(V21)
    reset = request(V21, "Reset")

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(messages, "decode_request", broken)
    monkeypatch.setattr(messages, "decode_response", broken)
    _, answer = rejected(csms, '[2,"m1","Heartbeat",{}]')
    assert answer[2] == "InternalError"
    only(csms.receive('[6,"m2","NotifyPeriodicEventStream",{}]'), Dropped)
    message_id, _ = csms.start_call(reset)
    got = csms.receive(f'[3,"{message_id}",{{"status":"Accepted"}}]')
    failed = only(got, CallFailed)
    assert isinstance(failed.error, RemoteProtocolError)
    assert failed.error.code is ErrorCode.INTERNAL_ERROR
    assert frame_of(got.outgoing[0])[2] == "InternalError"
    assert "raised unexpectedly" in caplog.text


# --- properties: random input never raises, never breaks the slot -------------------------------

OUR_IDS = ["c1", "c2", "c3"]
json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-10, 10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
some_id = st.one_of(st.sampled_from([*OUR_IDS, "m1", "m2", "-1", "", "x" * 37]), json_scalar)
some_payload = st.one_of(
    st.sampled_from([{}, RESET_RESPONSE, BOOT_RESPONSE, HEARTBEAT_RESPONSE, STREAM]),
    st.sampled_from([{"status": "Nope"}, {"status": "Accepted", "x": 1}]),
    json_value,
)
some_action = st.one_of(
    st.sampled_from(
        ["Heartbeat", "BootNotification", "Reset", "NotifyPeriodicEventStream", "DataTransfer"]
    ),
    json_scalar,
)
some_frame = st.one_of(
    st.tuples(st.just(2), some_id, some_action, some_payload),
    st.tuples(st.just(3), some_id, some_payload),
    st.tuples(st.just(4), some_id, some_action, st.text(max_size=5), some_payload),
    st.tuples(st.just(5), some_id, some_action, st.text(max_size=5), some_payload),
    st.tuples(st.just(6), some_id, some_action, some_payload),
    st.lists(json_value, max_size=6),
).map(list)
some_input = st.one_of(
    some_frame.map(lambda f: json.dumps(f)),
    some_frame.map(lambda f: json.dumps(f).encode()),
    some_frame.map(lambda f: json.dumps(f)[:-1]),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def check_outgoing(version: Version, texts: list[str], events: list[Event]) -> None:
    for text in texts:
        text.encode("utf-8")
        frame = parse_frame(Version.V21, text) if is_valid_message_id(frame_of(text)[1]) else None
        if frame is None:  # 1.6 echoing an id of the wrong length
            assert version is V16
            assert frame_of(text)[0] == 4
            continue
        assert isinstance(frame, CallErrorFrame | CallResultErrorFrame)
        if isinstance(frame, CallResultErrorFrame):
            assert version is V21
            failed = [e for e in events if isinstance(e, CallFailed)]
            assert [e.message_id for e in failed] == [frame.message_id]
        if version is not V16:
            assert len(frame.description) <= 255


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL), st.sampled_from(list(Role)), st.lists(some_input, max_size=12))
def test_random_input_keeps_the_invariants(
    version: Version, role: Role, inputs: list[str | bytes]
) -> None:
    ids: Iterator[str] = iter(OUR_IDS)
    rpc = RpcConnection(version, role=role, id_factory=lambda: next(ids))
    ours = request(version, "Reset" if role is Role.CSMS else "Heartbeat")
    rpc.start_call(ours)
    for data in inputs:
        before = rpc.outstanding
        pending_before = rpc.awaiting_answer
        got = rpc.receive(data)
        after = rpc.outstanding
        finished = [e for e in got.events if isinstance(e, CallCompleted | CallFailed)]
        if before is None or after is not None:
            assert after == before
            assert finished == []
        else:
            assert [(e.message_id, e.action) for e in finished] == [
                (before.message_id, before.action)
            ]
        check_outgoing(version, got.outgoing, got.events)
        assert len(got.events) == 1
        new_calls = [e for e in got.events if isinstance(e, IncomingCall)]
        assert set(rpc.awaiting_answer) == set(pending_before) | {e.message_id for e in new_calls}
        for event in new_calls:
            assert event.message_id not in pending_before
            assert isinstance(event.request, Request)
            answer = frame_of(rpc.answer_error(event.message_id, ErrorCode.NOT_SUPPORTED))
            assert answer[:3] == [4, event.message_id, "NotSupported"]
        for other in got.events:
            if isinstance(other, IncomingSend):
                assert version is V21
                assert isinstance(other.message, Send)
        if rpc.outstanding is None:
            with contextlib.suppress(StopIteration):  # our three ids may be used up
                rpc.start_call(ours)
    stats = rpc.statistics()
    assert stats.frames_received == len(inputs)


SIDES = st.sampled_from(["csms", "station"])


class WiredPair(RuleBasedStateMachine):
    """A CSMS core and a station core passing frames through two in-order pipes, with calls
    started, answered, abandoned and (now and then) garbage injected, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.version = V21
        self.pipe: dict[str, list[str | bytes]] = {"csms": [], "station": []}  # to that side
        self.waiting: dict[str, list[IncomingCall]] = {"csms": [], "station": []}
        self.sent: dict[str, dict[str, str]] = {"csms": {}, "station": {}}  # id -> action
        self.abandoned: set[str] = set()
        self.finished: set[str] = set()
        self.garbage = False
        self.completed = 0

    @initialize(version=st.sampled_from(ALL))
    def connect(self, version: Version) -> None:
        self.version = version
        csms, station = pair(version)
        self.side = {"csms": csms, "station": station}

    @staticmethod
    def other(name: str) -> str:
        return "station" if name == "csms" else "csms"

    @rule(name=SIDES, boot=st.booleans())
    def start_call(self, name: str, boot: bool) -> None:
        rpc = self.side[name]
        action = "Reset" if name == "csms" else ("BootNotification" if boot else "Heartbeat")
        if rpc.outstanding is not None:
            with pytest.raises(LocalProtocolError, match="outstanding"):
                rpc.start_call(request(self.version, action))
            return
        message_id, text = rpc.start_call(request(self.version, action))
        self.sent[name][message_id] = action
        self.pipe[self.other(name)].append(text)

    @rule()
    def station_sends(self) -> None:
        if self.version is V21:
            stream = request(self.version, "NotifyPeriodicEventStream")
            self.pipe["csms"].append(self.side["station"].send(stream))

    @rule(name=SIDES, dice=st.integers(0, 3))
    def abandon(self, name: str, dice: int) -> None:
        outstanding = self.side[name].outstanding
        if outstanding is not None and dice == 0:
            assert self.side[name].abandon_call(outstanding.message_id)
            self.abandoned.add(outstanding.message_id)

    @rule(name=SIDES, data=some_input, dice=st.integers(0, 3))
    def inject(self, name: str, data: str | bytes, dice: int) -> None:
        if dice == 0:
            self.garbage = True
            self.pipe[name].append(data)

    @rule(name=SIDES, ok=st.booleans())
    def answer(self, name: str, ok: bool) -> None:
        if not self.waiting[name]:
            return
        call = self.waiting[name].pop(0)
        rpc = self.side[name]
        if ok:
            text = rpc.answer(call.message_id, response(self.version, call.action))
        else:
            text = rpc.answer_error(call.message_id, ErrorCode.NOT_SUPPORTED)
        self.pipe[self.other(name)].append(text)

    @rule(name=SIDES, everything=st.booleans())
    def deliver(self, name: str, everything: bool) -> None:
        while self.pipe[name]:
            self.deliver_one(name, self.pipe[name].pop(0))
            if not everything:
                break

    @rule(ok=st.booleans())
    def settle(self, ok: bool) -> None:
        """Deliver and answer everything until both pipes are quiet."""
        while any(self.pipe.values()) or any(self.waiting.values()):
            for name in ("csms", "station"):
                self.deliver(name, everything=True)
                while self.waiting[name]:
                    self.answer(name, ok)
        # every CALL reached the peer and every CALL the peer took was answered, so whatever
        # came first (the real answer or a forged one) freed both slots
        for rpc in self.side.values():
            assert rpc.outstanding is None

    def deliver_one(self, name: str, data: str | bytes) -> None:
        rpc = self.side[name]
        before = rpc.outstanding
        got = rpc.receive(data)
        self.pipe[self.other(name)].extend(got.outgoing)
        for event in got.events:
            if isinstance(event, IncomingCall):
                self.waiting[name].append(event)
            elif isinstance(event, CallCompleted | CallFailed):
                assert before is not None
                assert event.message_id == before.message_id
                assert event.message_id not in self.abandoned
                assert event.message_id not in self.finished
                self.finished.add(event.message_id)
                assert event.action == self.sent[name][event.message_id]
                if isinstance(event, CallCompleted):
                    self.completed += 1
                    spec = messages.actions(self.version)[event.action]
                    assert spec.response is not None
                    assert isinstance(event.response, spec.response)
                elif not self.garbage:
                    assert isinstance(event.error, CallError)
            elif not self.garbage:
                # without garbage, the only other events are SENDs and late replies to
                # abandoned calls
                assert isinstance(event, Dropped | IncomingSend), event
                if isinstance(event, Dropped):
                    assert event.message_id in self.abandoned

    @invariant()
    def slots_are_consistent(self) -> None:
        for name, rpc in getattr(self, "side", {}).items():
            outstanding = rpc.outstanding
            if outstanding is not None:
                assert outstanding.message_id in self.sent[name]
                assert outstanding.message_id not in self.abandoned
                assert outstanding.message_id not in self.finished
            assert set(rpc.awaiting_answer) == {c.message_id for c in self.waiting[name]}


WiredPair.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, suppress_health_check=[HealthCheck.too_slow]
)
test_wired_pair = WiredPair.TestCase
