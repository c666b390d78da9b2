"""The codec rejects a payload exactly when the oracle does, with the right code and path.

The oracle is ``jsonschema`` on our ``schemas/`` copy (decimal-aware ``multipleOf``, date-time
checked with rfc3339-validator; see ``_oracle``).  Payloads are valid ones built from the schema
(required fields only, or every field with arrays of up to 3 items), each changed by one
mutation: a dropped key, a wrong JSON type, an over-long string, a number out of range, an
unknown enum value, an extra key, a bad date-time, too many or too few items, a float or a bool
for an integer, anywhere in the payload, deep inside arrays included.

When both reject, the codec's code must be the one the contract gives the oracle's complaint
(and the one the mutation was meant to cause), spelled as the version spells it, and ``str()``
of the error must start with the path of the change.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from typing import Any

import pytest
from _oracle import (
    BAD_DATE_TIMES,
    EDGE_DATE_TIMES,
    MUTATION_CODE,
    Mutation,
    SchemaId,
    all_schema_ids,
    build,
    decode,
    encode,
    expected_code,
    fmt_path,
    mutations,
    normalise,
    oracle_errors,
    our_schema,
    our_validator,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocpp_trio import ErrorCode, MessageValidationError, Version
from ocpp_trio.messages import decode_request, decode_response

SCHEMAS = all_schema_ids()

V16, V201, V21 = Version.V16, Version.V201, Version.V21
FORMAT = ErrorCode.FORMAT_VIOLATION
TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
OCCURRENCE = ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION

#: the wire spelling the contract requires, per version
SPELLING = {
    V16: {
        FORMAT: "FormationViolation",
        OCCURRENCE: "OccurenceConstraintViolation",
        TYPE: "TypeConstraintViolation",
        PROPERTY: "PropertyConstraintViolation",
    },
    V201: {
        FORMAT: "FormatViolation",
        OCCURRENCE: "OccurrenceConstraintViolation",
        TYPE: "TypeConstraintViolation",
        PROPERTY: "PropertyConstraintViolation",
    },
}
SPELLING[V21] = SPELLING[V201]


def check_agreement(sid: SchemaId, payload: Any, mutation: Mutation | None = None) -> None:
    """Decode ``payload`` and compare with the oracle's verdict (see the module docstring)."""
    errors = oracle_errors(our_validator(sid), payload)
    error: MessageValidationError | None = None
    try:
        message = decode(sid, payload)
    except MessageValidationError as e:
        error = e
    if error is None:
        assert not errors, f"the codec accepts what the oracle rejects: {errors[0]}"
        # what is accepted also re-encodes to an equal payload the schema accepts
        out = encode(message)
        schema = our_schema(sid)
        assert normalise(schema, schema, out) == normalise(schema, schema, payload)
        assert not oracle_errors(our_validator(sid), out)
        return
    assert errors, f"the codec rejects what the oracle accepts: {error} ({error.code.name})"
    expected = expected_code(errors)
    assert error.code is expected, f"{error}: {error.code.name}, expected {expected.name}"
    assert error.version is sid.version
    assert error.wire_code == SPELLING[sid.version][expected]
    if mutation is None:
        return
    intended = MUTATION_CODE.get(mutation.kind)
    if mutation.kind == "not-an-object" and not mutation.path:
        intended = FORMAT
    if intended is not None:  # None: valid unless a bound applies (e.g. a huge integer)
        assert expected is intended, f"test bug: {mutation} gives {expected.name}"
    where = fmt_path(mutation.path)
    assert error.path == where
    assert str(error).startswith(f"{where or 'payload'}: ")


@functools.cache
def _mutations_by_kind(sid: SchemaId, full: bool) -> tuple[Any, dict[str, list[Mutation]]]:
    schema = our_schema(sid)
    base = build(schema, schema, full=full)
    by_kind: dict[str, list[Mutation]] = defaultdict(list)
    for m in mutations(schema, base, sid.version):
        by_kind[m.kind].append(m)
    return base, dict(by_kind)


