"""Constructing message objects checks the schema's value constraints.

A value that breaks a constraint (too long, out of range, not a multiple, too many or too few
items, not an enum value, a naive datetime) raises ``MessageValidationError`` at construction,
naming the attribute.  Valid construction works, instances are frozen, and hashable (fields that may
hold a dict, vendor keys and untyped 2.x ``DataTransfer.data``, are left out of the hash).

The generic tests start from the every-field payload of ``_oracle.build``, decode it, and
re-construct the owning object of each constrained field with ``attrs.evolve``.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import attrs
import pytest
from _oracle import (
    Mutation,
    SchemaId,
    all_schema_ids,
    build,
    decode,
    mutations,
    our_schema,
)

from ocpp_trio import ErrorCode, LocalProtocolError, MessageValidationError, Version
from ocpp_trio.messages import Datatype, encode, v1_6, v2_0_1, v2_1

SCHEMAS = all_schema_ids()
PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
OCCURRENCE = ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
UTC = dt.UTC


def _squash(name: str) -> str:
    return name.rstrip("_").replace("_", "").lower()


@functools.cache
def attr_for(cls: type, wire: str) -> str:
    """The attribute of ``cls`` that holds wire property ``wire`` (our own mapping, by name)."""
    found = [f.name for f in attrs.fields(cls) if _squash(f.name) == _squash(wire)]
    assert len(found) == 1, (cls, wire, found)
    return found[0]


def _full_message(sid: SchemaId) -> Any:
    schema = our_schema(sid)
    return decode(sid, build(schema, schema, full=True))


#: mutation kinds that break a value constraint construction must check, and their code
CONSTRUCTION_FAULTS = {
    "too-long": PROPERTY,
    "below-minimum": PROPERTY,
    "above-maximum": PROPERTY,
    "multiple-of-bad": PROPERTY,
    "too-many-items": OCCURRENCE,
    "too-few-items": OCCURRENCE,
    "bad-enum": PROPERTY,
    "bad-date-time": PROPERTY,
}


def _python_value(mutation: Mutation, current: Any) -> Any:
    """The Python-side counterpart of a wire mutation."""
    if mutation.kind == "too-many-items":
        return (current[0],) * len(mutation.new)
    if mutation.kind == "too-few-items":
        return current[: len(mutation.new)]
    if mutation.kind == "bad-date-time":
        return dt.datetime(2024, 1, 1, 12, 0)  # naive
    return mutation.new


def _construction_cases(sid: SchemaId) -> list[Mutation]:
    schema = our_schema(sid)
    base = build(schema, schema, full=True)
    seen: set[tuple[str, tuple[str | int, ...]]] = set()
    out = []
    for m in mutations(schema, base, sid.version):
        if m.kind not in CONSTRUCTION_FAULTS:
            continue
        # one case per kind and field: array indexes beyond the first add nothing here
        key = (m.kind, tuple(p for p in m.path if not isinstance(p, int)))
        if key in seen or (m.kind == "bad-date-time" and m.new != "yesterday"):
            continue
        seen.add(key)
        out.append(m)
    return out


def _owner(message: Any, path: tuple[str | int, ...]) -> tuple[Any, str, int | None]:
    """The object owning the attribute at wire ``path``, the attribute, and the item index."""
    index: int | None = None
    if isinstance(path[-1], int):
        path, index = path[:-1], path[-1]
    obj = message
    for step in path[:-1]:
        obj = obj[step] if isinstance(step, int) else getattr(obj, attr_for(type(obj), step))
    return obj, attr_for(type(obj), str(path[-1])), index


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
def test_construction_checks_constraints(sid: SchemaId) -> None:
    message = _full_message(sid)
    for mutation in _construction_cases(sid):
        owner, attr, index = _owner(message, mutation.path)
        current = getattr(owner, attr)
        if index is None:
            new = _python_value(mutation, current)
            where = attr
        else:
            item = _python_value(mutation, current[index])
            new = (*current[:index], item, *current[index + 1 :])
            where = f"{attr}[{index}]"
        with pytest.raises(MessageValidationError) as info:
            attrs.evolve(owner, **{attr: new})
        error = info.value
        assert error.code is CONSTRUCTION_FAULTS[mutation.kind], (str(mutation), str(error))
        assert error.path == where, (str(mutation), str(error))
        assert str(error).startswith(f"{where}: "), str(mutation)
        assert error.version is sid.version


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_valid_construction(sid: SchemaId, full: bool) -> None:
    """Re-constructing every object of a decoded payload from its own fields works and is equal;
    lists are accepted for arrays; wire strings for enums become members."""
    schema = our_schema(sid)
    payload = build(schema, schema, full=full)
    message = decode(sid, payload)

    def rebuild(obj: Any) -> Any:
        if isinstance(obj, Datatype):
            kwargs = {f.name: rebuild(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
            return type(obj)(**kwargs)
        if isinstance(obj, tuple):
            return [rebuild(x) for x in obj]  # a list on purpose: it becomes a tuple
        if isinstance(obj, str) and type(obj) is not str:
            return str(obj)  # an enum member given as its wire value
        return obj

    again = rebuild(message)
    assert again == message
    assert encode(again) == encode(message)
    _assert_tuples_and_members(again)


def _assert_tuples_and_members(obj: Any) -> None:
    if isinstance(obj, Datatype):
        for f in attrs.fields(type(obj)):
            value = getattr(obj, f.name)
            assert not isinstance(value, list), (type(obj).__name__, f.name)
            _assert_tuples_and_members(value)
    elif isinstance(obj, tuple):
        for x in obj:
            _assert_tuples_and_members(x)


@pytest.mark.parametrize("sid", SCHEMAS, ids=str)
def test_frozen_and_hashable(sid: SchemaId) -> None:
    message = _full_message(sid)
    field = attrs.fields(type(message))
    if field:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(message, field[0].name, None)
    with pytest.raises(AttributeError):
        message.not_a_field = 1  # slotted: no new attributes either
    # evolve: a distinct object even where "{}" decodes to the class's shared empty instance
    again = attrs.evolve(_full_message(sid))
    assert again == message
    assert again is not message
    # hashable everywhere: dict-valued fields (vendor keys, untyped DataTransfer.data) are
    # left out of the hash, never out of equality
    assert hash(again) == hash(message)
    assert len({message, again}) == 1


# --------------------------------------------------------------------------------------------
# explicit cases


def test_boot_notification_201() -> None:
    station = v2_0_1.ChargingStationType(model="M1", vendor_name="Acme")
    boot = v2_0_1.BootNotificationRequest(
        charging_station=station, reason=v2_0_1.BootReasonEnumType.POWER_UP
    )
    assert encode(boot) == {
        "chargingStation": {"model": "M1", "vendorName": "Acme"},
        "reason": "PowerUp",
    }
    assert boot.RESPONSE is v2_0_1.BootNotificationResponse
    with pytest.raises(MessageValidationError, match=r"^model: 'x{21}' is longer than 20"):
        v2_0_1.ChargingStationType(model="x" * 21, vendor_name="Acme")
    with pytest.raises(MessageValidationError, match=r"^reason: 'Boot' is not one of") as info:
        v2_0_1.BootNotificationRequest(charging_station=station, reason="Boot")  # type: ignore[arg-type]
    assert info.value.code is PROPERTY
    assert info.value.wire_code == "PropertyConstraintViolation"
    # a member of another enum whose value is not in this one
    with pytest.raises(MessageValidationError, match=r"^reason: "):
        v2_0_1.BootNotificationRequest(
            charging_station=station,
            reason=v2_0_1.RegistrationStatusEnumType.ACCEPTED,  # type: ignore[arg-type]
        )
    # the wire value as a plain str is accepted and becomes the member
    boot2 = v2_0_1.BootNotificationRequest(charging_station=station, reason="PowerUp")  # type: ignore[arg-type]
    assert boot2.reason is v2_0_1.BootReasonEnumType.POWER_UP
    assert boot2 == boot


def test_boot_notification_response_16_datetimes() -> None:
    ok = v1_6.BootNotificationResponse(
        status=v1_6.RegistrationStatus.ACCEPTED,
        current_time=dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        interval=300,
    )
    assert encode(ok) == {
        "status": "Accepted",
        "currentTime": "2024-05-06T07:08:09.123Z",
        "interval": 300,
    }
    with pytest.raises(MessageValidationError, match=r"^current_time: .* is not timezone-aware"):
        v1_6.BootNotificationResponse(
            status=v1_6.RegistrationStatus.ACCEPTED,
            current_time=dt.datetime(2024, 5, 6, 7, 8, 9),
            interval=300,
        )
    odd = dt.timezone(dt.timedelta(hours=1, seconds=30))
    with pytest.raises(MessageValidationError, match=r"^current_time: "):
        v1_6.BootNotificationResponse(
            status=v1_6.RegistrationStatus.ACCEPTED,
            current_time=dt.datetime(2024, 5, 6, tzinfo=odd),
            interval=300,
        )
    with pytest.raises(MessageValidationError, match=r"^current_time: ") as info:
        v1_6.BootNotificationResponse(
            status=v1_6.RegistrationStatus.ACCEPTED,
            current_time="2024-05-06T07:08:09Z",  # type: ignore[arg-type]
            interval=300,
        )
    assert info.value.code is TYPE


def test_charging_schedule_16_multiple_of() -> None:
    def period(limit: float) -> v1_6.ChargingSchedulePeriod:
        return v1_6.ChargingSchedulePeriod(start_period=0, limit=limit)

    assert period(21.4).limit == 21.4
    assert period(0.3).limit == 0.3
    with pytest.raises(MessageValidationError, match=r"^limit: 21.45 is not a multiple of 0.1"):
        period(21.45)
    with pytest.raises(MessageValidationError, match=r"^limit: nan is not a finite number"):
        period(float("nan"))
    with pytest.raises(MessageValidationError, match=r"^limit: 'abc' is not a number"):
        period("abc")  # type: ignore[arg-type]


def test_items_201() -> None:
    criteria = (v2_0_1.ComponentCriterionEnumType.ACTIVE,) * 5
    with pytest.raises(
        MessageValidationError, match=r"^component_criteria: .* more than 4"
    ) as info:
        v2_0_1.GetReportRequest(request_id=1, component_criteria=criteria)
    assert info.value.code is OCCURRENCE
    assert info.value.wire_code == "OccurrenceConstraintViolation"
    with pytest.raises(MessageValidationError, match=r"^component_criteria: .* fewer than 1"):
        v2_0_1.GetReportRequest(request_id=1, component_criteria=())
    with pytest.raises(MessageValidationError, match=r"^component_criteria\[1\]: 'Nope' "):
        v2_0_1.GetReportRequest(request_id=1, component_criteria=["Active", "Nope"])  # type: ignore[list-item]
    ok = v2_0_1.GetReportRequest(request_id=1, component_criteria=["Active"])  # type: ignore[list-item]
    assert ok.component_criteria == (v2_0_1.ComponentCriterionEnumType.ACTIVE,)


def test_bounds_21() -> None:
    with pytest.raises(MessageValidationError, match=r"^severity: 10 is greater than the maximum"):
        v2_1.SetMonitoringLevelRequest(severity=10)
    with pytest.raises(MessageValidationError, match=r"^severity: -1 is less than the minimum"):
        v2_1.SetMonitoringLevelRequest(severity=-1)
    assert v2_1.SetMonitoringLevelRequest(severity=9).severity == 9


def test_1_6_error_spelling_at_construction() -> None:
    with pytest.raises(MessageValidationError) as info:
        v1_6.GetConfigurationRequest(key=("k",) * 0 + ("x" * 51,))
    assert info.value.path == "key[0]"
    assert info.value.wire_code == "PropertyConstraintViolation"
    assert info.value.version is Version.V16


def test_custom_data_extra_keys() -> None:
    custom = v2_0_1.CustomDataType(vendor_id="acme", extra={"tariff": {"x": [1, 2]}})
    req = v2_0_1.HeartbeatRequest(custom_data=custom)
    assert encode(req) == {"customData": {"vendorId": "acme", "tariff": {"x": [1, 2]}}}
    assert hash(req) == hash(v2_0_1.HeartbeatRequest(custom_data=custom))
    with pytest.raises(MessageValidationError, match=r"^extra\['vendorId'\]: "):
        v2_0_1.CustomDataType(vendor_id="acme", extra={"vendorId": "other"})


@pytest.mark.parametrize(
    ("make", "path"),
    [
        (lambda: v2_0_1.CancelReservationRequest(reservation_id=1.5), "reservation_id"),
        (lambda: v2_0_1.CancelReservationRequest(reservation_id=True), "reservation_id"),
        (lambda: v1_6.HeartbeatResponse(current_time=1), "current_time"),
        (lambda: v2_1.ClearCacheResponse(status=None), "status"),
        (lambda: v2_0_1.ChargingStationType(model=5, vendor_name="V"), "model"),
        (lambda: v2_0_1.SetVariablesResponse(set_variable_result="x"), "set_variable_result"),
    ],
)
def test_wrong_argument_types_do_not_get_onto_the_wire(make: Any, path: str) -> None:
    """Types are the type checker's job; what it lets through is stopped at construction or,
    at the latest, by ``encode()``, never sent."""
    try:
        message = make()
    except MessageValidationError as e:
        error = e
    else:
        with pytest.raises(LocalProtocolError) as info:
            encode(message)
        assert isinstance(info.value.__cause__, MessageValidationError)
        error = info.value.__cause__
        path = "".join(p.capitalize() if i else p for i, p in enumerate(path.split("_")))
    assert error.path == path
    assert error.code in (TYPE, PROPERTY)


def test_untyped_data_counts_for_equality_not_for_the_hash() -> None:
    a = v2_1.DataTransferRequest(vendor_id="acme", data={"k": [1]})
    b = v2_1.DataTransferRequest(vendor_id="acme", data={"k": [2]})
    assert a != b
    assert hash(a) == hash(b)
    assert attrs.evolve(b, data={"k": [1]}) == a
