"""The RPC state of one OCPP-J connection, sans-IO (in the manner of h11).

:class:`RpcConnection` is fed every WebSocket message the peer sends (:meth:`RpcConnection.receive`)
and hands back what happened (events) and what must be sent at once (frames). It produces the
frames for what we send (:meth:`~RpcConnection.start_call`, :meth:`~RpcConnection.send`,
:meth:`~RpcConnection.answer`, :meth:`~RpcConnection.answer_error`) and returns them as text;
the caller writes them to the socket. It never does I/O, never runs a handler and never sleeps,
so it imports neither trio nor trio_websocket, and its tests are plain synchronous code.

One object serves one connection in one role: the CSMS side uses ``role="csms"`` (the peer is a
station), a station-side client ``role="station"``; the direction checks flip with the role.

What it keeps
=============

* **One outstanding CALL of ours** (OCPP-J: SHOULD NOT in 1.6, SHALL NOT in 2.x).
  :meth:`~RpcConnection.start_call` refuses a second one with :class:`LocalProtocolError`. The
  slot is freed by the CALLRESULT or CALLERROR with its id, by a broken reply naming its id, or
  by :meth:`~RpcConnection.abandon_call` (timeout or cancellation, decided by the runtime). 2.1
  SEND frames are exempt and may go out at any time.
* **Incoming CALLs awaiting our answer.** Calls cross: while our CALL is outstanding the peer's
  CALLs are still accepted and must be answered. Each valid incoming CALL becomes an
  :class:`IncomingCall` event and stays pending until :meth:`~RpcConnection.answer` or
  :meth:`~RpcConnection.answer_error` produces its reply; answering anything else is a
  :class:`LocalProtocolError`. A CALL that reuses the id of one still pending is dropped: the
  peer broke the unique-id rule (or retried too early), and the answer to the first will match
  it anyway.
* **Correlation by id only.** A CALLRESULT carries no action; it is decoded against the response
  schema of our outstanding CALL's action.

What is answered and what is dropped
====================================

The envelope rules (JSON, shape, type, id) live in :mod:`ocpp_trio.protocol.frames`, which has the
full table per version; this layer adds the rules that need the action registry or the connection's
state. Codes are spelled per version (``FormationViolation``/``OccurenceConstraintViolation`` on
1.6, ``FormatViolation``/``OccurrenceConstraintViolation`` on 2.x).

======================================  ============================================================
Received                                Reaction (all versions unless noted)
======================================  ============================================================
CALL, unknown action                    CALLERROR ``NotImplemented``
CALL, known action the peer's role may  CALLERROR ``NotSupported`` (it is not something we support
not send (or a 2.1 SEND-only action)    receiving)
CALL, payload fails the schema          CALLERROR with the violated rule's code and a description
                                        naming the field path and value; details ``{"path": ...}``
CALL, valid                             :class:`IncomingCall`; the runtime answers it later
CALL, id of a CALL still pending        dropped
CALLRESULT for our outstanding CALL     :class:`CallCompleted`, slot freed (a
                                        :class:`RawCallCompleted`, unchecked, for a raw CALL
                                        sent without validation)
CALLRESULT, payload fails the schema    :class:`CallFailed` (a ``MessageValidationError``), slot
                                        freed; 2.1 also sends a CALLRESULTERROR with that code
CALLERROR for our outstanding CALL      :class:`CallFailed` (a ``CallError``), slot freed
broken CALLRESULT/CALLERROR frame with  :class:`CallFailed` (the ``FrameError``), slot freed; 2.1
our outstanding CALL's id               sends a CALLRESULTERROR for a broken CALLRESULT
CALLRESULT/CALLERROR, unknown or stale  dropped; the outstanding slot is not disturbed (nothing
id (e.g. after ``abandon_call``)        can answer a response before 2.1, and 2.1 does not define
                                        CALLRESULTERROR for an id one never sent)
SEND (2.1), valid                       :class:`IncomingSend`
SEND (2.1), any fault                   dropped, never answered
CALLRESULTERROR (2.1)                   :class:`CallResultErrorReceived` (for the log only: our
                                        answer has already gone)
======================================  ============================================================

Each :meth:`~RpcConnection.receive` yields exactly one event, so a runtime can log or count
every message it was given. Should decoding fail in a way that is not a schema violation (a
bug of ours, not the peer's), the CALL is answered ``InternalError``, a CALLRESULT fails our
CALL with ``InternalError``, and the traceback is logged to the ``ocpp_trio`` logger; the
connection goes on.

Answers that depend on the application (``NotSupported`` for a disabled action,
``SecurityError`` before the station is accepted, ``InternalError`` when a handler fails) are
the runtime's, given with :meth:`~RpcConnection.answer_error`.

Our own payloads are checked against the schema before they leave when ``validate_outbound``
is set (the default), so a bug of ours surfaces as a :class:`LocalProtocolError` raised to us
(its ``__cause__`` the :class:`MessageValidationError`), not as a CALLERROR blamed on the peer.
Every refusal to send raises :class:`LocalProtocolError` before any state changes: the slot
stays free, the incoming CALL stays pending (so the runtime can still answer it with
``InternalError``).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

from ocpp_trio import messages
from ocpp_trio.errors import (
    CallError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    RemoteProtocolError,
)
from ocpp_trio.messages._base import ActionSpec, Request, Response, Send
from ocpp_trio.protocol.frames import (
    Call,
    CallErrorFrame,
    CallResult,
    CallResultErrorFrame,
    FrameError,
    MessageType,
    Reply,
    SendFrame,
    dump_call_result,
    dump_frame,
    is_valid_message_id,
    limit_description,
    parse_frame,
)
from ocpp_trio.protocol.version import Version

__all__ = [
    "CallCompleted",
    "CallFailed",
    "CallRejected",
    "CallResultErrorReceived",
    "Dropped",
    "Event",
    "IncomingCall",
    "IncomingSend",
    "OutstandingCall",
    "RawCallCompleted",
    "Received",
    "Role",
    "RpcConnection",
    "RpcStatistics",
    "new_message_id",
]

_log = logging.getLogger("ocpp_trio")

#: how many abandoned/answered ids are remembered, to tell late replies apart in the log
_MEMORY: Final = 32
_EXCERPT: Final = 120
_V = TypeVar("_V")


class Role(enum.StrEnum):
    """Which side of the connection an :class:`RpcConnection` speaks for."""

    CSMS = "csms"
    STATION = "station"


def new_message_id() -> str:
    """A fresh message id: a random UUID, so ids never repeat, not even across reconnects."""
    return str(uuid.uuid4())


@attrs.frozen
class OutstandingCall:
    """Our CALL that awaits its answer (``validate``: its answer is checked against the
    response schema; off only for :meth:`RpcConnection.start_raw_call` without validation)."""

    message_id: str
    action: str
    validate: bool = True


# --- events ------------------------------------------------------------------------------------


@attrs.frozen
class IncomingCall:
    """A valid CALL from the peer; answer it with :meth:`RpcConnection.answer` or
    :meth:`RpcConnection.answer_error`.

    ``payload`` is the CALL's JSON object as it came (``request`` is built from it).
    """

    message_id: str
    action: str
    request: Request[Any]
    payload: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class IncomingSend:
    """A valid 2.1 SEND from the peer (never answered)."""

    message_id: str
    action: str
    message: Send


@attrs.frozen
class CallCompleted:
    """Our outstanding CALL was answered with a valid CALLRESULT; the slot is free.

    ``payload`` is the answer's JSON object as it came (``response`` is built from it).
    """

    message_id: str
    action: str
    response: Response
    payload: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class RawCallCompleted:
    """Our outstanding CALL, sent with :meth:`RpcConnection.start_raw_call` without
    validation, was answered with a CALLRESULT (``payload`` as it came, not checked); the slot
    is free."""

    message_id: str
    action: str
    payload: dict[str, Any]


@attrs.frozen
class CallFailed:
    """Our outstanding CALL failed; the slot is free.

    ``error`` is a :class:`CallError` when the peer answered with a CALLERROR, a
    :class:`MessageValidationError` when its CALLRESULT broke the response schema, or another
    :class:`RemoteProtocolError` (a ``FrameError``) when its reply frame was broken.
    """

    message_id: str
    action: str
    error: CallError | RemoteProtocolError


@attrs.frozen
class CallRejected:
    """A CALL from the peer that this layer answered with a CALLERROR itself (the frame is in
    :attr:`Received.outgoing`): unknown action, wrong direction, bad payload or broken frame.

    ``action`` is ``None`` when the frame was too broken to name one.
    """

    message_id: str
    action: str | None
    error: RemoteProtocolError


@attrs.frozen
class CallResultErrorReceived:
    """2.1: the peer could not process one of our CALLRESULTs. Only worth logging.

    ``action`` is the action of the CALL we answered, when we still remember it.
    """

    message_id: str
    action: str | None
    error_code: ErrorCode | str
    description: str
    details: dict[str, Any]


@attrs.frozen
class Dropped:
    """A message that gets no answer and changes nothing; log it.

    ``text_excerpt`` is the start of the message, safe to log (valid UTF-8, bounded length).
    """

    reason: str
    text_excerpt: str
    message_id: str | None = None


Event: TypeAlias = (
    IncomingCall
    | IncomingSend
    | CallCompleted
    | RawCallCompleted
    | CallFailed
    | CallRejected
    | CallResultErrorReceived
    | Dropped
)


@attrs.frozen
class Received:
    """What one received message led to: events to handle and frames to send now, in order."""

    events: list[Event] = attrs.Factory(list)
    outgoing: list[str] = attrs.Factory(list)


@attrs.frozen
class RpcStatistics:
    """Counters of one :class:`RpcConnection` since it was made."""

    frames_received: int
    frames_sent: int
    calls_sent: int
    calls_received: int
    sends_sent: int
    sends_received: int
    results_sent: int
    #: CALLERROR and CALLRESULTERROR frames we produced
    errors_sent: int
    calls_completed: int
    calls_failed: int
    calls_abandoned: int
    calls_rejected: int
    callresulterrors_received: int
    dropped: int
    #: incoming CALLs awaiting our answer right now
    awaiting_answer: int


@attrs.define
class _Counters:
    frames_received: int = 0
    frames_sent: int = 0
    calls_sent: int = 0
    calls_received: int = 0
    sends_sent: int = 0
    sends_received: int = 0
    results_sent: int = 0
    errors_sent: int = 0
    calls_completed: int = 0
    calls_failed: int = 0
    calls_abandoned: int = 0
    calls_rejected: int = 0
    callresulterrors_received: int = 0
    dropped: int = 0


class RpcConnection:
    """The RPC state of one OCPP-J connection: ids, the outstanding CALL, pending answers.

    Args:
        version: the negotiated OCPP version.
        role: ``"csms"`` (the peer is a station) or ``"station"`` (the peer is a CSMS).
        id_factory: makes the message ids of our CALLs and SENDs; must return a new string of
            1 to 36 characters each time (the default is a random UUID).
        validate_outbound: check our own messages against the schema before they leave.
        accept_binary: read binary WebSocket frames like text frames (lenient mode) instead of
            rejecting them as broken frames.
    """

    def __init__(
        self,
        version: Version | str,
        *,
        role: Role | Literal["csms", "station"],
        id_factory: Callable[[], str] = new_message_id,
        validate_outbound: bool = True,
        accept_binary: bool = False,
    ) -> None:
        self.version: Final = Version(version)
        self.role: Final = Role(role)
        self.validate_outbound = validate_outbound
        self.accept_binary = accept_binary
        self._id_factory = id_factory
        self._actions: Mapping[str, ActionSpec] = messages.actions(self.version)
        # the actions the peer may send as a CALL
        self._peer_calls = frozenset(
            name
            for name, spec in self._actions.items()
            if not spec.is_send and self._peer_may_send(spec)
        )
        self._outstanding: OutstandingCall | None = None
        # incoming CALL id -> action, in arrival order
        self._awaiting: dict[str, str] = {}
        # bounded memories, for telling late or odd frames apart in the log
        self._abandoned: OrderedDict[str, str] = OrderedDict()
        self._answered: OrderedDict[str, str] = OrderedDict()
        self._recent_ids: OrderedDict[str, None] = OrderedDict()
        self._counts = _Counters()

    # --- state -----------------------------------------------------------------------------

    @property
    def outstanding(self) -> OutstandingCall | None:
        """Our CALL awaiting its answer, or ``None`` when we may start one."""
        return self._outstanding

    @property
    def awaiting_answer(self) -> Mapping[str, str]:
        """The peer's CALLs we have not answered yet: message id -> action (a copy)."""
        return dict(self._awaiting)

    def statistics(self) -> RpcStatistics:
        """A snapshot of this connection's counters."""
        return RpcStatistics(**attrs.asdict(self._counts), awaiting_answer=len(self._awaiting))

    # --- receiving -------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> Received:
        """Take in one WebSocket message from the peer.

        Never raises because of what the peer sent: every problem becomes an answer in
        ``outgoing`` and/or an event (:class:`CallRejected`, :class:`CallFailed`,
        :class:`Dropped`).

        Args:
            data: the message, ``str`` from a text frame or ``bytes`` from a binary frame.

        Returns:
            The events, in order, and the frames to send at once, in order.
        """
        self._counts.frames_received += 1
        result = Received()
        try:
            frame = parse_frame(self.version, data, accept_binary=self.accept_binary)
        except FrameError as exc:
            self._on_frame_error(exc, data, result)
            return result
        if isinstance(frame, Call):
            self._on_call(frame, data, result)
        elif isinstance(frame, CallResult):
            self._on_result(frame, data, result)
        elif isinstance(frame, CallErrorFrame):
            self._on_error(frame, data, result)
        elif isinstance(frame, SendFrame):
            self._on_send(frame, data, result)
        else:
            self._on_callresulterror(frame, result)
        return result

    def _on_frame_error(self, exc: FrameError, data: str | bytes, result: Received) -> None:
        outstanding = self._outstanding
        is_reply = exc.message_type in (MessageType.CALLRESULT, MessageType.CALLERROR)
        if is_reply and outstanding is not None and exc.frame_id == outstanding.message_id:
            # A broken reply that names our CALL: fail it now rather than at the timeout.
            self._fail(outstanding, exc, result)
            if exc.reply is Reply.CALLRESULTERROR:
                self._emit_error(exc.reply_frame(), result)
            return
        if exc.reply is Reply.CALLERROR:
            if exc.message_id in self._awaiting:
                # answering would give the peer two answers for one id
                self._drop(f"{exc}; and its id is that of a CALL still pending", data, result, exc)
                return
            self._counts.calls_rejected += 1
            result.events.append(CallRejected(exc.message_id, None, exc))
            self._emit_error(exc.reply_frame(), result)
            return
        if exc.reply is Reply.CALLRESULTERROR:
            self._drop(f"{exc} (not our outstanding CALL's id)", data, result, exc)
            return
        self._drop(str(exc), data, result, exc)

    def _on_call(self, frame: Call, data: str | bytes, result: Received) -> None:
        message_id, action = frame.message_id, frame.action
        if message_id in self._awaiting:
            self._drop(
                f"CALL {action!r} reuses the id of a CALL still awaiting our answer",
                data,
                result,
                message_id=message_id,
            )
            return
        if action not in self._peer_calls:
            self._reject(message_id, action, self._not_a_call(action), result)
            return
        try:
            request = messages.decode_request(self.version, action, frame.payload)
        except MessageValidationError as exc:
            self._reject(message_id, action, exc, result)
            return
        except Exception as exc:  # a bug of ours must not take the connection down
            _log.exception("decoding a %s request raised unexpectedly", action)
            reject = RemoteProtocolError(
                ErrorCode.INTERNAL_ERROR, f"could not decode {action}: {type(exc).__name__}"
            )
            self._reject(message_id, action, reject, result)
            return
        if not isinstance(request, Request):  # pragma: no cover - the registry guarantees it
            reject = RemoteProtocolError(ErrorCode.INTERNAL_ERROR, f"{action} is not a request")
            self._reject(message_id, action, reject, result)
            return
        self._awaiting[message_id] = action
        self._counts.calls_received += 1
        result.events.append(IncomingCall(message_id, action, request, frame.payload))

    def _not_a_call(self, action: str) -> RemoteProtocolError:
        """Why a CALL of ``action`` is refused: unknown, SEND-only, or not the peer's to send."""
        spec = self._actions.get(action)
        if spec is None:
            return RemoteProtocolError(
                ErrorCode.NOT_IMPLEMENTED,
                f"unknown action {_short(action)} in OCPP {self.version.value}",
            )
        if spec.is_send:
            return RemoteProtocolError(
                ErrorCode.NOT_SUPPORTED, f"{action} is a SEND-only message, not a CALL"
            )
        peer = "CSMS" if self.role is Role.STATION else "station"
        return RemoteProtocolError(
            ErrorCode.NOT_SUPPORTED, f"a {peer} does not send {action} (only receives it)"
        )

    def _on_send(self, frame: SendFrame, data: str | bytes, result: Received) -> None:
        action = frame.action
        spec = self._actions.get(action)
        why: str | None = None
        message: object = None
        if spec is None:
            why = f"SEND with unknown action {_short(action)}"
        elif not spec.is_send:
            why = f"SEND of {action}, which is not a SEND message"
        elif not self._peer_may_send(spec):
            why = f"SEND of {action}, which the peer's role does not send"
        else:
            try:
                message = messages.decode_request(self.version, action, frame.payload)
            except MessageValidationError as exc:
                why = f"invalid SEND {action}: {exc.wire_code}: {exc.description}"
            except Exception as exc:  # a bug of ours must not take the connection down
                _log.exception("decoding a %s SEND raised unexpectedly", action)
                why = f"could not decode SEND {action}: {type(exc).__name__}"
        if why is not None or not isinstance(message, Send):
            why = why or f"{action} is not a SEND message"
            self._drop(why, data, result, message_id=frame.message_id)
            return
        self._counts.sends_received += 1
        result.events.append(IncomingSend(frame.message_id, action, message))

    def _on_result(self, frame: CallResult, data: str | bytes, result: Received) -> None:
        outstanding = self._match_reply("CALLRESULT", frame.message_id, data, result)
        if outstanding is None:
            return
        if not outstanding.validate:
            self._outstanding = None
            self._counts.calls_completed += 1
            result.events.append(
                RawCallCompleted(outstanding.message_id, outstanding.action, frame.payload)
            )
            return
        try:
            response = messages.decode_response(self.version, outstanding.action, frame.payload)
        except MessageValidationError as exc:
            self._fail(outstanding, exc, result)
            self._callresulterror(outstanding.message_id, exc, result)
            return
        except Exception as exc:  # a bug of ours must not take the connection down
            _log.exception("decoding a %s response raised unexpectedly", outstanding.action)
            error = RemoteProtocolError(
                ErrorCode.INTERNAL_ERROR,
                f"could not decode {outstanding.action} response: {type(exc).__name__}",
            )
            error.__cause__ = exc
            self._fail(outstanding, error, result)
            self._callresulterror(outstanding.message_id, error, result)
            return
        self._outstanding = None
        self._counts.calls_completed += 1
        result.events.append(
            CallCompleted(outstanding.message_id, outstanding.action, response, frame.payload)
        )

    def _on_error(self, frame: CallErrorFrame, data: str | bytes, result: Received) -> None:
        outstanding = self._match_reply("CALLERROR", frame.message_id, data, result)
        if outstanding is None:
            return
        code = ErrorCode.parse(frame.error_code) or frame.error_code
        self._fail(outstanding, CallError(code, frame.description, frame.details), result)

    def _on_callresulterror(self, frame: CallResultErrorFrame, result: Received) -> None:
        self._counts.callresulterrors_received += 1
        result.events.append(
            CallResultErrorReceived(
                frame.message_id,
                self._answered.get(frame.message_id),
                ErrorCode.parse(frame.error_code) or frame.error_code,
                frame.description,
                frame.details,
            )
        )

    def _match_reply(
        self, kind: str, message_id: str, data: str | bytes, result: Received
    ) -> OutstandingCall | None:
        outstanding = self._outstanding
        if outstanding is not None and message_id == outstanding.message_id:
            return outstanding
        if message_id in self._abandoned:
            why = f"late {kind} for abandoned CALL {self._abandoned[message_id]}"
        elif kind == "CALLERROR" and message_id == "-1":
            why = "CALLERROR with id '-1': the peer could not read one of our frames"
        elif outstanding is None:
            why = f"{kind} with unknown id: no CALL of ours is outstanding"
        else:
            why = f"{kind} with unknown id (outstanding: {outstanding.message_id})"
        self._drop(why, data, result, message_id=message_id)
        return None

    def _peer_may_send(self, spec: ActionSpec) -> bool:
        if self.role is Role.CSMS:
            return spec.direction.sent_by_station()
        return spec.direction.sent_by_csms()

    def _we_may_send(self, spec: ActionSpec) -> bool:
        if self.role is Role.CSMS:
            return spec.direction.sent_by_csms()
        return spec.direction.sent_by_station()

    # --- outcomes --------------------------------------------------------------------------

    def _fail(
        self, outstanding: OutstandingCall, error: CallError | RemoteProtocolError, result: Received
    ) -> None:
        self._outstanding = None
        self._counts.calls_failed += 1
        result.events.append(CallFailed(outstanding.message_id, outstanding.action, error))

    def _reject(
        self, message_id: str, action: str, error: RemoteProtocolError, result: Received
    ) -> None:
        self._counts.calls_rejected += 1
        result.events.append(CallRejected(message_id, action, error))
        frame = CallErrorFrame(
            message_id,
            error.code.wire(self.version),
            self._describe(error.description),
            dict(error.details),
        )
        self._emit_error(frame, result)

    def _callresulterror(
        self, message_id: str, error: RemoteProtocolError, result: Received
    ) -> None:
        if self.version is not Version.V21:
            return  # before 2.1 nothing can answer a response: the caller's error is all
        frame = CallResultErrorFrame(
            message_id,
            error.code.wire(self.version),
            self._describe(error.description),
            dict(error.details),
        )
        self._emit_error(frame, result)

    def _emit_error(
        self, frame: CallErrorFrame | CallResultErrorFrame | None, result: Received
    ) -> None:
        if frame is None:  # pragma: no cover - callers only pass answerable faults
            return
        try:
            text = dump_frame(frame)
        except LocalProtocolError:
            # Details we could not serialise: the code and description still help the peer.
            text = dump_frame(attrs.evolve(frame, details={}))
        self._counts.errors_sent += 1
        self._counts.frames_sent += 1
        result.outgoing.append(text)

    def _drop(
        self,
        reason: str,
        data: str | bytes,
        result: Received,
        error: FrameError | None = None,
        message_id: str | None = None,
    ) -> None:
        if message_id is None and error is not None:
            message_id = error.frame_id
        self._counts.dropped += 1
        result.events.append(Dropped(reason, _excerpt(data), message_id))

    def _describe(self, text: str) -> str:
        return text if self.version is Version.V16 else limit_description(text)

    # --- sending ---------------------------------------------------------------------------

    def start_call(self, request: Request[Any]) -> tuple[str, str]:
        """Make the CALL frame for ``request`` and take the outstanding-CALL slot.

        Returns:
            ``(message_id, text)``: the id to wait for and the frame to send. The slot is held
            until the reply arrives (see :meth:`receive`) or :meth:`abandon_call` frees it.

        Raises:
            LocalProtocolError: a CALL is already outstanding (the message names it); the
                request is of another OCPP version, not a CALL request, or one our role may not
                send; or ``validate_outbound`` is set and the request breaks its schema (a bug
                on our side; the :class:`MessageValidationError` is the ``__cause__``). Nothing
                changes.
        """
        if isinstance(request, Send) or not isinstance(request, Request):
            hint = " (use send())" if isinstance(request, Send) else ""
            raise LocalProtocolError(f"{type(request).__name__} is not a CALL request{hint}")
        spec = self._own_spec(request, "CALL")
        self._check_slot(spec.action)
        payload = messages.encode(request, validate=self.validate_outbound)
        return self._take_slot(spec.action, payload, validate=True)

    def start_raw_call(
        self, action: str, payload: Mapping[str, Any], *, validate: bool = True
    ) -> tuple[str, str, Request[Any] | None]:
        """Make the CALL frame of ``action`` with ``payload`` sent exactly as given (an
        untyped CALL), and take the outstanding-CALL slot.

        With ``validate``, ``action`` must be one of this version's that our role may send and
        ``payload`` must pass its request schema; the answer is then checked against the
        response schema and arrives as a :class:`CallCompleted` (with its ``payload``).
        Without, any action name is allowed except a known one our role may not send, nothing
        is checked, and the answer arrives as a :class:`RawCallCompleted`.

        Returns:
            ``(message_id, text, request)``: as :meth:`start_call`, and the typed request the
            payload decodes to (``None`` without validation).

        Raises:
            LocalProtocolError: a CALL is already outstanding; the action is unknown (with
                ``validate``), a SEND, or one our role may not send; the payload fails its
                schema (with ``validate``; the :class:`MessageValidationError` is the
                ``__cause__``) or holds something JSON cannot express.  Nothing changes.
        """
        spec = self._actions.get(action)
        if spec is None and validate:
            raise LocalProtocolError(
                f"{action!r} is not an OCPP {self.version.value} action "
                "(an unknown action can only be sent without validation)"
            )
        if spec is not None and (spec.is_send or not self._we_may_send(spec)):
            raise LocalProtocolError(
                f"a {self.role.value} may not send {action} as a CALL ({spec.direction.value})"
            )
        self._check_slot(action)
        request: Request[Any] | None = None
        if validate:
            try:
                decoded = messages.decode_request(self.version, action, dict(payload))
            except MessageValidationError as exc:
                raise LocalProtocolError(f"invalid {action} request: {exc}") from exc
            assert isinstance(decoded, Request)
            request = decoded
        message_id, text = self._take_slot(action, dict(payload), validate=validate)
        return message_id, text, request

    def _check_slot(self, action: str) -> None:
        if self._outstanding is not None:
            raise LocalProtocolError(
                f"cannot send {action}: CALL {self._outstanding.message_id} "
                f"({self._outstanding.action}) is still outstanding"
            )

    def _take_slot(
        self, action: str, payload: dict[str, Any], *, validate: bool
    ) -> tuple[str, str]:
        message_id = self._new_id()
        text = dump_frame(Call(message_id, action, payload))
        self._remember(self._recent_ids, message_id, None)
        self._outstanding = OutstandingCall(message_id, action, validate)
        self._counts.calls_sent += 1
        self._counts.frames_sent += 1
        return message_id, text

    def send(self, message: Send) -> str:
        """Make the frame for a 2.1 SEND (unconfirmed; exempt from the outstanding-CALL slot).

        Raises:
            LocalProtocolError: the connection is not 2.1; the message is not a SEND message
                of this version our role may send; or ``validate_outbound`` is set and the
                message breaks its schema (the :class:`MessageValidationError` is the
                ``__cause__``).
        """
        if self.version is not Version.V21:
            raise LocalProtocolError(f"SEND frames do not exist in OCPP {self.version.value}")
        if not isinstance(message, Send):
            raise LocalProtocolError(f"{type(message).__name__} is not a SEND message")
        spec = self._own_spec(message, "SEND")
        payload = messages.encode(message, validate=self.validate_outbound)
        message_id = self._new_id()
        text = dump_frame(SendFrame(message_id, spec.action, payload))
        self._remember(self._recent_ids, message_id, None)
        self._counts.sends_sent += 1
        self._counts.frames_sent += 1
        return text

    def answer(self, message_id: str, response: Response) -> str:
        """Make the CALLRESULT that answers the peer's CALL ``message_id``.

        Raises:
            LocalProtocolError: no CALL with that id awaits an answer; ``response`` is not the
                response type of that CALL's action; or ``validate_outbound`` is set and
                ``response`` breaks its schema (a bug on our side; the
                :class:`MessageValidationError` is the ``__cause__``). The CALL stays pending,
                so the runtime can still answer it with ``InternalError``.
        """
        action = self._pending_action(message_id)
        spec = self._actions[action]
        if spec.response is None or not isinstance(response, spec.response):
            expected = spec.response.__name__ if spec.response else "nothing"
            raise LocalProtocolError(
                f"the answer to {action} must be a {expected} of OCPP {self.version.value}, "
                f"not {type(response).__name__}"
            )
        payload = messages.encode(response, validate=self.validate_outbound)
        text = dump_call_result(message_id, payload)
        self._answered_now(message_id)
        self._counts.results_sent += 1
        self._counts.frames_sent += 1
        return text

    def answer_error(
        self,
        message_id: str,
        code: ErrorCode | str,
        description: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> str:
        """Make the CALLERROR that answers the peer's CALL ``message_id``.

        Args:
            message_id: the id of a CALL that awaits our answer.
            code: an :class:`ErrorCode`, or an OCPP code in any version's spelling; it is
                written as this version spells it.
            description: for humans; cut to 255 characters on 2.x.
            details: a JSON object with more detail (``{}`` when omitted).

        Raises:
            LocalProtocolError: no CALL with that id awaits an answer, ``code`` is not an OCPP
                error code, or ``details`` cannot be written as JSON. The CALL stays pending.
        """
        self._pending_action(message_id)
        parsed = ErrorCode.parse(code) if isinstance(code, str) else code
        if parsed is None:
            raise LocalProtocolError(f"{code!r} is not an OCPP error code")
        frame = CallErrorFrame(
            message_id,
            parsed.wire(self.version),
            self._describe(description),
            dict(details or {}),
        )
        text = dump_frame(frame)
        self._answered_now(message_id)
        self._counts.errors_sent += 1
        self._counts.frames_sent += 1
        return text

    def abandon_call(self, message_id: str) -> bool:
        """Give up on our outstanding CALL (timeout or cancellation) and free the slot.

        A reply that arrives later is dropped. Calling it for an id that is not outstanding
        (already answered, already abandoned) does nothing, so it is safe in a ``finally``.

        Returns:
            Whether the CALL was outstanding.
        """
        outstanding = self._outstanding
        if outstanding is None or outstanding.message_id != message_id:
            return False
        self._outstanding = None
        self._remember(self._abandoned, message_id, outstanding.action)
        self._counts.calls_abandoned += 1
        return True

    def _own_spec(self, message: Request[Any] | Send, kind: str) -> ActionSpec:
        version = getattr(message, "VERSION", None)
        if version is not self.version:
            raise LocalProtocolError(
                f"{type(message).__name__} is an OCPP {version} message; "
                f"this connection speaks {self.version.value}"
            )
        spec = self._actions.get(message.ACTION)
        if spec is None or spec.is_send != (kind == "SEND"):
            raise LocalProtocolError(f"{message.ACTION} cannot be sent as a {kind}")
        if not self._we_may_send(spec):
            raise LocalProtocolError(
                f"a {self.role.value} may not send {spec.action} ({spec.direction.value})"
            )
        return spec

    def _new_id(self) -> str:
        message_id = self._id_factory()
        if not is_valid_message_id(message_id):
            raise LocalProtocolError(
                f"id_factory returned {message_id!r}, not a string of 1 to 36 characters"
            )
        if message_id in self._recent_ids:
            raise LocalProtocolError(f"id_factory returned {message_id!r} again")
        return message_id

    def _pending_action(self, message_id: str) -> str:
        action = self._awaiting.get(message_id)
        if action is None:
            already = " (already answered)" if message_id in self._answered else ""
            raise LocalProtocolError(f"no CALL {message_id!r} awaits an answer{already}")
        return action

    def _answered_now(self, message_id: str) -> None:
        action = self._awaiting.pop(message_id)
        self._remember(self._answered, message_id, action)

    @staticmethod
    def _remember(memory: OrderedDict[str, _V], key: str, value: _V) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > _MEMORY:
            memory.popitem(last=False)


def _short(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _excerpt(data: str | bytes) -> str:
    if isinstance(data, str):
        text = data[: _EXCERPT + 1]
    else:
        text = bytes(data[: 4 * (_EXCERPT + 1)]).decode("utf-8", "replace")[: _EXCERPT + 1]
    if len(text) > _EXCERPT:
        text = text[:_EXCERPT] + "..."
    # lone surrogates (possible in str input) would break a UTF-8 log handler
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
