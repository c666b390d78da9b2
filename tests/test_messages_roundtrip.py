"""Every (version, action, direction) round-trips schema-valid payloads.

Payloads come from hypothesis-jsonschema working on the **official** schemas (the files shipped
in the ``ocpp`` distribution), narrowed by our overrides (see ``_oracle.generation_schema``).
For each: decode, encode, and check that

* the output equals the input, with date-times compared as instants and numbers by value;
* the official schema and ours both accept the output (decimal-aware ``multipleOf``, every
  installed format checker for the official one);
* decoding the output gives the same object, and ``to_json``/``from_json`` agree with
  ``encode``/``decode``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from _oracle import (
    SchemaId,
    all_schema_ids,
    decimal_multiples,
    decode,
    encode,
    generation_schema,
    normalise,
    official_validator,
    oracle_errors,
    our_schema,
    our_validator,
    weight,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from ocpp_trio import Version
from ocpp_trio.messages import Request, Response, Send, actions

SCHEMAS = all_schema_ids()

#: big nested schemas (charging profiles, tariffs) take ~0.5 s per example to generate; they
#: get fewer examples so the file stays within CI budget on 2 cores
LIGHT = [s for s in SCHEMAS if weight(s) < 60]
MEDIUM = [s for s in SCHEMAS if 60 <= weight(s) < 150]
HEAVY = [s for s in SCHEMAS if weight(s) >= 150]

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@functools.cache
def _strategy(sid: SchemaId) -> st.SearchStrategy[Any]:
    schema = generation_schema(sid)
    return from_schema(schema).map(functools.partial(decimal_multiples, schema))


def _is_plain_json(value: Any) -> bool:
    """Only the types ``json.loads`` produces (str subclasses such as StrEnum members allowed)."""
    if isinstance(value, dict):
        return all(type(k) is str and _is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(v) for v in value)
    return value is None or isinstance(value, str | bool | int | float)


def check_round_trip(sid: SchemaId, payload: Any) -> None:
    # "data": null in 2.x DataTransfer is lost on decode; test_data_transfer_null_data pins that
    # bug on its own, so the property test goes on looking for others
    assume(not (sid.action == "DataTransfer" and "data" in payload and payload["data"] is None))
    # precondition: generated from official-narrowed-by-ours, so valid against ours (and the
    # official schema, which is checked on the equal output below)
    assert not oracle_errors(our_validator(sid), payload), "generator bug"

    message = decode(sid, payload)
    cls = type(message)
    assert cls.VERSION is sid.version
    assert sid.action == cls.ACTION
    assert isinstance(message, {"request": Request, "response": Response, "send": Send}[sid.kind])

    out = encode(message)
    schema = our_schema(sid)
    assert normalise(schema, schema, out) == normalise(schema, schema, payload)
    assert _is_plain_json(out), out
    assert json.loads(json.dumps(out)) == out
    errors = oracle_errors(official_validator(sid), out)
    assert not errors, errors[0]
    errors = oracle_errors(our_validator(sid), out)
    assert not errors, errors[0]

    assert decode(sid, out) == message
    assert message.to_json() == out
    assert cls.from_json(payload) == message


@pytest.mark.parametrize("sid", LIGHT, ids=str)
@settings(max_examples=12, deadline=None, suppress_health_check=_SLOW)
@given(data=st.data())
def test_round_trip_light(sid: SchemaId, data: st.DataObject) -> None:
    check_round_trip(sid, data.draw(_strategy(sid), label="payload"))


@pytest.mark.parametrize("sid", MEDIUM, ids=str)
@settings(max_examples=6, deadline=None, suppress_health_check=_SLOW)
@given(data=st.data())
def test_round_trip_medium(sid: SchemaId, data: st.DataObject) -> None:
    check_round_trip(sid, data.draw(_strategy(sid), label="payload"))


@pytest.mark.parametrize("sid", HEAVY, ids=str)
@settings(max_examples=3, deadline=None, suppress_health_check=_SLOW)
@given(data=st.data())
def test_round_trip_heavy(sid: SchemaId, data: st.DataObject) -> None:
    check_round_trip(sid, data.draw(_strategy(sid), label="payload"))


def test_every_schema_has_a_registry_entry_and_back() -> None:
    """The parametrization above covers exactly the registry: no action without a test."""
    from_registry = set()
    for version in Version:
        for name, spec in actions(version).items():
            assert spec.action == name
            assert spec.version is version
            if spec.response is None:
                from_registry.add(SchemaId(version, name, "send"))
                assert issubclass(spec.request, Send)
            else:
                from_registry.add(SchemaId(version, name, "request"))
                from_registry.add(SchemaId(version, name, "response"))
                assert issubclass(spec.request, Request)
                assert spec.request.RESPONSE is spec.response  # type: ignore[attr-defined]
    assert from_registry == set(SCHEMAS)
    assert sorted(LIGHT + MEDIUM + HEAVY) == sorted(SCHEMAS)
    assert {v: sum(s.version is v for s in SCHEMAS) for v in Version} == {
        Version.V16: 78,
        Version.V201: 128,
        Version.V21: 181,
    }


@pytest.mark.parametrize("version", [Version.V201, Version.V21])
@pytest.mark.parametrize("kind", ["request", "response"])
def test_data_transfer_null_data(version: Version, kind: str) -> None:
    """2.x ``DataTransfer.data`` has no type, so ``null`` is schema-valid; we read it as absent.

    OCPP-J 2.x forbids ``null`` placeholders for absent optional fields, and ``None`` is our
    "absent" (never sent).  So ``"data": null`` is accepted, decodes to ``data=None`` and is left
    out when encoded again -- a documented deviation from a byte-exact round trip (see
    docs/messages.md), pinned here so a change to it is deliberate.
    """
    sid = SchemaId(version, "DataTransfer", kind)
    payload = {"vendorId": "v", "data": None}
    if kind == "response":
        payload = {"status": "Accepted", "data": None}
    assert not oracle_errors(our_validator(sid), payload)
    message = decode(sid, payload)
    assert message.data is None  # type: ignore[attr-defined]
    expected = {k: v for k, v in payload.items() if k != "data"}
    assert encode(message) == expected
    assert not oracle_errors(our_validator(sid), expected)