# --------------------------------------------------------------------------------------------
# properties over every schema


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_built_payloads_are_valid(sid: SchemaId, full: bool) -> None:
    """The unmutated payloads this file starts from are valid, and the codec agrees."""
    schema = our_schema(sid)
    payload = build(schema, schema, full=full)
    assert not oracle_errors(our_validator(sid), payload)
    check_agreement(sid, payload)


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
def test_every_mutation_of_the_minimal_payload(sid: SchemaId) -> None:
    """Exhaustive over the required-fields-only payload (about 10,000 mutations in all)."""
    base, by_kind = _mutations_by_kind(sid, False)
    for group in by_kind.values():
        for mutation in group:
            try:
                check_agreement(sid, mutation.apply(base), mutation)
            except AssertionError as e:
                raise AssertionError(f"{mutation}: {e}") from e


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_of_the_full_payload(sid: SchemaId, data: st.DataObject) -> None:
    """Hypothesis picks a kind of fault, then where to put it, in the every-field payload."""
    base, by_kind = _mutations_by_kind(sid, True)
    kind = data.draw(st.sampled_from(sorted(by_kind)), label="kind")
    mutation = data.draw(st.sampled_from(by_kind[kind]), label="mutation")
    check_agreement(sid, mutation.apply(base), mutation)


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_two_mutations_report_one_of_them(sid: SchemaId, data: st.DataObject) -> None:
    """With two faults, the codec still rejects and reports one of them, either one."""
    base, by_kind = _mutations_by_kind(sid, True)
    faulty = [m for ms in by_kind.values() for m in ms if MUTATION_CODE[m.kind] is not None]
    faulty = [m for m in faulty if m.path and not m.kind.startswith(("drop", "extra"))]
    if len(faulty) < 2:
        return  # e.g. an empty payload schema
    first = data.draw(st.sampled_from(faulty), label="first")
    disjoint = [m for m in faulty if not _overlap(m.path, first.path)]
    if not disjoint:
        return
    second = data.draw(st.sampled_from(disjoint), label="second")
    payload = second.apply(first.apply(base))
    errors = oracle_errors(our_validator(sid), payload)
    if not errors:  # both changes were harmless here (e.g. 7.0 for an integer on 2.x)
        check_agreement(sid, payload)
        return
    with pytest.raises(MessageValidationError) as info:
        decode(sid, payload)
    assert info.value.path in (fmt_path(first.path), fmt_path(second.path))
    assert info.value.code in {expected_code([e]) for e in errors}


def _overlap(a: tuple[str | int, ...], b: tuple[str | int, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


# --------------------------------------------------------------------------------------------
# explicit cases


def _decode_error(sid: SchemaId, payload: Any) -> MessageValidationError:
    with pytest.raises(MessageValidationError) as info:
        decode(sid, payload)
    check_agreement(sid, payload)
    return info.value


def _set_charging_profile_16(limit: Any) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 6},
                    {"startPeriod": 60, "limit": limit},
                ],
            },
        },
    }


LIMIT_PATH = "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit"


@pytest.mark.parametrize("limit", [21.4, 0.3, 0.1, 16, 16.0, 3.3, 1e20, 123456789.1])
def test_multiple_of_tenth_accepts_decimal_multiples(limit: float) -> None:
    """``multipleOf: 0.1`` is decided on the decimal the station wrote, not on binary floats."""
    sid = SchemaId(V16, "SetChargingProfile", "request")
    payload = json.loads(json.dumps(_set_charging_profile_16(limit)))  # as read off the wire
    message = decode(sid, payload)
    period = message.cs_charging_profiles.charging_schedule.charging_schedule_period[1]
    assert period.limit == limit
    assert encode(message) == payload
    check_agreement(sid, payload)


@pytest.mark.parametrize("limit", [21.45, 0.30000000000000004, 0.05, 1e-7, 16.01])
def test_multiple_of_tenth_rejects_others(limit: float) -> None:
    sid = SchemaId(V16, "SetChargingProfile", "request")
    error = _decode_error(sid, _set_charging_profile_16(limit))
    assert error.code is PROPERTY
    assert error.wire_code == "PropertyConstraintViolation"
    assert error.path == LIMIT_PATH
    assert str(error).startswith(f"{LIMIT_PATH}: {limit!r} ")


