"""ocpp_trio.protocol.jsonio: orjson where it agrees with the json module, json elsewhere."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpp_trio.messages import decode_request
from ocpp_trio.messages.v2_0_1 import TransactionEventRequest
from ocpp_trio.protocol import jsonio as _json
from ocpp_trio.protocol.frames import Call, parse_frame
from ocpp_trio.protocol.version import Version


def reference_loads(text: str) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


def reference_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 and 1.0 differ, 0.0 and -0.0 too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


# --- loads ------------------------------------------------------------------------------------


@given(values, st.booleans())
def test_loads_reads_what_the_json_module_reads(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert same(_json.loads(text), reference_loads(text))
    assert same(_json.loads(text.encode("utf-8")), reference_loads(text))


@pytest.mark.parametrize(
    "number", [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 1, -(2**63), -(2**63) - 1, 10**40]
)
def test_integers_of_any_size_are_exact(number: int) -> None:
    # orjson alone reads an integer outside 64 bits as a rounded float
    value = _json.loads(f'[2,"m1","A",{{"n":{number}}}]')
    assert value[3]["n"] == number
    assert type(value[3]["n"]) is int


def test_a_big_integer_reaches_the_schema_with_its_value() -> None:
    # 2**64 + 1 read as a float becomes 2**64, which a draft-06 integer field would accept
    text = (
        '[2,"m1","TransactionEvent",{"eventType":"Updated",'
        '"timestamp":"2024-05-06T07:08:09Z","triggerReason":"MeterValuePeriodic",'
        '"seqNo":18446744073709551617,"transactionInfo":{"transactionId":"tx"}}]'
    )
    frame = parse_frame(Version.V201, text)
    assert isinstance(frame, Call)
    message = decode_request(Version.V201, frame.action, frame.payload)
    assert isinstance(message, TransactionEventRequest)
    assert message.seq_no == 2**64 + 1


def test_long_digit_runs_in_strings_change_nothing() -> None:
    text = '{"iccid":"89310410106543789301","n":5}'
    assert _json.loads(text) == {"iccid": "89310410106543789301", "n": 5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # accepted by the json module, refused by orjson: the json module decides
        ('["\\ud800"]', ["\ud800"]),
        ('{"x":"a\\udc00b"}', {"x": "a\udc00b"}),
        ("[1e400]", [math.inf]),
        ("{}", {}),
        (" [1, 2.5] ", [1, 2.5]),
    ],
)
def test_loads_accepts(text: str, expected: Any) -> None:
    assert _json.loads(text) == expected
    assert _json.loads(text.encode("utf-8", "surrogatepass")) == expected


@pytest.mark.parametrize(
    "text",
    [
        "[NaN]",
        "[Infinity]",
        "[-Infinity]",
        "",
        "[1,]",
        "{'a':1}",
        "\ufeff[]",
        "[" * 100_000,
        "[" * 5_000 + "]" * 5_000,
        "[" + "1" * 5_000 + "]",
        '["\x01"]',
    ],
)
def test_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the message is the json module's
        _json.loads(text)


def test_loads_refuses_invalid_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        _json.loads(b'["\xff"]')
    with pytest.raises(UnicodeDecodeError):
        _json.loads(b'["\xff", 12345678901234567890123]')  # the json module's path too


# --- dumps ------------------------------------------------------------------------------------


@given(values)
def test_dumps_writes_what_the_json_module_writes(value: Any) -> None:
    text = _json.dumps(value)
    assert same(reference_loads(text), reference_loads(reference_dumps(value)))
    if "." not in text and "e" not in text.lower():
        # no float (nor any string with those characters) to spell differently
        assert text == reference_dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_dumps_floats_read_back_exactly(number: float) -> None:
    assert same(json.loads(_json.dumps(number)), number)


def test_dumps_is_compact_and_keeps_unicode() -> None:
    value = [2, "m1", "A", {"x": "é\u2028\U0001f600", "y": [1, 2.5, True, None], "z": "\n\x01"}]
    assert _json.dumps(value) == reference_dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        [2**64],
        [-(2**63) - 1],
        {1: "int key", None: "null key", 2.5: "float key"},
    ],
)
def test_dumps_falls_back_to_the_json_module(value: Any) -> None:
    assert _json.dumps(value) == reference_dumps(value)


def test_dumps_deep_nesting_like_the_json_module() -> None:
    value: list[Any] = []
    inner = value
    for _ in range(400):  # orjson stops at 254 levels
        inner.append([])
        inner = inner[0]
    assert _json.dumps(value) == reference_dumps(value)


def test_dumps_escapes_lone_surrogates() -> None:
    text = _json.dumps(["bad \ud800 char", "é"])
    text.encode("utf-8")
    assert text == '["bad \\ud800 char","\\u00e9"]'


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([math.nan], ValueError),
        ({"x": [None, math.inf]}, ValueError),
        ([-math.inf], ValueError),
        ([object()], TypeError),
        ([{1, 2}], TypeError),
        ([datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)], TypeError),
        ([datetime.date(2024, 1, 1)], TypeError),
        ([Point(1)], TypeError),
        ([b"bytes"], TypeError),
    ],
)
def test_dumps_refuses_what_the_json_module_refuses(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        _json.dumps(value)
    with pytest.raises(error):
        reference_dumps(value)


def test_dumps_refuses_cycles() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        _json.dumps(cycle)
