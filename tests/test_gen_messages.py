"""Tests of scripts/gen_messages.py and of the codec contract of the generated modules.

Golden tests: the fixture schemas in ``tests/fixtures/gen/<folder>/`` are generated and
compared with ``tests/fixtures/gen/expected/<folder>.py``.  After an intended change of the
generator, rewrite the expected files with::

    OCPP_TRIO_REGEN_GOLDEN=1 python -m pytest tests/test_gen_messages.py -k golden
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ocpp_trio import ErrorCode, LocalProtocolError, MessageValidationError, Version
from ocpp_trio.messages import (
    Direction,
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

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "gen"
CONFIG = json.loads((FIXTURES / "config.json").read_text(encoding="utf-8"))
FOLDERS = sorted(k for k in CONFIG if k != "about")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_messages", ROOT / "scripts" / "gen_messages.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_messages"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


gen = _load_script()


def _generate_fixture(folder: str) -> str:
    cfg = CONFIG[folder]
    text: str = gen.generate_module(
        cfg["version"], FIXTURES / folder, cfg["directions"], names=cfg["names"]
    )
    return text


def _import_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden() -> dict[str, ModuleType]:
    """The expected fixture modules, imported."""
    return {
        folder: _import_file(FIXTURES / "expected" / f"{folder}.py", f"_golden_{folder}")
        for folder in FOLDERS
    }


# --------------------------------------------------------------------------------------------
# golden output


@pytest.mark.parametrize("folder", FOLDERS)
def test_golden_output(folder: str) -> None:
    text = _generate_fixture(folder)
    expected = FIXTURES / "expected" / f"{folder}.py"
    if os.environ.get("OCPP_TRIO_REGEN_GOLDEN"):
        expected.write_text(text, encoding="utf-8", newline="\n")
    assert text == expected.read_text(encoding="utf-8")
    assert _generate_fixture(folder) == text  # deterministic


def test_golden_header() -> None:
    text = (FIXTURES / "expected" / "v1_6.py").read_text(encoding="utf-8")
    head = text.splitlines()[:4]
    assert head[0].startswith("# DO NOT EDIT")
    assert "scripts/gen_messages.py" in head[0]
    checksum = gen.folder_checksum(FIXTURES / "v1_6")
    assert f"# schemas sha256: {checksum}" in head


def test_golden_1_6_names(golden: dict[str, ModuleType]) -> None:
    m = golden["v1_6"]
    # from the name table
    assert m.PingRequest.__annotations__["reading"] == "tuple[Reading, ...] | None"
    assert [u.value for u in m.UnitOfMeasure] == ["Wh", "Celcius", "Celsius"]
    # structurally identical to the table's PingStatus: shares it
    assert m.PingDetail.__annotations__["status"] == "PingStatus"
    # not in the table: <Action><Field>
    assert m.PingResponse.__annotations__["detail"] == "PingDetail | None"
    assert set(m.PingCode) == {m.PingCode.A, m.PingCode.B}
    # definitions of a draft-06 file keep their names
    assert m.EchoRequest.__annotations__["kind"] == "EchoKindEnumType"
    # keyword field
    assert m.PingRequest(station_id="s", sent_at=_utc(), class_=3).to_json()["class"] == 3


def test_golden_enum_member_names(golden: dict[str, ModuleType]) -> None:
    mode = golden["v1_6"].PingMode
    assert {m.name: m.value for m in mode} == {
        "ENERGY_ACTIVE_IMPORT_REGISTER": "Energy.Active.Import.Register",
        "L1_N": "L1-N",
        "V_3_PHASE": "3Phase",
        "ISO14443": "ISO14443",
        "K_WH": "kWh",
        "SO_C": "SoC",
    }


def test_golden_round_trip_1_6(golden: dict[str, ModuleType]) -> None:
    m = golden["v1_6"]
    payload = {
        "stationId": "CP-1",
        "class": 2,
        "sentAt": "2024-01-02T03:04:05.250Z",
        "home": "https://example.com/x",
        "mode": "L1-N",
        "reading": [{"value": 21.4, "unit": "Celsius"}, {"value": 3}],
        "tags": ["a", "b"],
    }
    msg = m.PingRequest.from_json(payload)
    assert msg.mode is m.PingMode.L1_N
    assert msg.reading[1].value == 3
    assert type(msg.reading[1].value) is int
    assert msg.tags == ("a", "b")
    assert msg.to_json() == payload
    assert m.ACTIONS["Echo"].direction is Direction.BOTH
    assert m.ACTIONS["Ping"].response is m.PingResponse
    assert m.PingRequest.RESPONSE is m.PingResponse
    assert issubclass(m.PingRequest, Request)
    assert issubclass(m.PingResponse, Response)


def test_golden_round_trip_2x(golden: dict[str, ModuleType]) -> None:
    m = golden["v2_0_1"]
    payload = {
        "thing": {"thingId": 1, "label": "x", "sizes": ["Large"], "customData": {"vendorId": "v"}},
        "when": "2024-01-02T03:04:05+01:00",
        "data": [1, {"a": None}],
        "limit": 100,
        "enabled": True,
        "customData": {"vendorId": "acme", "extra": {"deep": [1, 2]}, "n": 1},
    }
    msg = m.SetThingRequest.from_json(payload)
    assert msg.data == [1, {"a": None}]
    assert msg.custom_data == m.CustomDataType(
        vendor_id="acme", extra={"extra": {"deep": [1, 2]}, "n": 1}
    )
    assert msg.thing.sizes == (m.ThingEnumType.LARGE,)
    assert msg.to_json() == payload
    send = m.ACTIONS["NotifyPeriodicEventStream"]
    assert send.is_send
    assert issubclass(send.request, Send)
    with pytest.raises(MessageValidationError) as info:
        m.SetThingRequest.from_json({**payload, "thing": {"thingId": 0}})
    assert str(info.value) == "thing.thingId: 0 is less than the minimum of 1"
    with pytest.raises(MessageValidationError) as info:
        m.SetThingRequest.from_json({**payload, "thing": {"thingId": 1, "sizes": ["S"]}})
    assert str(info.value) == "thing.sizes[0]: 'S' is not one of ['Small', 'Large']"


def test_golden_construction_checks(golden: dict[str, ModuleType]) -> None:
    m = golden["v2_0_1"]
    thing = m.ThingType(thing_id=1, sizes=["Small"])  # a list is kept as a tuple
    assert thing.sizes == (m.ThingEnumType.SMALL,)
    with pytest.raises(MessageValidationError) as info:
        m.ThingType(thing_id=1, sizes=("Small", "Huge"))
    assert info.value.path == "sizes[1]"
    with pytest.raises(MessageValidationError) as info:
        m.ThingType(thing_id=1, sizes=())
    assert info.value.code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    with pytest.raises(MessageValidationError) as info:
        m.ThingType(thing_id=1, label="")
    assert (info.value.path, info.value.problem) == ("label", "is shorter than 1 characters")


# --------------------------------------------------------------------------------------------
# the generator's failure modes


def _build(
    files: dict[str, Any], directions: dict[str, str], names: dict[str, str] | None = None
) -> Any:
    return gen.Builder("2.0.1", files, directions, names or {}).build()


def _obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        **extra,
    }


def test_generator_rejects_enum_member_collision() -> None:
    files = {
        "XRequest": _obj({"a": {"type": "string", "enum": ["L1-N", "L1_N"]}}),
        "XResponse": _obj({}),
    }
    with pytest.raises(gen.GenError, match="both become member L1_N"):
        _build(files, {"X": "both"}, {"XRequest.a": "AEnum"})


def test_generator_rejects_differing_definitions() -> None:
    def with_def(max_length: int) -> dict[str, Any]:
        return _obj(
            {"a": {"$ref": "#/definitions/AType"}},
            definitions={"AType": {"type": "string", "maxLength": max_length}},
        )

    files = {"XRequest": with_def(5), "XResponse": with_def(6)}
    with pytest.raises(gen.GenError, match="'AType' differs between"):
        _build(files, {"X": "both"})


def test_generator_rejects_one_name_for_two_shapes() -> None:
    files = {
        "XRequest": _obj({"a": {"type": "string", "enum": ["A"]}}),
        "XResponse": _obj({"b": {"type": "string", "enum": ["B"]}}),
    }
    names = {"XRequest.a": "Same", "XResponse.b": "Same"}
    with pytest.raises(gen.GenError, match="'Same' names two different types"):
        _build(files, {"X": "both"}, names)


def test_generator_checks_directions() -> None:
    files = {"XRequest": _obj({}), "XResponse": _obj({})}
    with pytest.raises(gen.GenError, match="no direction for action 'X'"):
        _build(files, {})
    with pytest.raises(gen.GenError, match=r"unknown actions: \['Y'\]"):
        _build(files, {"X": "both", "Y": "both"})


def test_generator_rejects_unknown_keywords() -> None:
    files = {"XRequest": _obj({"a": {"type": "string", "pattern": "x"}}), "XResponse": _obj({})}
    with pytest.raises(gen.GenError, match="unsupported keywords"):
        _build(files, {"X": "both"})


@pytest.mark.parametrize(
    ("wire", "py"),
    [
        ("connectorId", "connector_id"),
        ("iso15118CertificateHashData", "iso15118_certificate_hash_data"),
        ("prioritizedEMAIDs", "prioritized_emaids"),
        ("evMaxV2XEnergyRequest", "ev_max_v2x_energy_request"),
        ("evDurationLevel1DCInjection", "ev_duration_level1_dc_injection"),
        ("maxChargePower_L3", "max_charge_power_l3"),
        ("priceScheduleID", "price_schedule_id"),
        ("class", "class_"),
    ],
)
def test_snake_case(wire: str, py: str) -> None:
    assert gen.snake(wire) == py


# --------------------------------------------------------------------------------------------
# --check on a copy of the repository


def _copy_repo(tmp: Path) -> Path:
    for rel in ("schemas", "ocpp_trio/messages"):
        shutil.copytree(ROOT / rel, tmp / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_messages.py"), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_passes_then_fails_on_an_edited_module(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    result = _run_check(root)
    assert result.returncode == 0, result.stdout + result.stderr
    module = root / "ocpp_trio" / "messages" / "v2_0_1.py"
    module.write_text(module.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    result = _run_check(root)
    assert result.returncode == 1
    assert "ocpp_trio/messages/v2_0_1.py" in result.stdout
    assert "v1_6.py" not in result.stdout


# --------------------------------------------------------------------------------------------
# the real modules: registry, decode, encode, construction


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*(args or (2024, 1, 2, 3, 4, 5)), tzinfo=dt.UTC)


def test_registry_counts_and_directions() -> None:
    assert {v: len(actions(v)) for v in Version} == {
        Version.V16: 39,
        Version.V201: 64,
        Version.V21: 91,
    }
    assert actions("2.0.1") is actions(Version.V201)
    assert actions(Version.V16)["BootNotification"].direction is Direction.STATION_TO_CSMS
    assert actions(Version.V16)["Reset"].direction is Direction.CSMS_TO_STATION
    assert actions(Version.V201)["DataTransfer"].direction is Direction.BOTH
    spec = actions(Version.V21)["NotifyPeriodicEventStream"]
    assert spec.response is None
    assert spec.request is v2_1.NotifyPeriodicEventStream
    for version in Version:
        for action, spec in actions(version).items():
            assert spec.action == action
            assert spec.version is version
            assert action == spec.request.ACTION
            assert spec.request.VERSION is version
            if spec.response is not None:
                assert spec.request.RESPONSE is spec.response  # type: ignore[attr-defined]


def test_unknown_action_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        decode_request(Version.V201, "NoSuchAction", {})
    with pytest.raises(KeyError):
        decode_response(Version.V21, "NotifyPeriodicEventStream", {})


def test_error_message_format() -> None:
    payload = {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": "2024-01-02T03:04:05Z",
                "sampledValue": [{"value": 1}, {"value": 2.5}, {"value": "abc"}],
            }
        ],
    }
    with pytest.raises(MessageValidationError) as info:
        decode_request("2.0.1", "MeterValues", payload)
    e = info.value
    assert str(e) == "meterValue[0].sampledValue[2].value: 'abc' is not a number"
    assert (e.code, e.path, e.value, e.problem) == (
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "meterValue[0].sampledValue[2].value",
        "abc",
        "is not a number",
    )
    assert e.version is Version.V201
    assert e.wire_code == "TypeConstraintViolation"


@pytest.mark.parametrize(
    ("version", "payload", "code", "message"),
    [
        ("1.6", [], ErrorCode.FORMAT_VIOLATION, "payload: [] is not an object"),
        (
            "1.6",
            {"chargePointVendor": "v"},
            ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
            "chargePointModel: 'chargePointModel' is a required property",
        ),
        (
            "1.6",
            {"chargePointVendor": "v", "chargePointModel": "m", "x": 1},
            ErrorCode.FORMAT_VIOLATION,
            "x: 'x' is not an allowed property",
        ),
        (
            "1.6",
            {"chargePointVendor": "v" * 21, "chargePointModel": "m"},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            f"chargePointVendor: '{'v' * 21}' is longer than 20 characters",
        ),
        (
            "2.0.1",
            {"reason": "PowerUp", "chargingStation": "x"},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "chargingStation: 'x' is not an object",
        ),
        (
            "2.0.1",
            {"reason": "Nope", "chargingStation": {"model": "m", "vendorName": "v"}},
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "reason: 'Nope' is not one of ['ApplicationReset', 'FirmwareUpdate', 'LocalReset', "
            "'PowerUp', 'RemoteReset', 'ScheduledReset', 'Triggered', 'Unknown', 'Watchdog']",
        ),
        (
            "2.0.1",
            {"reason": True, "chargingStation": {"model": "m", "vendorName": "v"}},
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "reason: True is not a string",
        ),
    ],
)
def test_error_codes(version: str, payload: Any, code: ErrorCode, message: str) -> None:
    with pytest.raises(MessageValidationError) as info:
        decode_request(version, "BootNotification", payload)
    assert info.value.code is code
    assert str(info.value) == message


def test_too_many_items_is_an_occurrence_violation() -> None:
    payload = {"requestId": 1, "reportBase": "FullInventory"}
    decode_request("2.0.1", "GetBaseReport", payload)
    variables = [{"component": {"name": "c"}, "variable": {"name": "v"}}] * 2
    msg = decode_request("2.0.1", "GetVariables", {"getVariableData": variables})
    assert len(msg.get_variable_data) == 2  # type: ignore[attr-defined]
    with pytest.raises(MessageValidationError) as info:
        decode_request("2.0.1", "GetVariables", {"getVariableData": []})
    assert info.value.code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    assert str(info.value) == "getVariableData: [] has fewer than 1 items"


def _schedule_payload(limit: float) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


@pytest.mark.parametrize("limit", [21.4, 0.3, 16, 1e300, 32.1, 7.7])
def test_multiple_of_is_decimal_safe(limit: float) -> None:
    decode_request("1.6", "SetChargingProfile", _schedule_payload(limit))


@pytest.mark.parametrize("limit", [4.11, 0.05, 1e-300, 0.1 * 3])
def test_multiple_of_rejects(limit: float) -> None:
    with pytest.raises(MessageValidationError) as info:
        decode_request("1.6", "SetChargingProfile", _schedule_payload(limit))
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert info.value.path == "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit"
    assert info.value.problem == "is not a multiple of 0.1"


def test_multiple_of_at_construction() -> None:
    v1_6.ChargingSchedulePeriod(start_period=0, limit=21.4)
    with pytest.raises(MessageValidationError) as info:
        v1_6.ChargingSchedulePeriod(start_period=0, limit=4.11)
    assert (info.value.path, info.value.version) == ("limit", Version.V16)


def _boot_16(current_time: Any) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": current_time, "interval": 300}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", _utc()),
        ("2024-01-02t03:04:05z", _utc()),
        ("2024-01-02T03:04:05.1234567Z", _utc(2024, 1, 2, 3, 4, 5, 123456)),
        (
            "2024-01-02T03:04:05-05:30",
            dt.datetime(
                2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))
            ),
        ),
        ("2016-12-31T23:59:60Z", _utc(2016, 12, 31, 23, 59, 59, 999999)),
        ("2016-12-31T23:59:60.5+00:00", _utc(2016, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_date_time_decodes(text: str, expected: dt.datetime) -> None:
    msg = decode_response("1.6", "BootNotification", _boot_16(text))
    assert msg.current_time == expected  # type: ignore[attr-defined]
    assert msg.current_time.utcoffset() == expected.utcoffset()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02",
        "2024-01-02T03:04:05",
        "2024-01-02 03:04:05Z",
        "2024-02-30T03:04:05Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T03:04:05+0100",
        "2024-01-02T03:04:05Z\n",
        "0000-01-02T03:04:05Z",
        "\uff12\uff10\uff12\uff14-01-02T03:04:05Z",  # fullwidth digits
    ],
)
def test_bad_date_time_is_rejected(text: str) -> None:
    with pytest.raises(MessageValidationError) as info:
        decode_response("1.6", "BootNotification", _boot_16(text))
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert info.value.problem == "is not an RFC 3339 date-time"


def test_date_time_not_a_string() -> None:
    with pytest.raises(MessageValidationError) as info:
        decode_response("1.6", "BootNotification", _boot_16(1700000000))
    assert info.value.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (_utc(), "2024-01-02T03:04:05Z"),
        (_utc(2024, 1, 2, 3, 4, 5, 120000), "2024-01-02T03:04:05.120Z"),
        (_utc(2024, 1, 2, 3, 4, 5, 123456), "2024-01-02T03:04:05.123456Z"),
        (_utc(2024, 1, 2, 3, 4, 5, 1000), "2024-01-02T03:04:05.001Z"),
        (
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-01-02T03:04:05+02:00",
        ),
    ],
)
def test_date_time_encodes(value: dt.datetime, text: str) -> None:
    msg = v1_6.BootNotificationResponse(
        status=v1_6.RegistrationStatus.ACCEPTED, current_time=value, interval=300
    )
    assert encode(msg)["currentTime"] == text


def test_naive_date_time_rejected_at_construction() -> None:
    with pytest.raises(MessageValidationError) as info:
        v1_6.BootNotificationResponse(
            status=v1_6.RegistrationStatus.ACCEPTED,
            current_time=dt.datetime(2024, 1, 2),
            interval=300,
        )
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert info.value.path == "current_time"
    assert info.value.version is Version.V16


def test_integer_draft_04_vs_draft_06() -> None:
    # official 1.6 files are draft-04: 5.0 is not an integer
    with pytest.raises(MessageValidationError) as info:
        decode_request("1.6", "UnlockConnector", {"connectorId": 5.0})
    assert str(info.value) == "connectorId: 5.0 is not an integer"
    assert info.value.wire_code == "TypeConstraintViolation"
    # the 1.6 security extension and 2.x are draft-06: 5.0 is the integer 5
    msg = decode_request(
        "1.6",
        "GetLog",
        {"logType": "SecurityLog", "requestId": 5.0, "log": {"remoteLocation": "x"}},
    )
    assert msg.request_id == 5  # type: ignore[attr-defined]
    assert type(msg.request_id) is int  # type: ignore[attr-defined]
    msg = decode_request("2.0.1", "UnlockConnector", {"evseId": 1.0, "connectorId": 2})
    assert msg.evse_id == 1  # type: ignore[attr-defined]
    assert type(msg.evse_id) is int  # type: ignore[attr-defined]
    with pytest.raises(MessageValidationError):
        decode_request("2.0.1", "UnlockConnector", {"evseId": 1.5, "connectorId": 2})
    # a boolean is never a number
    with pytest.raises(MessageValidationError):
        decode_request("2.0.1", "UnlockConnector", {"evseId": True, "connectorId": 2})


def test_number_keeps_ints_and_rejects_non_finite() -> None:
    sv = {"timestamp": "2024-01-02T03:04:05Z", "sampledValue": [{"value": 7}]}
    msg = decode_request("2.0.1", "MeterValues", {"evseId": 1, "meterValue": [sv]})
    assert type(msg.meter_value[0].sampled_value[0].value) is int  # type: ignore[attr-defined]
    sv["sampledValue"] = [{"value": float("nan")}]
    with pytest.raises(MessageValidationError):
        decode_request("2.0.1", "MeterValues", {"evseId": 1, "meterValue": [sv]})


def test_uri_format_1_6() -> None:
    decode_request("1.6", "GetDiagnostics", {"location": "ftp://user@host/dir/"})
    with pytest.raises(MessageValidationError) as info:
        decode_request("1.6", "GetDiagnostics", {"location": "no scheme"})
    assert str(info.value) == "location: 'no scheme' is not a URI"


def test_custom_data_round_trip() -> None:
    payload = {
        "vendorId": "com.example",
        "messageId": "m",
        "data": {"nested": [1, 2.5, None, True, "x"]},
        "customData": {"vendorId": "com.example", "k": {"x": [1]}, "flag": False},
    }
    msg = decode_request("2.0.1", "DataTransfer", payload)
    assert isinstance(msg, v2_0_1.DataTransferRequest)
    assert msg.data is payload["data"]  # untouched
    assert msg.custom_data == v2_0_1.CustomDataType(
        vendor_id="com.example", extra={"k": {"x": [1]}, "flag": False}
    )
    assert encode(msg) == payload
    assert hash(msg) == hash(decode_request("2.0.1", "DataTransfer", payload))
    with pytest.raises(MessageValidationError):
        v2_0_1.CustomDataType(vendor_id="v", extra={"vendorId": "w"})


def test_construction_checks() -> None:
    with pytest.raises(MessageValidationError) as info:
        v1_6.BootNotificationRequest(charge_point_vendor="v" * 21, charge_point_model="m")
    e = info.value
    assert (e.code, e.path, e.version) == (
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "charge_point_vendor",
        Version.V16,
    )
    with pytest.raises(MessageValidationError) as info:
        v2_0_1.ResetRequest(type="Sometime")  # type: ignore[arg-type]
    assert info.value.problem == "is not one of ['Immediate', 'OnIdle']"
    # a str equal to a member's value becomes the member
    reset = v2_0_1.ResetRequest(type="Immediate")  # type: ignore[arg-type]
    assert reset.type is v2_0_1.ResetEnumType.IMMEDIATE


def test_encode_omits_none_and_rechecks() -> None:
    msg = v2_0_1.BootNotificationRequest(
        reason=v2_0_1.BootReasonEnumType.POWER_UP,
        charging_station=v2_0_1.ChargingStationType(model="m", vendor_name="v"),
    )
    assert encode(msg) == {
        "reason": "PowerUp",
        "chargingStation": {"model": "m", "vendorName": "v"},
    }
    assert type(encode(msg)["reason"]) is str
    # construction checks values, and types where it checks values
    with pytest.raises(MessageValidationError) as info:
        v2_0_1.ChargingStationType(model=5, vendor_name="v")  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    # a field without value constraints is not checked at run time; encode catches it
    bad = v2_0_1.BootNotificationResponse(
        current_time=_utc(),
        interval="300",  # type: ignore[arg-type]
        status=v2_0_1.RegistrationStatusEnumType.ACCEPTED,
    )
    with pytest.raises(LocalProtocolError) as info2:
        encode(bad)
    assert isinstance(info2.value.__cause__, MessageValidationError)
    assert "interval: '300' is not an integer" in str(info2.value)
    assert encode(bad, validate=False)["interval"] == "300"


def test_send_message_decodes() -> None:
    payload = {
        "id": 1,
        "pending": 0,
        "basetime": "2024-01-02T03:04:05Z",
        "data": [{"t": 0.5, "v": "230.1"}],
    }
    msg = decode_request(Version.V21, "NotifyPeriodicEventStream", payload)
    assert isinstance(msg, v2_1.NotifyPeriodicEventStream)
    assert isinstance(msg, Send)
    assert encode(msg) == payload
