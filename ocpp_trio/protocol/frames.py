"""OCPP-J frames: JSON text <-> frame objects, and what to answer to a frame that is broken.

This module is sans-IO: it imports neither trio nor trio_websocket, and it knows nothing about
payload schemas (those are checked by :mod:`ocpp_trio.messages`, one layer up in
:mod:`ocpp_trio.protocol.rpc`). It checks the *envelope*: the JSON, the array shape, the message
type, the message id, the element count, that an action is a string and that a payload is an object.

Every problem is raised as one :class:`FrameError`, which says which :class:`ErrorCode` applies,
which id to answer with and, above all, *whether the problem deserves an answer at all*
(:class:`Reply`). Nothing else escapes :func:`parse_frame`, whatever the input.

Who gets an answer
==================

The rules come from the OCPP-J specifications (1.6 §4 and its errata, 2.x Part 4 §4); where
they leave a fault open we chose the most defensible answer and say why below. The guiding
facts: a CALLERROR answers a CALL and nothing else (before 2.1 there is no frame that can answer
a response); a 2.1 CALLRESULTERROR answers a CALLRESULT; a SEND is never answered. Answering a
broken CALL, rather than dropping it, spares the peer a timeout with its outbound queue
blocked, so we answer whenever we have an id the peer can match.

In the table, GE is ``GenericError``, RFE ``RpcFrameworkError``, MTNS
``MessageTypeNotSupported``, CRE a CALLRESULTERROR frame; "(id)" answers with the frame's id,
"(id/-1)" with the frame's id if readable, else ``"-1"``.

=================================  ==================  ==================  ==================
Fault, in the order checked        1.6                 2.0.1               2.1
=================================  ==================  ==================  ==================
kind unknown: not UTF-8, not       GE (id), or drop    RFE (id/-1)         RFE (id/-1)
JSON, not an array, empty array,   if no string id
type not an integer
unknown integer message type       drop                MTNS (id/-1)        drop ("ignore")
type 5 or 6                        drop                MTNS (id/-1)        valid types
CALL: bad id (not a string,        GE echoing a        RFE ("-1")          RFE ("-1")
empty, over 36 characters)         string id, or drop
CALL: wrong element count,         GE (id)             RFE (id)            RFE (id)
action not a string
CALL: payload not an object        FormationViolation  FormatViolation     FormatViolation
(nor null)                         (id)                (id)                (id)
CALLRESULT: any envelope fault     drop                drop                CRE (id), or drop
                                                                           if id unreadable
CALLERROR, CALLRESULTERROR:        drop                drop                drop
any envelope fault
SEND: any fault                    --                  --                  drop (never
                                                                           answered)
binary frame (text frames only;    like a broken frame of its type, code RFE (GE on 1.6)
unless ``accept_binary``)
=================================  ==================  ==================  ==================

Notes on the choices:

* "Readable id" means the second element is a valid message id: a string of 1 to 36 characters
  that can be encoded as UTF-8. When the JSON itself is invalid we still look for a readable
  prefix ``[<type>, "<id>"`` (ASCII ids only), so a truncated CALL gets an answer with its own id
  rather than ``"-1"`` (or, on 1.6, rather than silence).
* 1.6 has neither ``RpcFrameworkError`` nor the ``"-1"`` convention. An answer the peer cannot
  match is useless, so on 1.6 we answer only when the frame carries a string id we can echo
  (even an over-long or empty one: the peer can still match it) and drop the rest. The code is
  ``GenericError`` (``ProtocolError`` means "payload incomplete" in 1.6, which is not what went
  wrong). :class:`ErrorCode` spells ``RPC_FRAMEWORK_ERROR`` as ``GenericError`` on 1.6, so the
  same code object is used for every version.
* On 2.x a bad id is always answered with ``"-1"`` (Part 4: the id could not be read), even when
  it is a string we could echo.
* A payload of JSON ``null`` is read as ``{}``: the OCPP-J specification allows ``null`` for
  "no payload" (while recommending ``{}``).
* Malformed CALLRESULT/CALLERROR frames are never answered with a CALLERROR. When their id is
  readable, :class:`FrameError` carries it (``frame_id``) and the message type, so the RPC layer
  can fail its outstanding CALL at once instead of waiting for the timeout. The 2.1
  CALLRESULTERROR reply is only *eligible*: the RPC layer sends it only when the id is that of
  its outstanding CALL (the specification defines no answer for an id one never sent, so an
  unknown or stale id is dropped).
* A 2.x description is at most 255 characters (``string[255]``) and never quotes the raw
  invalid input.
* OCPP-J messages travel in WebSocket *text* frames. Bytes are decoded as strict UTF-8 (never
  sniffed as UTF-16/32); unless ``accept_binary`` is set, a binary frame is then treated as a
  broken frame of whatever type it turns out to be, so a CALL sent in a binary frame is answered
  with an error that says why. ``accept_binary=True`` is the explicit lenient mode for stations
  known to send binary frames.
* JSON is strict: ``NaN``/``Infinity`` are rejected, and so is nesting too deep for the parser.
  The text is read and written by :mod:`ocpp_trio.protocol.jsonio` (orjson, with the ``json`` module
  deciding whatever orjson would read or write differently), so integers of any size are read
  exactly and a lone surrogate escape (``"\\ud800"``) is accepted as JSON: such a string is not
  a valid message id, and it is written back with ``\\u`` escapes.
* Signed messages (2.x Part 4 §7, ``<Action>-Signed``) are not supported: such a CALL parses
  normally and is then answered ``NotImplemented`` as an unknown action by the RPC layer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, ClassVar, Final, NoReturn, TypeAlias, TypeGuard

import attrs

from ocpp_trio.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ocpp_trio.protocol import jsonio as _json
from ocpp_trio.protocol.version import Version

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "MAX_MESSAGE_ID_LENGTH",
    "UNREADABLE_ID",
    "Call",
    "CallErrorFrame",
    "CallResult",
    "CallResultErrorFrame",
    "Frame",
    "FrameError",
    "MessageType",
    "Reply",
    "SendFrame",
    "dump_call_result",
    "dump_frame",
    "is_valid_message_id",
    "limit_description",
    "parse_frame",
]

#: Longest message id OCPP-J allows (sized for a UUID).
MAX_MESSAGE_ID_LENGTH: Final = 36
#: The id a 2.x CALLERROR uses when the offending frame's id cannot be read.
UNREADABLE_ID: Final = "-1"
#: 2.x ``errorDescription`` is a ``string[255]``.
MAX_DESCRIPTION_LENGTH: Final = 255


class MessageType(enum.IntEnum):
    """The message type number, the first element of every OCPP-J frame."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    #: 2.1 only
    CALLRESULTERROR = 5
    #: 2.1 only
    SEND = 6


