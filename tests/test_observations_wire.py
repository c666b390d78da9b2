"""The machines read a station's CALL from its JSON as it came, not encoded again.

Decoding changes two kinds of values (date-times are parsed, draft-06 integers written ``1.0``
become ``1``), so the payload as it came and the decoded request encoded again differ in
spelling; :func:`interpret` must read both the same.  Payloads come from hypothesis-jsonschema
on the official schemas (as in test_messages_roundtrip), then get the spellings the codec
normalises: integral floats for integers, lowercase ``t``/``z``, ``-00:00``, a leap second,
more than six fraction digits.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any

import attrs
import pytest
from _oracle import SchemaId, decimal_multiples, generation_schema, oracle_errors, our_validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from ocpp_trio import Version
from ocpp_trio.domain.observations import Effect, Observation, Publish, interpret
from ocpp_trio.domain.reports import PART_ACTIONS
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import RemoteStart
from ocpp_trio.domain.wire import as_int, as_time
from ocpp_trio.messages import actions, decode_request
from ocpp_trio.runtime.machines import StationMachines

#: the station CALLs whose exchanges the machines read
READ = {
    "StatusNotification",
    "TransactionEvent",
    "StartTransaction",
    "StopTransaction",
    "MeterValues",
    "ReservationStatusUpdate",
    "NotifyEvent",
    "SecurityEventNotification",
    "FirmwareStatusNotification",
    "LogStatusNotification",
    "DiagnosticsStatusNotification",
    *PART_ACTIONS,
}
SIDS = [
    SchemaId(version, action, "request")
    for version in Version
    for action in sorted(READ)
    if action in actions(version)
]
AT = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@functools.cache
def _strategy(sid: SchemaId) -> st.SearchStrategy[Any]:
    schema = generation_schema(sid)
    return from_schema(schema).map(functools.partial(decimal_multiples, schema))


def respell(value: Any, draw: Any, integers: bool) -> Any:
    """``value`` with some integers as integral floats (``integers``: not on 1.6, whose
    draft-04 schemas refuse them) and some date-times in the other RFC 3339 spellings the
    codec accepts."""
    if isinstance(value, dict):
        return {k: respell(v, draw, integers) for k, v in value.items()}
    if isinstance(value, list):
        return [respell(v, draw, integers) for v in value]
    if integers and type(value) is int and abs(value) < 2**53 and draw(st.booleans()):
        return float(value)
    if isinstance(value, str) and _TIME.fullmatch(value) and draw(st.booleans()):
        return respell_time(value, draw)
    return value


def respell_time(text: str, draw: Any) -> str:
    way = draw(st.sampled_from(["lower", "fraction", "minus-zero", "leap"]))
    if way == "lower":
        return text.replace("T", "t").replace("Z", "z")
    if way == "fraction":
        body, sep, zone = re.split(r"(Z|[+-]\d\d:\d\d)$", text)[:3]
        return body.split(".")[0] + ".123456789" + sep + zone
    if way == "minus-zero" and text.endswith("Z"):
        return text[:-1] + "-00:00"
    if way == "leap" and text[11:19] == "23:59:59" and text.endswith("Z"):
        return text[:17] + "60" + text[19:]  # a leap second is the last second of a UTC day
    return text


def check_same_reading(sid: SchemaId, payload: dict[str, Any]) -> None:
    request = decode_request(sid.version, sid.action, payload)
    response = actions(sid.version)[sid.action].response
    assert response is not None
    # a remote start to match, so that this reading is exercised too
    remote = RemoteStart(remote_start_id=7, id_token="tok", requested_at=AT)
    view = StationMachines("CS1", initial=StationSnapshot(identity="CS1", remote_starts=(remote,)))
    observation = Observation(
        action=sid.action, by_station=True, request=request, response=None, at=AT
    )
    wire = published_at(AT, interpret(view, observation, sid.version, payload))
    again = published_at(AT, interpret(view, observation, sid.version))
    assert wire == again
    assert [repr(e) for e in wire] == [repr(e) for e in again]


def published_at(at: datetime.datetime, effects: list[Effect]) -> list[Effect]:
    """``effects`` with the events' publication time (the clock's, not the message's) set to
    ``at``."""
    return [
        attrs.evolve(e, event=attrs.evolve(e.event, at=at)) if isinstance(e, Publish) else e
        for e in effects
    ]


@pytest.mark.parametrize("sid", SIDS, ids=str)
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_wire_reads_like_the_request_encoded_again(sid: SchemaId, data: st.DataObject) -> None:
    payload = data.draw(_strategy(sid), label="payload")
    respelled = respell(payload, data.draw, integers=sid.version is not Version.V16)
    assert not oracle_errors(our_validator(sid), respelled), "respelled wrongly"
    check_same_reading(sid, respelled)


@pytest.mark.parametrize("version", [Version.V201, Version.V21])
def test_normalised_spellings_of_a_transaction_event(version: Version) -> None:
    payload = {
        "eventType": "Updated",
        "timestamp": "2025-03-01t11:59:60.1234567z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3.0,
        "transactionInfo": {"transactionId": "TX1", "remoteStartId": 7.0},
        "evse": {"id": 1.0, "connectorId": 2.0},
        "meterValue": [
            {
                "timestamp": "2025-03-01T12:00:00-00:00",
                "sampledValue": [
                    {"value": 10.0, "unitOfMeasure": {"unit": "kWh", "multiplier": 1.0}}
                ],
            }
        ],
    }
    check_same_reading(SchemaId(version, "TransactionEvent", "request"), payload)
    status = {
        "timestamp": "2025-03-01T12:00:00.5+00:00",
        "connectorStatus": "Occupied",
        "evseId": 2.0,
        "connectorId": 1.0,
    }
    check_same_reading(SchemaId(version, "StatusNotification", "request"), status)


def test_readers_read_the_codec_spellings() -> None:
    assert as_int(3.0) == 3
    assert type(as_int(3.0)) is int
    assert as_int(3.5) is None
    assert as_int(True) is None
    assert as_time("2025-03-01t11:59:60z") == datetime.datetime(
        2025, 3, 1, 11, 59, 59, 999999, tzinfo=datetime.UTC
    )
    assert as_time("2025-03-01T12:00:00") == AT  # naive ISO 8601: UTC, as before
    assert as_time("not a time") is None