@pytest.mark.parametrize(
    ("action", "payload", "path"),
    [
        (
            "RemoteStartTransaction",
            {
                "idTag": "tag",
                "chargingProfile": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxProfile",
                    "chargingProfileKind": "Relative",
                    "chargingSchedule": {
                        "chargingRateUnit": "W",
                        "minChargingRate": "MIN",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7.2}],
                    },
                },
            },
            "chargingProfile.chargingSchedule.minChargingRate",
        ),
    ],
)
@pytest.mark.parametrize(("value", "ok"), [(0.7, True), (4.2, True), (0.75, False)])
def test_min_charging_rate_multiple_of(
    action: str, payload: dict[str, Any], path: str, value: float, ok: bool
) -> None:
    sid = SchemaId(V16, action, "request")
    payload = json.loads(json.dumps(payload).replace('"MIN"', repr(value)))
    if ok:
        check_agreement(sid, payload)
        decode(sid, payload)
    else:
        error = _decode_error(sid, payload)
        assert (error.code, error.path) == (PROPERTY, path)


def _meter_values_201(value: Any) -> dict[str, Any]:
    return {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": "2024-05-01T12:00:00Z",
                "sampledValue": [{"value": 1.5}, {"value": 2}, {"value": value}],
            }
        ],
    }


def test_meter_values_string_for_number_message() -> None:
    """The exact text of an error, as the contract gives it."""
    sid = SchemaId(V201, "MeterValues", "request")
    error = _decode_error(sid, _meter_values_201("abc"))
    assert str(error) == "meterValue[0].sampledValue[2].value: 'abc' is not a number"
    assert error.code is TYPE
    assert error.wire_code == "TypeConstraintViolation"
    assert error.path == "meterValue[0].sampledValue[2].value"
    assert error.value == "abc"
    assert error.version is V201


@pytest.mark.parametrize("version", list(Version))
@pytest.mark.parametrize("bad", BAD_DATE_TIMES)
def test_bad_date_time_is_a_property_violation(version: Version, bad: str) -> None:
    sid = SchemaId(version, "Heartbeat", "response")
    error = _decode_error(sid, {"currentTime": bad})
    assert error.code is PROPERTY
    assert error.wire_code == "PropertyConstraintViolation"
    assert error.path == "currentTime"


@pytest.mark.parametrize("version", list(Version))
@pytest.mark.parametrize("good", EDGE_DATE_TIMES)
def test_edge_date_times_are_accepted(version: Version, good: str) -> None:
    sid = SchemaId(version, "Heartbeat", "response")
    check_agreement(sid, {"currentTime": good})
    current = decode(sid, {"currentTime": good}).current_time
    assert current.tzinfo is not None


@pytest.mark.parametrize("version", list(Version))
def test_leap_second(version: Version) -> None:
    """RFC 3339 allows ``:60``; rfc3339-validator (and so jsonschema) does not.

    The codec follows the RFC (``parse_datetime`` maps it to ``:59.999999``); the oracle in
    ``_oracle`` does not special-case it, so this documents the one known disagreement.
    """
    sid = SchemaId(version, "Heartbeat", "response")
    assert oracle_errors(our_validator(sid), {"currentTime": "2016-12-31T23:59:60Z"})
    message = decode(sid, {"currentTime": "2016-12-31T23:59:60Z"})
    assert message.current_time.second == 59