_TYPES_BY_VERSION: Final[dict[Version, frozenset[int]]] = {
    Version.V16: frozenset({2, 3, 4}),
    Version.V201: frozenset({2, 3, 4}),
    Version.V21: frozenset({2, 3, 4, 5, 6}),
}
_LENGTHS: Final[dict[MessageType, int]] = {
    MessageType.CALL: 4,
    MessageType.CALLRESULT: 3,
    MessageType.CALLERROR: 5,
    MessageType.CALLRESULTERROR: 5,
    MessageType.SEND: 4,
}


@attrs.frozen
class Call:
    """``[2, messageId, action, payload]``: a request; either side may send one."""

    TYPE: ClassVar[MessageType] = MessageType.CALL

    message_id: str
    action: str
    payload: dict[str, Any]


@attrs.frozen
class CallResult:
    """``[3, messageId, payload]``: the successful answer to a CALL (it names no action)."""

    TYPE: ClassVar[MessageType] = MessageType.CALLRESULT

    message_id: str
    payload: dict[str, Any]


@attrs.frozen
class CallErrorFrame:
    """``[4, messageId, errorCode, errorDescription, errorDetails]``: a CALL could not be done.

    ``error_code`` is the string as it travels; read it with :meth:`ErrorCode.parse`.
    """

    TYPE: ClassVar[MessageType] = MessageType.CALLERROR

    message_id: str
    error_code: str
    description: str = ""
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CallResultErrorFrame:
    """``[5, messageId, errorCode, errorDescription, errorDetails]`` (2.1 only).

    Sent by the receiver of a CALLRESULT it could not process; echoes the CALLRESULT's id.
    """

    TYPE: ClassVar[MessageType] = MessageType.CALLRESULTERROR

    message_id: str
    error_code: str
    description: str = ""
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SendFrame:
    """``[6, messageId, action, payload]`` (2.1 only): an unconfirmed message, never answered."""

    TYPE: ClassVar[MessageType] = MessageType.SEND

    message_id: str
    action: str
    payload: dict[str, Any]


