"""Decoding an empty payload, and the per-version class lookup of decode_request/_response."""

from __future__ import annotations

import attrs
import pytest

from ocpp_trio import ErrorCode, MessageValidationError, Version
from ocpp_trio.messages import actions, decode_request, decode_response, v1_6, v2_0_1, v2_1


def _all_optional_closed(cls: type) -> bool:
    fields = attrs.fields(cls)
    names = {f.name for f in fields}
    return "extra" not in names and all(f.default is None for f in fields)


def _payload_classes() -> list[type]:
    out: list[type] = []
    for version in Version:
        for spec in actions(version).values():
            out += [spec.request] + ([spec.response] if spec.response is not None else [])
    return out


@pytest.mark.parametrize("cls", _payload_classes(), ids=lambda c: f"{c.VERSION}:{c.__name__}")
def test_empty_payload(cls: type) -> None:
    if not _all_optional_closed(cls):
        with pytest.raises(MessageValidationError):
            cls.from_json({})  # type: ignore[attr-defined]
        return
    first = cls.from_json({})  # type: ignore[attr-defined]
    assert type(first) is cls
    assert first == cls()
    assert first.to_json() == {}
    # frozen, so one instance serves every empty payload
    assert cls.from_json({}) is first  # type: ignore[attr-defined]


def test_empty_payload_of_a_subclass_is_its_own_instance() -> None:
    @attrs.frozen(kw_only=True)
    class Beat(v2_0_1.HeartbeatRequest):
        pass

    beat = Beat.from_json({})
    assert type(beat) is Beat
    assert beat is not Beat.from_json({})
    assert type(v2_0_1.HeartbeatRequest.from_json({})) is v2_0_1.HeartbeatRequest


def test_non_empty_payloads_are_still_checked() -> None:
    with pytest.raises(MessageValidationError) as info:
        v2_0_1.HeartbeatRequest.from_json({"x": 1})
    assert info.value.code is ErrorCode.FORMAT_VIOLATION  # an unknown key
    with pytest.raises(MessageValidationError):
        v1_6.HeartbeatRequest.from_json({"x": 1})
    with pytest.raises(MessageValidationError):
        v2_0_1.HeartbeatRequest.from_json([])
    custom = v2_0_1.HeartbeatRequest.from_json({"customData": {"vendorId": "acme", "k": 1}})
    assert custom.custom_data is not None
    assert custom.custom_data.extra == {"k": 1}


def test_open_classes_are_never_shared() -> None:
    # CustomDataType keeps vendor keys in a mutable dict: each decode builds its own object
    a = v2_1.CustomDataType.from_json({"vendorId": "acme"})
    b = v2_1.CustomDataType.from_json({"vendorId": "acme"})
    assert a == b
    assert a is not b
    assert a.extra is not b.extra


@pytest.mark.parametrize("version", ["1.6", Version.V16, "2.0.1", Version.V21])
def test_decode_by_version_string_or_member(version: Version | str) -> None:
    request = decode_request(version, "Heartbeat", {})
    assert version == request.VERSION
    assert type(request) is actions(version)["Heartbeat"].request
    response = decode_response(version, "Heartbeat", {"currentTime": "2024-01-01T00:00:00Z"})
    assert type(response) is actions(version)["Heartbeat"].response


def test_decode_errors() -> None:
    with pytest.raises(KeyError, match="NoSuchAction"):
        decode_request("2.0.1", "NoSuchAction", {})
    with pytest.raises(KeyError, match="NoSuchAction"):
        decode_response("2.0.1", "NoSuchAction", {})
    with pytest.raises(KeyError, match="SEND-only"):
        decode_response("2.1", "NotifyPeriodicEventStream", {})
    with pytest.raises(ValueError, match="not a valid Version"):
        decode_request("9.9", "Heartbeat", {})
    with pytest.raises(ValueError, match="not a valid Version"):
        decode_response("9.9", "Heartbeat", {})
    with pytest.raises(MessageValidationError) as info:
        decode_request("2.0.1", "Heartbeat", {"nope": 1})
    assert info.value.version is Version.V201
