"""The OCPP-J frame codec: parsing, writing, and what each broken frame deserves per version."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_trio.errors import ErrorCode, LocalProtocolError
from ocpp_trio.protocol.frames import (
    UNREADABLE_ID,
    Call,
    CallErrorFrame,
    CallResult,
    CallResultErrorFrame,
    Frame,
    FrameError,
    MessageType,
    Reply,
    SendFrame,
    dump_frame,
    is_valid_message_id,
    limit_description,
    parse_frame,
)
from ocpp_trio.protocol.version import Version

V16, V201, V21 = Version.V16, Version.V201, Version.V21
ALL = [V16, V201, V21]
ID36 = "x" * 36
ID37 = "x" * 37


# --- valid frames --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('[2,"m1","Heartbeat",{}]', Call("m1", "Heartbeat", {})),
        ('[2, "m1", "Heartbeat", null]', Call("m1", "Heartbeat", {})),
        (f'[2,"{ID36}","A",{{"a":[1,2]}}]', Call(ID36, "A", {"a": [1, 2]})),
        ('[3,"m1",{"currentTime":"x"}]', CallResult("m1", {"currentTime": "x"})),
        ('[3,"m1",null]', CallResult("m1", {})),
        ('[4,"m1","NotImplemented","",{}]', CallErrorFrame("m1", "NotImplemented", "", {})),
        ('[4,"m1","Foo","why",{"a":1}]', CallErrorFrame("m1", "Foo", "why", {"a": 1})),
        ('\n [2 ,"-1", "", {} ]\t', Call("-1", "", {})),
    ],
)
def test_parse_valid(version: Version, text: str, frame: Frame) -> None:
    assert parse_frame(version, text) == frame


def test_parse_21_only_types() -> None:
    assert parse_frame(V21, '[5,"m1","FormatViolation","bad",{}]') == CallResultErrorFrame(
        "m1", "FormatViolation", "bad", {}
    )
    assert parse_frame(V21, '[6,"m1","NotifyPeriodicEventStream",{"id":1}]') == SendFrame(
        "m1", "NotifyPeriodicEventStream", {"id": 1}
    )


def test_binary_accepted_only_when_asked() -> None:
    data = b'[2,"m1","Heartbeat",{"s":"\xc3\xa9"}]'
    assert parse_frame(V201, data, accept_binary=True) == Call("m1", "Heartbeat", {"s": "é"})
    with pytest.raises(FrameError) as info:
        parse_frame(V201, data)
    assert info.value.reply is Reply.CALLERROR
    assert info.value.message_id == "m1"
    assert "text frames" in info.value.description


def test_message_id_validity() -> None:
    assert is_valid_message_id("a")
    assert is_valid_message_id(ID36)
    assert not is_valid_message_id(ID37)
    assert not is_valid_message_id("")
    assert not is_valid_message_id(5)
    assert not is_valid_message_id(None)
    assert not is_valid_message_id("\ud800")
    assert is_valid_message_id("é" * 36)


# --- writing ---------------------------------------------------------------------------------


def test_dump_is_compact_and_keeps_unicode() -> None:
    assert dump_frame(Call("m1", "A", {"x": "é", "y": [1]})) == '[2,"m1","A",{"x":"é","y":[1]}]'
    assert dump_frame(CallResult("m1", {})) == '[3,"m1",{}]'
    assert dump_frame(CallErrorFrame("m1", "GenericError")) == '[4,"m1","GenericError","",{}]'
    assert dump_frame(CallResultErrorFrame("m1", "X", "d", {"a": 1})) == '[5,"m1","X","d",{"a":1}]'
    assert dump_frame(SendFrame("m1", "N", {})) == '[6,"m1","N",{}]'


def test_dump_refuses_what_json_cannot_say() -> None:
    with pytest.raises(LocalProtocolError):
        dump_frame(Call("m1", "A", {"x": float("nan")}))
    with pytest.raises(LocalProtocolError):
        dump_frame(Call("m1", "A", {"x": object()}))


def test_dump_escapes_lone_surrogates() -> None:
    text = dump_frame(CallErrorFrame("m1", "X", "bad \ud800 char"))
    text.encode("utf-8")  # does not raise
    assert json.loads(text)[3] == "bad \ud800 char"


# --- broken frames: the decision table, per version -------------------------------------------

RFE, GE, MTNS = "RpcFrameworkError", "GenericError", "MessageTypeNotSupported"
CE, CRE, DROP = Reply.CALLERROR, Reply.CALLRESULTERROR, Reply.DROP

# (input, {version: (reply, answer id, wire code)}, message type, frame id)
TABLE: list[tuple[str, str | bytes, dict[Version, tuple[Reply, str, str]]]] = [
    (
        "invalid JSON",
        "[2, 'abc'",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "truncated CALL with readable id",
        '[2,"abc","Heartbeat",{',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "truncated CALLRESULT with readable id",
        '[3,"abc",{"a":',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (CRE, "abc", RFE)},
    ),
    (
        "truncated frame of an unknown type",
        '[9,"abc",{"a":',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "NaN is not JSON",
        '[2,"abc","A",{"x":NaN}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "integer beyond the digit limit",
        '[2,"abc","A",{"x":' + "1" * 5000 + "}]",
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "nesting too deep",
        "[" * 200_000,
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "byte order mark",
        '\ufeff[2,"abc","A",{}]',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "not an array",
        '{"a":1}',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "a JSON string",
        '"[2,\\"abc\\",\\"A\\",{}]"',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "empty array",
        "[]",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "type is a string",
        '["2","abc","Heartbeat",{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "type is a float",
        '[2.0,"abc","Heartbeat",{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "type is a boolean",
        '[true,"abc","Heartbeat",{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "type unknown, id unreadable",
        "[null]",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "unknown message type",
        '[7,"abc","Heartbeat",{}]',
        {V16: (DROP, "abc", GE), V201: (CE, "abc", MTNS), V21: (DROP, "abc", MTNS)},
    ),
    (
        "unknown message type, unreadable id",
        "[1,5]",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", MTNS), V21: (DROP, "-1", MTNS)},
    ),
    (
        "negative message type",
        '[-2,"abc","A",{}]',
        {V16: (DROP, "abc", GE), V201: (CE, "abc", MTNS), V21: (DROP, "abc", MTNS)},
    ),
    (
        "CALL: id is a number",
        '[2,123,"Heartbeat",{}]',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "CALL: id too long",
        f'[2,"{ID37}","Heartbeat",{{}}]',
        {V16: (CE, ID37, GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "CALL: id empty",
        '[2,"","Heartbeat",{}]',
        {V16: (CE, "", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "CALL: id a lone surrogate",
        '[2,"\\ud800","Heartbeat",{}]',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "CALL: id missing",
        "[2]",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "CALL: too short",
        '[2,"abc","Heartbeat"]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "CALL: too long",
        '[2,"abc","Heartbeat",{},{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "CALL: action not a string",
        '[2,"abc",5,{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "CALL: payload an array",
        '[2,"abc","Heartbeat",[]]',
        {
            V16: (CE, "abc", "FormationViolation"),
            V201: (CE, "abc", "FormatViolation"),
            V21: (CE, "abc", "FormatViolation"),
        },
    ),
    (
        "CALL: payload a string",
        '[2,"abc","Heartbeat","{}"]',
        {
            V16: (CE, "abc", "FormationViolation"),
            V201: (CE, "abc", "FormatViolation"),
            V21: (CE, "abc", "FormatViolation"),
        },
    ),
    (
        "CALLRESULT: too short",
        '[3,"abc"]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (CRE, "abc", RFE)},
    ),
    (
        "CALLRESULT: payload not an object",
        '[3,"abc",[]]',
        {
            V16: (DROP, "abc", "FormationViolation"),
            V201: (DROP, "abc", "FormatViolation"),
            V21: (CRE, "abc", "FormatViolation"),
        },
    ),
    (
        "CALLRESULT: bad id",
        f'[3,"{ID37}",{{}}]',
        {V16: (DROP, "-1", GE), V201: (DROP, "-1", RFE), V21: (DROP, "-1", RFE)},
    ),
    (
        "CALLERROR: too short",
        '[4,"abc","GenericError","x"]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (DROP, "abc", RFE)},
    ),
    (
        "CALLERROR: code not a string",
        '[4,"abc",5,"x",{}]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (DROP, "abc", RFE)},
    ),
    (
        "CALLERROR: description not a string",
        '[4,"abc","GenericError",null,{}]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (DROP, "abc", RFE)},
    ),
    (
        "CALLERROR: details not an object",
        '[4,"abc","GenericError","x",[]]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (DROP, "abc", RFE)},
    ),
    (
        "CALLERROR: id not a string",
        '[4,null,"GenericError","x",{}]',
        {V16: (DROP, "-1", GE), V201: (DROP, "-1", RFE), V21: (DROP, "-1", RFE)},
    ),
    (
        "type 5 on 1.6/2.0.1, broken on 2.1",
        '[5,"abc","GenericError","x"]',
        {V16: (DROP, "abc", GE), V201: (CE, "abc", MTNS), V21: (DROP, "abc", RFE)},
    ),
    (
        "type 6 on 1.6/2.0.1, broken on 2.1",
        '[6,"abc",5,{}]',
        {V16: (DROP, "abc", GE), V201: (CE, "abc", MTNS), V21: (DROP, "abc", RFE)},
    ),
    (
        "SEND: payload not an object",
        '[6,"abc","NotifyPeriodicEventStream",[]]',
        {V16: (DROP, "abc", GE), V201: (CE, "abc", MTNS), V21: (DROP, "abc", "FormatViolation")},
    ),
    (
        "SEND: bad id",
        '[6,7,"NotifyPeriodicEventStream",{}]',
        {V16: (DROP, "-1", GE), V201: (CE, "-1", MTNS), V21: (DROP, "-1", RFE)},
    ),
    (
        "binary CALL",
        b'[2,"abc","Heartbeat",{}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "binary CALLRESULT",
        b'[3,"abc",{}]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (CRE, "abc", RFE)},
    ),
    (
        "binary CALLERROR",
        b'[4,"abc","GenericError","",{}]',
        {V16: (DROP, "abc", GE), V201: (DROP, "abc", RFE), V21: (DROP, "abc", RFE)},
    ),
    (
        "invalid UTF-8 with a readable CALL prefix",
        b'[2,"abc","Heartbeat",{"a":"\xff"}]',
        {V16: (CE, "abc", GE), V201: (CE, "abc", RFE), V21: (CE, "abc", RFE)},
    ),
    (
        "invalid UTF-8",
        b"\xff\xfe[\x00",
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
    (
        "UTF-16 is not sniffed",
        '[2,"abc","Heartbeat",{}]'.encode("utf-16"),
        {V16: (DROP, "-1", GE), V201: (CE, "-1", RFE), V21: (CE, "-1", RFE)},
    ),
]


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(("name", "data", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_broken_frame(
    name: str,
    data: str | bytes,
    expected: dict[Version, tuple[Reply, str, str]],
    version: Version,
) -> None:
    reply, message_id, wire = expected[version]
    with pytest.raises(FrameError) as info:
        parse_frame(version, data)
    error = info.value
    assert (error.reply, error.message_id, error.code.wire(version)) == (reply, message_id, wire)
    assert error.version is version
    assert len(error.description) <= 255
    assert str(error).startswith(wire + ": ")
    answer = error.reply_frame()
    if reply is DROP:
        assert answer is None
    else:
        assert answer is not None
        expected_type = MessageType.CALLERROR if reply is CE else MessageType.CALLRESULTERROR
        assert answer.TYPE is expected_type
        assert (answer.message_id, answer.error_code, answer.details) == (message_id, wire, {})
        # the answer itself is a well-formed frame (1.6 may echo an id of the wrong length)
        if is_valid_message_id(message_id):
            assert parse_frame(V21, dump_frame(answer)) == answer


def test_frame_error_carries_type_and_id_of_broken_replies() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(V201, '[3,"abc",[]]')
    assert info.value.message_type is MessageType.CALLRESULT
    assert info.value.frame_id == "abc"
    with pytest.raises(FrameError) as info:
        parse_frame(V16, '[4,"abc",1,"",{}]')
    assert info.value.message_type is MessageType.CALLERROR
    assert info.value.frame_id == "abc"
    with pytest.raises(FrameError) as info:
        parse_frame(V16, f'[4,"{ID37}","GenericError","",{{}}]')
    assert info.value.frame_id is None
    with pytest.raises(FrameError) as info:
        parse_frame(V201, "[7]")
    assert info.value.message_type is None


def test_frame_error_pickles() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(V21, '[3,"abc"]')
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, FrameError)
    assert (copy.code, copy.description, copy.reply, copy.message_id, copy.message_type) == (
        info.value.code,
        info.value.description,
        Reply.CALLRESULTERROR,
        "abc",
        MessageType.CALLRESULT,
    )


def test_limit_description() -> None:
    assert limit_description("x" * 255) == "x" * 255
    cut = limit_description("x" * 1000)
    assert len(cut) == 255
    assert cut.endswith("...")


def test_description_does_not_quote_invalid_input() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(V201, '[2,"abc","A",{"secret":')
    assert "secret" not in info.value.description


# --- properties ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
ids = st.one_of(
    st.text(min_size=1, max_size=36),
    st.text(min_size=37, max_size=40),
    st.just(""),
    st.integers(),
    st.none(),
)
frame_like = st.builds(
    lambda number, head, rest: [number, *head, *rest],
    st.one_of(st.integers(0, 8), json_scalars),
    st.lists(ids, max_size=1),
    st.lists(
        st.one_of(st.sampled_from(["Heartbeat", "GenericError", ""]), json_values), max_size=4
    ),
)


def _check_error(version: Version, error: FrameError) -> None:
    assert isinstance(error.code, ErrorCode)
    assert isinstance(error.message_id, str)
    assert len(error.description) <= 255
    if error.reply is Reply.CALLERROR:
        # a CALLERROR answers a CALL (or a frame of unknown kind), except 2.0.1's
        # MessageTypeNotSupported, which answers a frame of an unsupported type
        if error.code is ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED:
            assert version is V201
        else:
            assert error.message_type in (None, MessageType.CALL)
        if version is not V16:
            assert is_valid_message_id(error.message_id) or error.message_id == UNREADABLE_ID
    elif error.reply is Reply.CALLRESULTERROR:
        assert version is V21
        assert error.message_type is MessageType.CALLRESULT
        assert error.frame_id == error.message_id
        assert is_valid_message_id(error.message_id)
    if error.frame_id is not None:
        assert is_valid_message_id(error.frame_id)
    if error.message_type is MessageType.SEND or error.message_type is MessageType.CALLERROR:
        assert error.reply is Reply.DROP
    answer = error.reply_frame()
    if answer is not None:
        text = dump_frame(answer)
        text.encode("utf-8")
        if is_valid_message_id(answer.message_id):
            assert parse_frame(V21, text) == answer


def _parse_checked(version: Version, data: str | bytes, accept_binary: bool = False) -> None:
    try:
        frame = parse_frame(version, data, accept_binary=accept_binary)
    except FrameError as error:
        _check_error(version, error)
    else:
        assert is_valid_message_id(frame.message_id)
        if version is not V21:
            assert not isinstance(frame, CallResultErrorFrame | SendFrame)
        # what we parsed, we write back to an equivalent frame
        assert parse_frame(version, dump_frame(frame)) == frame


@settings(max_examples=300)
@given(st.sampled_from(ALL), st.binary(max_size=80), st.booleans())
def test_random_bytes_only_raise_frame_error(
    version: Version, data: bytes, accept_binary: bool
) -> None:
    _parse_checked(version, data, accept_binary)


@settings(max_examples=300)
@given(st.sampled_from(ALL), st.text(max_size=80))
def test_random_text_only_raises_frame_error(version: Version, data: str) -> None:
    _parse_checked(version, data)


@settings(max_examples=500)
@given(st.sampled_from(ALL), st.one_of(frame_like, json_values), st.booleans())
def test_random_json_only_raises_frame_error(version: Version, value: Any, binary: bool) -> None:
    text = json.dumps(value, ensure_ascii=binary)
    data: str | bytes = text.encode("utf-8", "surrogatepass") if binary else text
    _parse_checked(version, data, accept_binary=True)
    # a prefix of a frame is invalid JSON (or a shorter valid value): still only FrameError
    _parse_checked(version, text[: len(text) // 2])


valid_ids = st.text(min_size=1, max_size=36).filter(lambda s: is_valid_message_id(s))
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
valid_frames = st.one_of(
    st.builds(Call, valid_ids, st.text(max_size=20), payloads),
    st.builds(CallResult, valid_ids, payloads),
    st.builds(CallErrorFrame, valid_ids, st.text(max_size=20), st.text(max_size=20), payloads),
    st.builds(CallResultErrorFrame, valid_ids, st.text(max_size=20), st.text(), payloads),
    st.builds(SendFrame, valid_ids, st.text(max_size=20), payloads),
)


def _holds_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(x) for x in value.values())
    if isinstance(value, list):
        return any(_holds_float(x) for x in value)
    return False


@given(valid_frames)
def test_round_trip(frame: Frame) -> None:
    text = dump_frame(frame)
    value = json.loads(text)
    reference = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not _holds_float(value):
        # orjson spells some floats unlike the json module (0.00001, not 1e-05); both are the
        # shortest text of the same float (read back below), and the rest is written alike
        assert text == reference
    assert parse_frame(V21, text) == frame
    assert parse_frame(V21, text.encode("utf-8"), accept_binary=True) == frame
