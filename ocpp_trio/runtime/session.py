"""One OCPP-J RPC session over a transport: the engine both sides run per connection.

The CSMS's :class:`~ocpp_trio.Station` and the station side's :class:`~ocpp_trio.ChargePoint`
each hold one :class:`RpcSession` per connection and plug their rules into it through a
:class:`SessionHooks` object (composition: the session knows nothing of registration states,
machines or boot loops; the hooks' defaults do nothing, so a side overrides only its rules).
In the session's nursery:

* the **reader** (the task that runs :meth:`RpcSession.run`): reads frames, feeds the sans-IO
  :class:`~ocpp_trio.protocol.rpc.RpcConnection`, sends at once what it answers by itself, asks
  the hooks about every incoming CALL (:meth:`SessionHooks.screen_call`: a refusal or a
  built-in answer is sent from here), hands replies to the waiting :meth:`RpcSession.call`, and
  puts the other CALLs on a bounded channel.  It never runs user code.  When the channel is
  full the CALL is answered ``GenericError``: blocking the reader would also delay the replies
  a handler may be waiting for.  With a message rate, a peer over it makes the reader pause
  before its next read (a token bucket): the peer is slowed down, nothing is refused.
* the **handler runner**, fed by that channel, one CALL at a time and in order: runs the
  router's handler with the peer (so a handler may ``await peer.call(...)``) and sends its
  answer.  Outcomes: a response of the request's ``RESPONSE`` class is sent; a raised
  :class:`~ocpp_trio.CallError` is sent as that CALLERROR; a wrong return type is answered
  ``InternalError`` naming the handler; a response of ours that fails its schema is answered
  ``InternalError`` and logged as our bug; any other exception is answered ``InternalError``
  (or, for the actions in :attr:`SessionHooks.must_answer`, by the side's default answer) and
  logged with its traceback.  The session lives on.
* whatever the owner starts in it (machines, extra handlers, the registration task).

:meth:`RpcSession.call` is typed by the request (``Request[R] -> R``): one CALL is outstanding
per connection (callers queue in order on a lock), ``call_timeout`` through ``trio.fail_after``
becomes :class:`~ocpp_trio.CallTimeoutError`, a CALLERROR :class:`~ocpp_trio.CallError`, a
dropped connection :class:`~ocpp_trio.ConnectionLostError`; the slot is freed in ``finally``
and a late reply is dropped.  :meth:`RpcSession.send` sends a 2.1 SEND (no slot, no answer).

The per-CALL path adds no task switch, cancel scope or allocation of its own beyond the
handler runner's channel hand-over: the hooks are plain method calls.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any, Final, Generic, TypeVar, cast

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    OCPPError,
    RemoteProtocolError,
)
from ocpp_trio.messages._base import Request, Response, Send
from ocpp_trio.protocol.rpc import (
    CallCompleted,
    CallFailed,
    CallRejected,
    CallResultErrorReceived,
    Dropped,
    IncomingCall,
    IncomingSend,
    RawCallCompleted,
    RpcConnection,
)
from ocpp_trio.runtime.router import AnyHandler, RouterBase, handler_name
from ocpp_trio.transport.base import Transport

__all__ = ["RpcSession", "SessionCounts", "SessionHooks"]

R = TypeVar("R", bound=Response)
PeerT = TypeVar("PeerT")

_INTERNAL_ERROR: Final = "internal error"


def _internal_error() -> CallError:
    return CallError(ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR)


@attrs.define
class SessionCounts:
    """The counters a session keeps (an owner may subclass it to add its own, and hand the
    same object to the session of every connection to count across them)."""

    calls_received: int = 0
    #: CALLs answered without the handler: refused, malformed, or beyond the queue
    calls_refused: int = 0
    #: CALLs the handler answered (CALLRESULT or a chosen CALLERROR)
    calls_handled: int = 0
    handler_errors: int = 0
    calls_sent: int = 0
    calls_answered: int = 0
    calls_timed_out: int = 0
    #: our CALLs answered with a CALLERROR or a broken answer
    calls_failed: int = 0
    #: our CALLs that raised, for whatever reason (after being sent)
    call_errors: int = 0
    #: times the reader paused because the peer sent faster than the message rate allows
    throttled: int = 0
    #: seconds the reader spent in those pauses
    throttled_seconds: float = 0.0


class SessionHooks:
    """What a side plugs into :class:`RpcSession`: each method is called by the session; these
    defaults do nothing (a side overrides what it needs)."""

    #: actions whose handler failure is answered by :meth:`default_answer` if it can
    must_answer: Container[str] = frozenset()

    def screen_call(
        self, event: IncomingCall, now: float
    ) -> tuple[Response | None, CallError | None] | None:
        """In the reader, before a CALL is queued: ``None`` queues it for the handler; a pair
        ``(response, error)`` is the answer the reader sends at once instead."""
        return None

    def screen_send(self, event: IncomingSend) -> bool:
        """In the reader: whether a SEND is queued for :meth:`handle_send` (else dropped)."""
        return False

    async def handle_send(self, event: IncomingSend) -> None:
        """In the handler runner: run the SEND's handler (exceptions are the hook's)."""

    async def default_answer(self, request: Request[Any]) -> Response | None:
        """The side's built-in answer when the router has none (``None``: not supported)."""
        return None

    def unsupported(self, event: IncomingCall) -> CallError:
        """The error for a CALL nobody answers."""
        return CallError(ErrorCode.NOT_SUPPORTED, f"{event.action} is not supported here")

    async def before_answer(
        self, event: IncomingCall, response: Response | None, handled: bool
    ) -> None:
        """Between encoding an answer and sending it (``handled``: the handler runner's, not
        the reader's); raising ``ConnectionLostError`` sends nothing and ends the session."""

    async def after_answer(
        self,
        event: IncomingCall,
        response: Response | None,
        error: CallError | None,
        started: float,
        handled: bool,
    ) -> None:
        """Once the answer is sent."""

    def check_call(self, request: Request[Any]) -> object:
        """Inside the call lock, before our CALL is sent: raise to refuse it; the return value
        (a ticket) is handed back to :meth:`reply_received` and :meth:`call_answered`."""
        return None

    def check_raw_call(self, action: str, payload: Mapping[str, Any]) -> object:
        """As :meth:`check_call`, for a raw CALL sent without validation (no typed request)."""
        return None

    async def reply_received(self, ticket: object, event: CallCompleted) -> None:
        """In the reader, before the caller wakes: the peer answered our CALL."""

    def call_answered(self, ticket: object, response: Response) -> None:
        """In the reader, right after :meth:`reply_received`, if the caller still waits."""

    def call_done(
        self,
        message_id: str,
        request: Request[Any],
        response: Response | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        """In the caller, once our CALL is over (answered, failed, timed out)."""

    def raw_call_done(
        self,
        message_id: str,
        action: str,
        payload: Mapping[str, Any],
        answer: Mapping[str, Any] | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        """As :meth:`call_done`, for a raw CALL sent without validation."""

    def call_rejected(self, event: CallRejected) -> None:
        """In the reader: the RPC layer answered a broken or unknown CALL itself."""

    def throttled(self, seconds: float) -> None:
        """The reader pauses ``seconds`` before reading on: the peer is over the message
        rate."""

    def idle(self, seconds: float) -> None:
        """The reader saw no frame for ``seconds`` and ends the session."""


@attrs.define(eq=False)
class _Waiter:
    message_id: str
    ticket: object
    done: trio.Event = attrs.Factory(trio.Event)
    response: Response | None = None
    #: the answer's JSON object, for raw CALLs
    payload: dict[str, Any] | None = None
    error: OCPPError | None = None
    started: float = 0.0


#: what the reader hands the handler runner: the CALL (or SEND) and when it arrived
_Work = tuple[IncomingCall | IncomingSend, float]


class RpcSession(Generic[PeerT]):
    """One connection's RPC engine (see the module docs).

    Args:
        peer: what handlers receive as their first argument (the Station, the ChargePoint).
        transport: the connection (the owner closes it).
        rpc: the connection's sans-IO RPC state.
        router: the handlers.
        hooks: the side's rules.
        counts: where the counters go.
        who: how logs and errors name our end (``"station 'CS1'"``).
        peer_name: how errors name the other end (``"the CSMS"``).
        call_timeout: the default timeout of :meth:`call`.
        queue_size: CALLs that may wait for the handler runner.
        idle_timeout: seconds without a frame after which the reader ends (``None``: never).
        message_rate: frames per second the peer may send, sustained (``None``: any).  Over
            it the reader pauses before reading the next frame, so the peer's own sends
            back up (TCP flow control): nothing is lost or refused, the peer is slowed down.
        message_burst: frames the peer may send at once above ``message_rate`` (the size of
            the token bucket).
        logger: where to log.
    """

    def __init__(
        self,
        peer: PeerT,
        transport: Transport,
        rpc: RpcConnection,
        router: RouterBase[PeerT],
        hooks: SessionHooks,
        counts: SessionCounts,
        *,
        who: str,
        peer_name: str,
        call_timeout: float,
        queue_size: int,
        idle_timeout: float | None = None,
        message_rate: float | None = None,
        message_burst: int = 1,
        logger: logging.Logger,
    ) -> None:
        if message_rate is not None and not 0 < message_rate < math.inf:
            raise ValueError(f"message_rate must be > 0 and finite, or None, not {message_rate}")
        if message_burst < 1:
            raise ValueError(f"message_burst must be >= 1, not {message_burst}")
        self.peer = peer
        self.transport: Final = transport
        self.rpc: Final = rpc
        self.router = router
        self.hooks: Final = hooks
        self.counts: Final = counts
        self.who = who
        self.peer_name = peer_name
        self.call_timeout = call_timeout
        self.queue_size = queue_size
        self.idle_timeout = idle_timeout
        self.message_rate = message_rate
        self.message_burst = message_burst
        self.log = logger
        #: whether :meth:`call` may send (set by the owner; :meth:`disconnect` clears it)
        self.connected = False
        #: trio time of the last frame received (wall-clock time: :attr:`last_seen_at`)
        self.last_seen: float | None = None
        self._last_seen_wall: float | None = None  # time.time(): a datetime only when asked
        self._call_lock: trio.Lock | None = None  # made by the first call(): idle is small
        self._waiter: _Waiter | None = None
        self._nursery: trio.Nursery | None = None
        self._in_handler = False
        self._deferred: list[Callable[[], None]] = []
        self._after: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []
        self._calls: trio.MemorySendChannel[_Work] | None = None
        # the message-rate token bucket: tokens left when last counted, and when
        self._tokens = 0.0
        self._bucket_at: float | None = None
        self._throttle_logged = False

    # -- running -------------------------------------------------------------------------

    async def run(self, start: Callable[[trio.Nursery], Awaitable[None]]) -> None:
        """Serve the connection until the peer closes it, :meth:`cancel` is called, or the
        reader ends (idle timeout).

        ``await start(nursery)`` runs first, in the session's nursery, to start the owner's
        own tasks there (and report that the session runs).
        Waits for: the connection to end.  Cancellation: ends the session.  Closes: the
        session's channel and tasks, not the transport.
        """
        send, receive = trio.open_memory_channel[_Work](self.queue_size)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._calls = send
            try:
                nursery.start_soon(self._run_handlers, receive)
                await start(nursery)
                async with send:
                    await self._read_loop(send)
                nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                self._calls = None

    @property
    def last_seen_at(self) -> datetime.datetime | None:
        """When (UTC) the last frame was received, ``None`` before the first."""
        wall = self._last_seen_wall
        return None if wall is None else datetime.datetime.fromtimestamp(wall, datetime.UTC)

    def cancel(self) -> None:
        """End the session (its nursery is cancelled); no effect when it is not running."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def nursery(self) -> trio.Nursery | None:
        """The session's nursery while it runs."""
        return self._nursery

    def disconnect(self, why: str) -> None:
        """No more calls: the waiting :meth:`call` (if any) fails with
        ``ConnectionLostError(why)``."""
        self.connected = False
        waiter = self._waiter
        if waiter is not None and not waiter.done.is_set():
            waiter.error = ConnectionLostError(why)
            waiter.done.set()

    @property
    def queued_calls(self) -> int:
        """The peer's CALLs waiting for the handler runner now (not the one it runs)."""
        calls = self._calls
        return calls.statistics().current_buffer_used if calls is not None else 0

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the answer of the handler now running has been sent (at once
        when no handler runs)."""
        if self._in_handler:
            self._deferred.append(action)
        else:
            action()

    def start_after_answer(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """From a handler: start ``async_fn(*args)`` as a task of the session once the
        handler's own response is on the wire (see :meth:`~ocpp_trio.Station.after_answer`).

        Raises:
            RuntimeError: no handler is running.
        """
        if not self._in_handler:
            raise RuntimeError("after_answer() schedules work from a handler, while it runs")
        self._after.append((async_fn, args))

    async def _run_after(
        self, action: str, async_fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        try:
            await async_fn(*args)
        except OCPPError as exc:  # the peer's doing (an error answer, a timeout, a drop)
            self.log.warning(
                "%s: the work scheduled after answering %s failed: %s: %s",
                self.who,
                action,
                type(exc).__name__,
                exc,
            )
        except Exception:
            self.log.exception(
                "%s: the work scheduled after answering %s (%s) failed",
                self.who,
                action,
                _name_of(async_fn),
            )

    # -- the reader ----------------------------------------------------------------------

    async def _read_loop(self, calls: trio.MemorySendChannel[_Work]) -> None:
        idle_timeout = self.idle_timeout
        get_message = self.transport.get_message
        try:
            while True:
                if not idle_timeout:
                    data = await get_message()
                else:
                    with trio.CancelScope(deadline=trio.current_time() + idle_timeout) as idle:
                        data = await get_message()
                    if idle.cancelled_caught:
                        self.log.warning("%s: no frame for %s s; closing", self.who, idle_timeout)
                        self.hooks.idle(idle_timeout)
                        return
                self.last_seen = now = trio.current_time()
                self._last_seen_wall = time.time()
                # in a function of its own: an idle session keeps nothing of its last frame
                await self._on_frame(data, calls, now)
                del data
                if self.message_rate is not None:
                    await self._take_token(now)
        except ConnectionLostError:
            return

    async def _take_token(self, now: float) -> None:
        """Count one frame received at ``now`` against the message rate (a token bucket of
        ``message_burst`` tokens, ``message_rate`` a second); with none left, pause until
        one is back.  The frame itself has been handled: only the next read waits."""
        rate = self.message_rate
        assert rate is not None
        last = self._bucket_at
        tokens = self.message_burst if last is None else self._tokens + (now - last) * rate
        tokens = min(tokens, self.message_burst) - 1
        self._bucket_at = now
        if tokens < 0:
            pause = -tokens / rate
            self.counts.throttled += 1
            self.counts.throttled_seconds += pause
            self.hooks.throttled(pause)
            self.log.log(
                logging.DEBUG if self._throttle_logged else logging.WARNING,
                "%s: more than %s frames/s (burst %d); reading paused %.3f s",
                self.who,
                rate,
                self.message_burst,
                pause,
            )
            self._throttle_logged = True
            await trio.sleep(pause)
            tokens = 0.0
            self._bucket_at = trio.current_time()
        self._tokens = tokens

    async def _on_frame(
        self, data: str | bytes, calls: trio.MemorySendChannel[_Work], now: float
    ) -> None:
        received = self.rpc.receive(data)
        for text in received.outgoing:
            await self.transport.send_message(text)
        for event in received.events:
            if isinstance(event, IncomingCall):
                await self._on_call(event, calls, now)
            elif isinstance(event, CallCompleted | CallFailed | RawCallCompleted):
                await self._on_reply(event)
            elif isinstance(event, IncomingSend):
                self._on_send(event, calls, now)
            else:
                self._log_event(event)

    def _log_event(self, event: CallRejected | CallResultErrorReceived | Dropped) -> None:
        log, who = self.log, self.who
        if isinstance(event, CallRejected):  # the RPC core answered it already
            self.counts.calls_refused += 1
            self.hooks.call_rejected(event)
            code = event.error.code.wire(self.rpc.version)
            log.warning("%s: CALL %s answered %s: %s", who, event.action, code, event.error)
        elif isinstance(event, CallResultErrorReceived):
            log.warning("%s: our answer to %s was refused: %s", who, event.action, event)
        else:
            log.info("%s: dropped a frame: %s", who, event.reason)

    async def _on_call(
        self, event: IncomingCall, calls: trio.MemorySendChannel[_Work], now: float
    ) -> None:
        self.counts.calls_received += 1
        answer = self.hooks.screen_call(event, now)
        if answer is not None:
            await self.reply(event, answer[0], answer[1], now)
            return
        try:
            calls.send_nowait((event, now))
        except trio.WouldBlock:
            self.counts.calls_refused += 1
            self.log.warning(
                "%s: %s while %d CALLs await their answers; answered GenericError",
                self.who,
                event.action,
                self.queue_size,
            )
            busy = CallError(
                ErrorCode.GENERIC_ERROR, "too many CALLs awaiting an answer; send one at a time"
            )
            await self.reply(event, None, busy, now)

    def _on_send(
        self, event: IncomingSend, calls: trio.MemorySendChannel[_Work], now: float
    ) -> None:
        if not self.hooks.screen_send(event):
            return
        try:
            calls.send_nowait((event, now))
        except trio.WouldBlock:
            self.log.warning("%s: SEND %s dropped: handler queue full", self.who, event.action)

    async def _on_reply(self, event: CallCompleted | CallFailed | RawCallCompleted) -> None:
        waiter = self._waiter
        if waiter is None or waiter.message_id != event.message_id or waiter.done.is_set():
            self.log.info("%s: reply to %s with nobody waiting", self.who, event.action)
            return
        if isinstance(event, CallCompleted):
            # before the caller wakes: helpers may wait for the effects, and a triggered
            # message is never seen before its trigger's answer
            await self.hooks.reply_received(waiter.ticket, event)
            if self._waiter is not waiter or waiter.done.is_set():
                return  # abandoned meanwhile
            self.hooks.call_answered(waiter.ticket, event.response)
            waiter.response = event.response
            waiter.payload = event.payload
        elif isinstance(event, RawCallCompleted):
            waiter.payload = event.payload
        else:
            waiter.error = event.error
        waiter.done.set()

    # -- answering -----------------------------------------------------------------------

    def _encode_answer(
        self, event: IncomingCall, response: Response | None, error: CallError | None
    ) -> tuple[str, Response | None, CallError | None]:
        """The frame answering ``event``: ``response``, else ``error``; our invalid response
        becomes ``InternalError`` (our bug, logged), an error code the version cannot send
        ``GenericError``."""
        rpc = self.rpc
        if response is not None:
            try:
                return rpc.answer(event.message_id, response), response, None
            except Exception:  # invalid (LocalProtocolError) or unencodable: a bug of ours
                self.counts.handler_errors += 1
                self.log.exception(
                    "%s: BUG (ours): the answer to %s is invalid and was not sent; "
                    "InternalError sent instead",
                    self.who,
                    event.action,
                )
                error = _internal_error()
        if error is None:  # pragma: no cover - callers pass one of the two
            error = _internal_error()
        try:
            text = rpc.answer_error(event.message_id, error.code, error.description, error.details)
        except LocalProtocolError:
            self.log.exception("%s: cannot send %s; GenericError instead", self.who, error)
            error = CallError(ErrorCode.GENERIC_ERROR, error.description[:255])
            text = rpc.answer_error(event.message_id, ErrorCode.GENERIC_ERROR, error.description)
        return text, None, error

    async def reply(
        self,
        event: IncomingCall,
        response: Response | None,
        error: CallError | None,
        started: float,
        *,
        handled: bool = False,
    ) -> bool:
        """Answer the peer's CALL (``response``, else ``error``) with the hooks around it;
        returns whether ``response`` went out (not an error in its place)."""
        text, response, error = self._encode_answer(event, response, error)
        await self.hooks.before_answer(event, response, handled)
        await self.transport.send_message(text)
        await self.hooks.after_answer(event, response, error, started, handled)
        return response is not None

    # -- the handler runner --------------------------------------------------------------

    async def _run_handlers(self, receive: trio.MemoryReceiveChannel[_Work]) -> None:
        async with receive:
            async for call, received in receive:
                try:
                    if isinstance(call, IncomingSend):
                        await self.hooks.handle_send(call)
                    else:
                        await self._handle_call(call, received)
                except ConnectionLostError:
                    # we can no longer answer; end the session rather than let the reader
                    # queue CALLs nobody will take
                    self.cancel()
                    return
                finally:
                    if self._deferred:
                        deferred, self._deferred = self._deferred, []
                        for action in deferred:
                            action()
                del call  # an idle session keeps nothing of its last CALL

    async def _handle_call(self, event: IncomingCall, received: float) -> None:
        request = event.request
        handler = self.router.handler_for(type(request))
        response: Response | None = None
        error: CallError | None = None
        own = False  # the response is the handler's (not a rescue in its place)
        self._in_handler = True
        try:
            result = await self._invoke(event, handler)
            expected = type(request).RESPONSE
            if isinstance(result, expected):
                response = result
                own = True
                self.counts.calls_handled += 1
            else:
                self.counts.handler_errors += 1
                self.log.error(
                    "%s: handler %s returned %s for %s, not a %s; answered InternalError",
                    self.who,
                    _name_of(handler),
                    type(result).__name__,
                    event.action,
                    expected.__name__,
                )
                error = _internal_error()
        except CallError as exc:
            self.counts.calls_handled += 1
            error = exc
        except Exception:
            self.counts.handler_errors += 1
            rescue = event.action in self.hooks.must_answer
            self.log.exception(
                "%s: handler %s raised on %s; answered %s",
                self.who,
                _name_of(handler),
                event.action,
                "by default" if rescue else "InternalError",
            )
            error = _internal_error()
            if rescue:
                response = await self.hooks.default_answer(request)
        finally:
            self._in_handler = False
        after = self._after
        if not after:
            await self.reply(event, response, error, received, handled=True)
            return
        self._after = []
        # the scheduled work is dropped if the answer cannot be sent (the reply raises)
        if await self.reply(event, response, error, received, handled=True) and own:
            nursery = self._nursery
            assert nursery is not None
            for async_fn, args in after:
                nursery.start_soon(self._run_after, event.action, async_fn, args)
        else:
            self.log.info(
                "%s: %d task(s) scheduled after answering %s dropped: the handler's response "
                "was not sent",
                self.who,
                len(after),
                event.action,
            )

    async def _invoke(self, event: IncomingCall, handler: AnyHandler[PeerT] | None) -> object:
        """Run the handler, else the side's default answer; nothing raises ``unsupported``."""
        request = event.request
        if handler is not None:
            try:
                return await handler(self.peer, request)
            except CallError as exc:
                # a fallback declining with NotSupported leaves the CALL to the defaults
                if exc.code is not ErrorCode.NOT_SUPPORTED or self.router.has_handler(
                    type(request)
                ):
                    raise
                answer = await self.hooks.default_answer(request)
                if answer is None:
                    raise
                return answer
        answer = await self.hooks.default_answer(request)
        if answer is not None:
            return answer
        raise self.hooks.unsupported(event)

    # -- our CALLs -----------------------------------------------------------------------

    def ensure_connected(self, action: str) -> None:
        """Raise ``ConnectionLostError`` unless :meth:`call` may send now."""
        if not self.connected:
            raise ConnectionLostError(f"{self.who} is not connected ({action})")

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R:
        """Send ``request`` as a CALL and return the peer's response (see the module docs).

        Waits for: the turn (not bounded by the timeout), then the answer, for
        ``call_timeout`` seconds (default: the session's).  Cancellation: safe at any point;
        the slot is freed and a late reply dropped.  Closes: nothing.

        Raises:
            CallError: the peer answered with a CALLERROR.
            CallTimeoutError: no answer within the timeout (also a ``trio.TooSlowError``).
            ConnectionLostError: not connected, or the connection dropped before the answer.
            RemoteProtocolError: the answer was broken or failed its schema.
            LocalProtocolError: the request is invalid, of another version, or one our side
                may not send (nothing was sent).
            Exception: what :meth:`SessionHooks.check_call` raises (nothing was sent).
        """
        action = request.ACTION
        self.ensure_connected(action)
        async with self._lock():
            self.ensure_connected(action)
            ticket = self.hooks.check_call(request)
            message_id, text = self.rpc.start_call(request)
            waiter = await self._exchange(_Waiter(message_id, ticket), action, text, call_timeout)
            self.hooks.call_done(message_id, request, waiter.response, waiter.error, waiter.started)
        self._outcome(waiter)
        return cast(R, waiter.response)

    async def call_raw(
        self,
        action: str,
        payload: Mapping[str, Any],
        *,
        validate: bool = True,
        call_timeout: float | None = None,
        decoded: Request[Any] | None = None,
    ) -> dict[str, Any]:
        """Send ``payload`` as it is in a CALL of ``action`` and return the answer's JSON
        object as it came: :meth:`call` without the typed messages.

        With ``validate`` the action must be a known one our side may send, and the request
        is checked against its schema before sending and the answer after (an invalid answer
        raises ``RemoteProtocolError``); the hooks see the typed messages, as for
        :meth:`call`.  Without, nothing is checked (any action name is allowed) and the hooks
        see :meth:`SessionHooks.check_raw_call` and :meth:`SessionHooks.raw_call_done`.
        The slot, the lock, the timeout and the errors are those of :meth:`call`.
        ``decoded`` is the typed request of ``payload`` when the caller has it already
        (:meth:`raw_request`'s, with ``validate``).
        """
        self.ensure_connected(action)
        request: Request[Any] | None = None
        if validate:
            request = decoded if decoded is not None else self.raw_request(action, payload)
        async with self._lock():
            self.ensure_connected(action)
            if request is not None:
                ticket = self.hooks.check_call(request)
            else:
                ticket = self.hooks.check_raw_call(action, payload)
            message_id, text, _ = self.rpc.start_raw_call(action, payload, validate=validate)
            waiter = await self._exchange(_Waiter(message_id, ticket), action, text, call_timeout)
            if request is not None:
                self.hooks.call_done(
                    message_id, request, waiter.response, waiter.error, waiter.started
                )
            else:
                self.hooks.raw_call_done(
                    message_id, action, payload, waiter.payload, waiter.error, waiter.started
                )
        self._outcome(waiter)
        assert waiter.payload is not None
        return waiter.payload

    def raw_request(self, action: str, payload: Mapping[str, Any]) -> Request[Any]:
        """The typed request a raw CALL's ``payload`` decodes to (checked).

        Raises:
            LocalProtocolError: ``action`` is not a CALL of this version, or ``payload`` fails
                its schema (the ``MessageValidationError`` is the ``__cause__``).
        """
        version = self.rpc.version
        try:
            request = messages.decode_request(version, action, dict(payload))
        except KeyError:
            raise LocalProtocolError(
                f"{action!r} is not an OCPP {version.value} action "
                "(an unknown action can only be sent without validation)"
            ) from None
        except MessageValidationError as exc:
            raise LocalProtocolError(f"invalid {action} request: {exc}") from exc
        if not isinstance(request, Request):
            raise LocalProtocolError(f"{action} is a SEND message, not a CALL")
        return request

    def _lock(self) -> trio.Lock:
        if self._call_lock is None:
            self._call_lock = trio.Lock()
        return self._call_lock

    async def _exchange(
        self, waiter: _Waiter, action: str, text: str, call_timeout: float | None
    ) -> _Waiter:
        """Send our CALL's frame (the slot is ours) and wait for its answer or its end."""
        self._waiter = waiter
        self.counts.calls_sent += 1
        waiter.started = trio.current_time()
        limit = self.call_timeout if call_timeout is None else call_timeout
        try:
            with trio.fail_after(limit):
                await self.transport.send_message(text)
                await waiter.done.wait()
        except trio.TooSlowError:
            self.counts.calls_timed_out += 1
            waiter.error = CallTimeoutError(
                f"{self.peer_name} did not answer {action} within {limit} s"
            )
        except ConnectionLostError as exc:
            waiter.error = waiter.error or exc
        finally:
            if self._waiter is waiter:
                self._waiter = None
            self.rpc.abandon_call(waiter.message_id)
        return waiter

    def _outcome(self, waiter: _Waiter) -> None:
        """Count how our CALL ended; raise its error."""
        counts = self.counts
        if waiter.error is not None:
            counts.call_errors += 1
            if isinstance(waiter.error, CallError | RemoteProtocolError):
                counts.calls_failed += 1
            raise waiter.error
        counts.calls_answered += 1

    async def send(self, message: Send) -> None:
        """Send a 2.1 SEND message (never answered; not subject to the one-CALL slot).

        Waits for: the frame to be written.  Cancellation: safe (the frame goes out whole or
        not at all).  Closes: nothing.

        Raises:
            ConnectionLostError: not connected.
            LocalProtocolError: not a SEND message of this version our side may send.
        """
        self.ensure_connected(message.ACTION)
        await self.transport.send_message(self.rpc.send(message))


def _name_of(handler: object) -> str:
    """How the logs name a handler (computed only when something is logged)."""
    return handler_name(handler) if handler is not None else "(none)"