@pytest.mark.parametrize(
    ("version", "missing", "extra"),
    [
        (V16, "OccurenceConstraintViolation", "FormationViolation"),
        (V201, "OccurrenceConstraintViolation", "FormatViolation"),
        (V21, "OccurrenceConstraintViolation", "FormatViolation"),
    ],
)
def test_spelling_per_version(version: Version, missing: str, extra: str) -> None:
    sid = SchemaId(version, "Heartbeat", "response")
    error = _decode_error(sid, {})
    assert (error.code, error.wire_code, error.path) == (OCCURRENCE, missing, "currentTime")
    assert str(error).startswith("currentTime: ")
    error = _decode_error(sid, {"currentTime": "2024-01-01T00:00:00Z", "foo": 1})
    assert (error.code, error.wire_code, error.path) == (FORMAT, extra, "foo")
    assert str(error).startswith("foo: ")


@pytest.mark.parametrize("version", list(Version))
@pytest.mark.parametrize("payload", [[], "x", None, 5, 1.5, True, [{"currentTime": "x"}]])
def test_payload_not_an_object(version: Version, payload: Any) -> None:
    sid = SchemaId(version, "Heartbeat", "response")
    error = _decode_error(sid, payload)
    assert error.code is FORMAT
    assert error.wire_code == SPELLING[version][FORMAT]
    assert error.path == ""
    assert str(error).startswith("payload: ")


def _boot_16(**changes: Any) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300} | changes


def _boot_2x(**changes: Any) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300} | changes


@pytest.mark.parametrize(
    ("version", "value", "accepted"),
    [
        # draft-04 (1.6): 300.0 is not an integer; draft-06 (2.x): it is
        (V16, 300.0, False),
        (V201, 300.0, True),
        (V21, 300.0, True),
        (V16, 300.5, False),
        (V201, 300.5, False),
        (V21, 300.5, False),
        (V16, True, False),
        (V201, False, False),
        (V21, True, False),
        (V16, "300", False),
        (V201, "300", False),
        (V16, 2**80, True),
        (V21, -(2**80), True),
    ],
)
def test_integer_field(version: Version, value: Any, accepted: bool) -> None:
    sid = SchemaId(version, "BootNotification", "response")
    payload = _boot_16(interval=value) if version is V16 else _boot_2x(interval=value)
    check_agreement(sid, payload)
    if accepted:
        interval = decode(sid, payload).interval
        assert type(interval) is int
        assert interval == value
    else:
        error = _decode_error(sid, payload)
        assert (error.code, error.path) == (TYPE, "interval")