Frame: TypeAlias = Call | CallResult | CallErrorFrame | CallResultErrorFrame | SendFrame


class Reply(enum.Enum):
    """What a broken frame deserves."""

    #: answer with a CALLERROR (``FrameError.message_id``, ``FrameError.code``)
    CALLERROR = "callerror"
    #: 2.1: answer with a CALLRESULTERROR, if the id is that of our outstanding CALL
    CALLRESULTERROR = "callresulterror"
    #: log it and send nothing
    DROP = "drop"


class FrameError(RemoteProtocolError):
    """A frame that could not be parsed, and how to react to it.

    Attributes:
        code: the OCPP error code that describes the fault (spell it with
            ``code.wire(version)``; used for the reply, or only for the log when dropping).
        description: what is wrong; never quotes the raw input; at most 255 characters.
        version: the connection's OCPP version.
        reply: whether to answer with a CALLERROR, a CALLRESULTERROR (2.1, only if the id is our
            outstanding CALL's) or not at all.
        message_id: the id to answer with: the frame's id when readable, else ``"-1"``.
        frame_id: the frame's own id when it is a valid message id, else ``None``; the RPC layer
            uses it to fail its outstanding CALL when a broken reply names it.
        message_type: the frame's type when it could be read as a type this version speaks,
            else ``None``.
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        *,
        version: Version,
        reply: Reply,
        message_id: str = UNREADABLE_ID,
        frame_id: str | None = None,
        message_type: MessageType | None = None,
    ) -> None:
        super().__init__(code, limit_description(description))
        self.version = version
        self.reply = reply
        self.message_id = message_id
        self.frame_id = frame_id
        self.message_type = message_type

    def __str__(self) -> str:
        return f"{self.code.wire(self.version)}: {self.description}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_frame_error, (self.code, self.description, self._state()))

    def _state(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "reply": self.reply,
            "message_id": self.message_id,
            "frame_id": self.frame_id,
            "message_type": self.message_type,
        }

    def reply_frame(self) -> CallErrorFrame | CallResultErrorFrame | None:
        """The frame that answers this fault, or ``None`` when it must be dropped.

        For :attr:`Reply.CALLRESULTERROR` the caller must still check that ``message_id`` is
        its outstanding CALL's id before sending it.
        """
        wire = self.code.wire(self.version)
        if self.reply is Reply.CALLERROR:
            return CallErrorFrame(self.message_id, wire, self.description, {})
        if self.reply is Reply.CALLRESULTERROR:
            return CallResultErrorFrame(self.message_id, wire, self.description, {})
        return None


def _rebuild_frame_error(code: ErrorCode, description: str, state: dict[str, Any]) -> FrameError:
    return FrameError(code, description, **state)


def is_valid_message_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid OCPP-J message id: a UTF-8-encodable string of 1 to 36
    characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_MESSAGE_ID_LENGTH
        and _json.encodable(value)
    )


def limit_description(text: str) -> str:
    """Cut an error description to the 2.x limit of 255 characters (marking the cut).

    Applied to every description this module makes, whatever the version: a description is for
    humans, and 255 characters is plenty.
    """
    if len(text) <= MAX_DESCRIPTION_LENGTH:
        return text
    return text[: MAX_DESCRIPTION_LENGTH - 3] + "..."


# A readable start of a frame whose JSON as a whole is invalid: `[<type>, "<id>"`. Only plain
# printable-ASCII ids without escapes, so what we echo is exactly what the peer wrote.
_WS = r"[ \t\n\r]*"
_PREFIX_PATTERN = _WS + r"\[" + _WS + r"(0|[1-9][0-9]?)" + _WS + "," + _WS
_PREFIX_PATTERN += r'"([\x20\x21\x23-\x5b\x5d-\x7e]{1,36})"'
_PREFIX_STR: Final = re.compile(_PREFIX_PATTERN)
_PREFIX_BYTES: Final = re.compile(_PREFIX_PATTERN.encode("ascii"))


def parse_frame(version: Version, data: str | bytes, *, accept_binary: bool = False) -> Frame:
    """Parse one WebSocket message into an OCPP-J frame.

    The payload is not checked against any schema, only that it is a JSON object.

    Args:
        version: the connection's OCPP version (decides which types exist and how to answer).
        data: the message: ``str`` from a text frame, ``bytes`` from a binary frame.
        accept_binary: read a binary frame like a text frame instead of rejecting it.

    Returns:
        The frame.

    Raises:
        FrameError: for every problem, whatever the input; it says how to react (see the module
            docstring for the table).
    """
    if isinstance(data, str):
        binary, text = False, data
    else:
        binary, raw = True, bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _raise_unparseable(version, raw, "the frame is not valid UTF-8")
    try:
        value = _json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit.
        _raise_unparseable(version, text, "the frame is not valid JSON")
    frame = _from_json(version, value)
    if binary and not accept_binary:
        _fault(
            version,
            frame.TYPE,
            frame.message_id,
            frame.message_id,
            ErrorCode.RPC_FRAMEWORK_ERROR,
            "binary WebSocket frame: OCPP-J messages travel in text frames",
        )
    return frame


def _raise_unparseable(version: Version, data: str | bytes, why: str) -> NoReturn:
    """A frame whose JSON cannot be read: answer with the id of a readable prefix, if any."""
    found: tuple[str, str] | None = None
    if isinstance(data, str):
        text_match = _PREFIX_STR.match(data)
        if text_match is not None:
            found = (text_match.group(1), text_match.group(2))
    else:
        bytes_match = _PREFIX_BYTES.match(data)
        if bytes_match is not None:
            found = (bytes_match.group(1).decode("ascii"), bytes_match.group(2).decode("ascii"))
    if found is not None:
        number, message_id = int(found[0]), found[1]
        if number in _TYPES_BY_VERSION[version]:
            _fault(
                version,
                MessageType(number),
                message_id,
                message_id,
                ErrorCode.RPC_FRAMEWORK_ERROR,
                why,
            )
    _fault(version, None, None, None, ErrorCode.RPC_FRAMEWORK_ERROR, why)


def _fault(
    version: Version,
    message_type: MessageType | None,
    frame_id: str | None,
    echo_id: str | None,
    code: ErrorCode,
    description: str,
) -> NoReturn:
    """Raise the FrameError for a fault in a frame of ``message_type`` (``None``: unknown kind).

    ``frame_id`` is the frame's id if valid; ``echo_id`` a string id we could echo on 1.6 (any
    encodable string, even of the wrong length).
    """
    if message_type is None or message_type is MessageType.CALL:
        # Possibly a CALL: a CALLERROR is the only answer that can help the peer.
        if version is Version.V16:
            if echo_id is None:
                reply, message_id = Reply.DROP, UNREADABLE_ID
            else:
                reply, message_id = Reply.CALLERROR, echo_id
        else:
            reply, message_id = Reply.CALLERROR, frame_id or UNREADABLE_ID
    elif message_type is MessageType.CALLRESULT and version is Version.V21 and frame_id:
        reply, message_id = Reply.CALLRESULTERROR, frame_id
    else:
        # CALLERROR / CALLRESULTERROR / SEND, or a CALLRESULT we cannot answer: log only.
        reply, message_id = Reply.DROP, frame_id or UNREADABLE_ID
    raise FrameError(
        code,
        description,
        version=version,
        reply=reply,
        message_id=message_id,
        frame_id=frame_id,
        message_type=message_type,
    )


def _from_json(version: Version, value: object) -> Frame:
    # The frames that make up nearly all traffic, well formed, are recognised by a few type
    # checks; anything else (another kind, or any fault) is read by _read_frame, which works
    # out which fault it is.  Types 2 and 3 exist in every version.
    if type(value) is list:
        size = len(value)
        if size == 4:
            kind, message_id, action, payload = value
            if (
                type(kind) is int
                and kind == 2
                and type(action) is str
                and type(payload) is dict
                and is_valid_message_id(message_id)
            ):
                return Call(message_id, action, payload)
        elif size == 3:
            kind, message_id, payload = value
            if (
                type(kind) is int
                and kind == 3
                and type(payload) is dict
                and is_valid_message_id(message_id)
            ):
                return CallResult(message_id, payload)
    return _read_frame(version, value)


def _read_frame(version: Version, value: object) -> Frame:
    if not isinstance(value, list) or not value:
        why = "the frame is an empty array" if value == [] else "the frame is not a JSON array"
        _fault(version, None, None, None, ErrorCode.RPC_FRAMEWORK_ERROR, why)
    raw_id = value[1] if len(value) > 1 else None
    frame_id = raw_id if is_valid_message_id(raw_id) else None
    echo_id = raw_id if isinstance(raw_id, str) and _json.encodable(raw_id) else None
    number = value[0]
    if type(number) is not int:  # bool is an int subclass, and 2.0 is not an integer
        _fault(
            version,
            None,
            frame_id,
            echo_id,
            ErrorCode.RPC_FRAMEWORK_ERROR,
            "the message type is not an integer",
        )
    if number not in _TYPES_BY_VERSION[version]:
        _unknown_type(version, number, frame_id)
    message_type = MessageType(number)
    name = message_type.name
    if frame_id is None:
        why = "missing" if len(value) < 2 else "not a string of 1 to 36 characters"
        _fault(
            version,
            message_type,
            None,
            echo_id,
            ErrorCode.RPC_FRAMEWORK_ERROR,
            f"{name}: the message id is {why}",
        )
    expected = _LENGTHS[message_type]
    if len(value) != expected:
        _fault(
            version,
            message_type,
            frame_id,
            echo_id,
            ErrorCode.RPC_FRAMEWORK_ERROR,
            f"{name}: expected {expected} elements, got {len(value)}",
        )

    def fail(code: ErrorCode, why: str) -> NoReturn:
        _fault(version, message_type, frame_id, echo_id, code, f"{name}: {why}")

    if message_type is MessageType.CALL or message_type is MessageType.SEND:
        action = value[2]
        if not isinstance(action, str):
            fail(ErrorCode.RPC_FRAMEWORK_ERROR, "the action is not a string")
        payload = _payload(value[3], fail)
        if message_type is MessageType.CALL:
            return Call(frame_id, action, payload)
        return SendFrame(frame_id, action, payload)
    if message_type is MessageType.CALLRESULT:
        return CallResult(frame_id, _payload(value[2], fail))
    error_code, description, details = value[2], value[3], value[4]
    if not isinstance(error_code, str):
        fail(ErrorCode.RPC_FRAMEWORK_ERROR, "the error code is not a string")
    if not isinstance(description, str):
        fail(ErrorCode.RPC_FRAMEWORK_ERROR, "the error description is not a string")
    if not isinstance(details, dict):
        fail(ErrorCode.RPC_FRAMEWORK_ERROR, "the error details are not a JSON object")
    if message_type is MessageType.CALLERROR:
        return CallErrorFrame(frame_id, error_code, description, details)
    return CallResultErrorFrame(frame_id, error_code, description, details)


def _payload(value: object, fail: Callable[[ErrorCode, str], NoReturn]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(ErrorCode.FORMAT_VIOLATION, "the payload is not a JSON object")
    return value


def _unknown_type(version: Version, number: int, frame_id: str | None) -> NoReturn:
    if version is Version.V201:
        # Part 4 §4.4: an unsupported message type is answered MessageTypeNotSupported. This is
        # the one CALLERROR that may answer something which is not (known to be) a CALL.
        reply, message_id = Reply.CALLERROR, frame_id or UNREADABLE_ID
    else:
        # 1.6 defines no answer; 2.1 says to ignore the payload.
        reply, message_id = Reply.DROP, frame_id or UNREADABLE_ID
    raise FrameError(
        ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,
        f"message type {number} is not supported by OCPP {version.value}",
        version=version,
        reply=reply,
        message_id=message_id,
        frame_id=frame_id,
    )


def dump_frame(frame: Frame) -> str:
    """Serialise a frame as compact JSON text for a WebSocket text frame.

    The text is always encodable as UTF-8: should a string hold a lone surrogate, the frame is
    written with ``\\u`` escapes instead of raw characters.

    Raises:
        LocalProtocolError: the frame holds something JSON cannot express (``NaN``, a non-JSON
            type, a reference cycle).
    """
    array: list[Any]
    if isinstance(frame, Call | SendFrame):
        array = [int(frame.TYPE), frame.message_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        array = [int(frame.TYPE), frame.message_id, frame.payload]
    else:
        array = [
            int(frame.TYPE),
            frame.message_id,
            frame.error_code,
            frame.description,
            frame.details,
        ]
    return _dump(array, frame.TYPE)


def dump_call_result(message_id: str, payload: dict[str, Any]) -> str:
    """``dump_frame(CallResult(message_id, payload))``, without making the frame object (the
    answer to every CALL is written this way).

    Raises:
        LocalProtocolError: as :func:`dump_frame`.
    """
    return _dump([3, message_id, payload], MessageType.CALLRESULT)


def _dump(array: list[Any], kind: MessageType) -> str:
    try:
        return _json.dumps(array)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"cannot write the {kind.name} frame as JSON: {exc}") from exc