def test_nested_mutations_deep_inside_arrays() -> None:
    """2.0.1 TransactionEvent: errors deep in arrays name every index on the way."""
    sid = SchemaId(V201, "TransactionEvent", "request")
    payload = {
        "eventType": "Updated",
        "timestamp": "2024-05-01T12:00:00Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "t-1"},
        "meterValue": [
            {"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [{"value": 1}]},
            {
                "timestamp": "2024-05-01T12:01:00Z",
                "sampledValue": [
                    {"value": 1},
                    {"value": 2, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                ],
            },
        ],
    }
    check_agreement(sid, payload)
    base = ("meterValue", 1, "sampledValue", 1)
    cases: list[tuple[tuple[str | int, ...], Any, ErrorCode]] = [
        ((*base, "unitOfMeasure", "unit"), "W" * 21, PROPERTY),
        ((*base, "unitOfMeasure", "multiplier"), "3", TYPE),
        ((*base, "unitOfMeasure", "multiplier"), 3.5, TYPE),
        ((*base, "unitOfMeasure", "bogus"), 1, FORMAT),
        ((*base, "measurand"), "Energy.Nope", PROPERTY),
        ((*base, "context"), None, TYPE),
        ((*base, "unitOfMeasure"), [], TYPE),
        (("meterValue", 1, "timestamp"), "2024-05-01T12:01:00", PROPERTY),
        (("meterValue", 1, "sampledValue"), [], OCCURRENCE),
        (("transactionInfo", "chargingState"), "Charging ", PROPERTY),
    ]
    for path, value, code in cases:
        mutation = Mutation("explicit", path, value)
        error = _decode_error(sid, mutation.apply(payload))
        assert (error.code, error.path) == (code, fmt_path(path)), mutation


def test_drop_required_deep() -> None:
    sid = SchemaId(V201, "MeterValues", "request")
    payload = _meter_values_201(3)
    del payload["meterValue"][0]["sampledValue"][2]["value"]
    error = _decode_error(sid, payload)
    assert error.code is OCCURRENCE
    assert error.path == "meterValue[0].sampledValue[2].value"


@pytest.mark.parametrize("version", [V201, V21])
@pytest.mark.parametrize(
    ("criteria", "code"),
    [
        (["Active"], None),
        (["Active", "Available", "Enabled", "Problem"], None),
        (["Active", "Available", "Enabled", "Problem", "Active"], OCCURRENCE),  # maxItems 4
        ([], OCCURRENCE),  # minItems 1
        (["Active", "Nope"], PROPERTY),
        (["Active", 5], TYPE),
        ("Active", TYPE),
    ],
)
def test_item_counts(version: Version, criteria: Any, code: ErrorCode | None) -> None:
    """GetReport.componentCriteria has 1..4 items: counts are occurrence violations."""
    sid = SchemaId(version, "GetReport", "request")
    payload = {"requestId": 1, "componentCriteria": criteria}
    if code is None:
        check_agreement(sid, payload)
        assert len(decode(sid, payload).component_criteria) == len(criteria)
        return
    error = _decode_error(sid, payload)
    assert error.code is code
    assert error.wire_code == SPELLING[version][code]
    if isinstance(criteria, list) and code is not OCCURRENCE:
        assert error.path == "componentCriteria[1]"
    else:
        assert error.path == "componentCriteria"


def test_unknown_action_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        decode_request(V201, "NoSuchAction", {})
    with pytest.raises(KeyError):
        decode_response(V16, "NoSuchAction", {})
    with pytest.raises(KeyError):
        decode_request(V16, "NotifyEvent", {})  # a 2.x action
    with pytest.raises(KeyError):
        decode_response(V21, "NotifyPeriodicEventStream", {})  # SEND-only: never answered


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers(value: float) -> None:
    """``json.loads`` accepts NaN and Infinity, JSON does not: a property violation."""
    sid = SchemaId(V201, "MeterValues", "request")
    error = _decode_error_only(sid, _meter_values_201(value))
    assert (error.code, error.path) == (PROPERTY, "meterValue[0].sampledValue[2].value")


def _decode_error_only(sid: SchemaId, payload: Any) -> MessageValidationError:
    # the oracle cannot judge NaN (jsonschema counts it as a number), so no agreement check
    with pytest.raises(MessageValidationError) as info:
        decode(sid, payload)
    return info.value


@pytest.mark.parametrize("version", [V201, V21])
def test_custom_data_keeps_vendor_keys(version: Version) -> None:
    sid = SchemaId(version, "Heartbeat", "request")
    payload = {"customData": {"vendorId": "acme", "x": {"deep": [1, 2.5, None, True]}, "y": None}}
    check_agreement(sid, payload)
    assert encode(decode(sid, payload)) == payload
    error = _decode_error(sid, {"customData": {"x": 1}})
    assert (error.code, error.path) == (OCCURRENCE, "customData.vendorId")
    error = _decode_error(sid, {"customData": {"vendorId": "v" * 256}})
    assert (error.code, error.path) == (PROPERTY, "customData.vendorId")


@pytest.mark.parametrize("version", [V201, V21])
@pytest.mark.parametrize(
    "data", ["text", 5, 2.5, True, [1, "a", None], {"nested": {"k": [1, {"z": None}]}}, ""]
)
def test_data_transfer_data_passes_through(version: Version, data: Any) -> None:
    sid = SchemaId(version, "DataTransfer", "request")
    payload = {"vendorId": "acme", "messageId": "m", "data": data}
    check_agreement(sid, payload)
    assert encode(decode(sid, payload)) == payload


def test_data_transfer_data_is_a_string_in_16() -> None:
    sid = SchemaId(V16, "DataTransfer", "request")
    error = _decode_error(sid, {"vendorId": "acme", "data": {"k": 1}})
    assert (error.code, error.wire_code, error.path) == (TYPE, "TypeConstraintViolation", "data")
