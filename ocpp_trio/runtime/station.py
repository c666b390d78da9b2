"""The station runtime: one connected station, its tasks, and ``call()``.

Per connection, :meth:`Station.run` opens a **station nursery** holding:

* the **reader** (the task that runs ``run`` itself): reads frames, feeds the
  :class:`~ocpp_trio.protocol.rpc.RpcConnection`, sends what it says to send at once, asks the
  :class:`~ocpp_trio.protocol.supervisor.Supervisor` about every station CALL, answers what needs no
  application code (SecurityError refusals, an early boot's repeated answer, Heartbeat when the
  application has no handler for it), and hands replies to the waiting :meth:`Station.call`.
  It never runs user code.
* the **handler runner**, fed by a bounded channel of the CALLs that passed the supervisor, one
  at a time, in order: it runs the application's handler and sends its answer.  Because replies
  to our own CALLs go through the reader, a handler may ``await station.call(...)``.
* one task per **extra handler** installed on this station, each fed by its own bounded channel.
* the **machines** (:class:`~ocpp_trio.runtime.machines.StationMachines`): EVSE, transaction and
  report tasks, fed by the reader and the handler runner themselves.  The reader hands them
  each answer to our CALLs before waking the caller, the handler runner each answered station
  CALL before sending the answer.

Policies (see docs/design.md):

* Handler outcomes: a response of the request's ``RESPONSE`` class is sent; a raised
  :class:`~ocpp_trio.CallError` is sent as that CALLERROR; any other exception, a wrong return
  type, or a response that fails its schema is answered ``InternalError`` and logged with the
  handler's name.  The station lives on.
* A station that sends more CALLs than the handler queue holds (it must wait for each answer) is
  answered ``GenericError`` for the excess instead of stalling the reader, whose blocking would
  also delay the replies a handler may be waiting for.
* Extra handlers never slow the station: when an extra handler's channel is full the exchange is
  dropped for it and counted (``extra_dropped``); an exception is logged and the extra handler
  keeps running, until ``extra_handler_max_failures`` consecutive failures remove it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Final, TypeVar, cast

import attrs
import trio

from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    OCPPError,
    StaleEpochError,
    StoreError,
)
from ocpp_trio.messages._base import Direction, Message, Request, Response, Send
from ocpp_trio.protocol.rpc import (
    CallCompleted,
    CallFailed,
    CallRejected,
    CallResultErrorReceived,
    Dropped,
    IncomingCall,
    IncomingSend,
    RpcConnection,
)
from ocpp_trio.protocol.supervisor import (
    BOOT,
    CallTicket,
    Refused,
    RegistrationStatus,
    RepeatBootAnswer,
    StationState,
    Supervisor,
)
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.defaults import MUST_ANSWER, answer_by_default
from ocpp_trio.runtime.events import (
    Accepted,
    BootAnswered,
    Broadcast,
    Connected,
    Disconnected,
    DisconnectReason,
    Exchange,
    ExtraHandler,
    ExtraHandlerRunner,
    StationEvent,
    StationStatistics,
)
from ocpp_trio.runtime.handlers import (
    AnyHandler,
    Router,
    boot_response,
    handler_name,
    heartbeat_response,
)
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.station_config import StationConfig, _Counts
from ocpp_trio.runtime.station_ops import StationOperations
from ocpp_trio.transport.base import Transport
from ocpp_trio.transport.server import ConnectionRequest

__all__ = [
    "ExtraHandler",
    "ExtraHandlerRunner",
    "Station",
    "StationConfig",
    "StationStatistics",
]

log = logging.getLogger("ocpp_trio")
R = TypeVar("R", bound=Response)
_HEARTBEAT: Final = "Heartbeat"


def _name_of(handler: AnyHandler | None) -> str:
    """How the logs name a handler (computed only when something is logged)."""
    return handler_name(handler) if handler is not None else "(none)"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define
class _Waiter:
    message_id: str
    ticket: CallTicket
    done: trio.Event = attrs.Factory(trio.Event)
    response: Response | None = None
    error: OCPPError | None = None


@attrs.frozen
class _Work:
    call: IncomingCall | IncomingSend
    received: float


class Station(StationOperations):
    """One station connection: state, handlers, machines and :meth:`call`.

    Made and run by the CSMS for each accepted connection; find it with
    ``csms.get_station(identity)``.  It can also be run on its own over any
    :class:`~ocpp_trio.transport.base.Transport` (``await nursery.start(station.run)``).

    Args:
        identity: the station id.
        version: the negotiated OCPP version.
        transport: the connection; :meth:`run` closes it when done.
        router: answers the station's requests.
        config: timeouts, queue sizes, registration rules.
        initial_status: the registration remembered from an earlier connection (``ACCEPTED``
            resumes without a BootNotification).
        request: the upgrade request (from the server), if any.
        events: where lifecycle events are published.
        shared_extra_handlers: CSMS-wide extra handlers (run elsewhere) also fed by this station.
        machines: the identity's machines (the CSMS keeps one per identity across
            connections); by default a fresh one.
    """

    def __init__(
        self,
        identity: str,
        version: Version | str,
        transport: Transport,
        router: Router,
        *,
        config: StationConfig | None = None,
        initial_status: RegistrationStatus | None = None,
        request: ConnectionRequest | None = None,
        events: Broadcast[StationEvent] | None = None,
        shared_extra_handlers: Sequence[ExtraHandlerRunner] = (),
        machines: StationMachines | None = None,
    ) -> None:
        self.identity: Final = identity
        self.version: Final = Version(version)
        self.request = request
        self.config = config or StationConfig()
        self._transport = transport
        self._router = router
        self.machines: Final = machines or StationMachines(identity, config=self.config.machines)
        self._events = events
        self._shared_extras = shared_extra_handlers
        self._extras: list[ExtraHandlerRunner] = []
        self._rpc = RpcConnection(
            self.version,
            role="csms",
            validate_outbound=self.config.validate_outbound,
            accept_binary=self.config.accept_binary,
        )
        self._supervisor = Supervisor(
            self.version,
            initial_status=initial_status,
            config=self.config.supervisor,
            identity=identity,
        )
        self._call_lock: trio.Lock | None = None  # made by the first call()
        self._waiter: _Waiter | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._connected = False
        self._close_request: tuple[int, str, DisconnectReason] | None = None
        self._finished = trio.Event()
        self._last_seen: float | None = None
        self._last_seen_at: datetime.datetime | None = None
        self._counts = _Counts()

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> StationState:
        """The registration state (see :class:`~ocpp_trio.protocol.supervisor.StationState`)."""
        return self._supervisor.state

    @property
    def status(self) -> RegistrationStatus | None:
        """The boot answer in force, ``None`` before one (or while rebooting)."""
        return self._supervisor.status

    @property
    def is_accepted(self) -> bool:
        """Whether the station is Accepted (after a boot, or resumed on reconnect)."""
        return self._supervisor.is_accepted

    @property
    def connected(self) -> bool:
        """Whether the connection is up and served."""
        return self._connected

    @property
    def router(self) -> Router:
        """The router answering this station's requests."""
        return self._router

    @property
    def supervisor(self) -> Supervisor:
        """The registration state machine (read it; do not drive it)."""
        return self._supervisor

    @property
    def last_seen(self) -> float | None:
        """trio time of the last frame received (any frame counts as liveness)."""
        return self._last_seen

    @property
    def last_seen_at(self) -> datetime.datetime | None:
        """Wall-clock (UTC) time of the last frame received."""
        return self._last_seen_at

    def statistics(self) -> StationStatistics:
        """A snapshot of counters and state."""
        c = self._counts
        return StationStatistics(
            identity=self.identity,
            version=self.version,
            state=self.state,
            status=self.status,
            connected=self._connected,
            calls_received=c.calls_received,
            calls_refused=c.calls_refused,
            calls_handled=c.calls_handled,
            handler_errors=c.handler_errors,
            heartbeats_answered=c.heartbeats_answered,
            calls_sent=c.calls_sent,
            calls_timed_out=c.calls_timed_out,
            calls_failed=c.calls_failed,
            extra_dropped=c.extra_dropped,
            extra_errors=sum(e.errors for e in self._extras),
            last_seen=self._last_seen,
            last_seen_at=self._last_seen_at,
            rpc=self._rpc.statistics(),
            machines=self.machines.statistics(),
        )

    def __repr__(self) -> str:
        return f"<Station {self.identity!r} {self.version.value} {self.state.value}>"

    # -- lifecycle -----------------------------------------------------------------------

    def add_extra_handler(
        self,
        handler: ExtraHandler,
        *,
        buffer: int | None = None,
        max_failures: int | None = None,
        name: str | None = None,
    ) -> None:
        """Install an extra handler on this station only.

        It sees every finished exchange of this connection (:class:`Exchange`) in its own task
        in the station nursery, fed by its own channel of ``buffer`` exchanges (default
        ``config.extra_handler_buffer``); see the module docs for the drop/failure policy.
        Installed before :meth:`run`, it starts with the station.
        """
        runner = ExtraHandlerRunner(
            handler,
            buffer=self.config.extra_handler_buffer if buffer is None else buffer,
            max_failures=(
                self.config.extra_handler_max_failures if max_failures is None else max_failures
            ),
            name=name,
        )
        self._extras.append(runner)
        if self._nursery is not None:
            self._nursery.start_soon(runner.run)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection until it ends.

        Waits for: the connection to close (by the station, by :meth:`aclose`, or by the CSMS
        replacing it).  Reports through ``task_status`` once its tasks run.
        Cancellation: stops serving; the connection is closed with 1001.
        Closes: the transport, always, and the station's channels and tasks.
        Exceptions: none from the station's behaviour or the handlers; only bugs of the
        runtime itself.

        Raises:
            RuntimeError: ``run`` was already called.
        """
        if self._started:
            raise RuntimeError(f"station {self.identity!r} is already running or has run")
        self._started = True
        attached = False
        try:
            if self._close_request is not None:
                task_status.started()
                return
            initial = self._supervisor.connect()
            self._connected = True
            resumed = initial is StationState.RESUMED
            log.info("station %r: serving OCPP %s (%s)", self.identity, self.version, initial.value)
            self._publish(Connected(identity=self.identity, version=self.version, resumed=resumed))
            if resumed:
                self._publish(Accepted(identity=self.identity, version=self.version, resumed=True))
            send, receive = trio.open_memory_channel[_Work](self.config.handler_queue_size)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.machines.attach(self.version, nursery)
                attached = True
                nursery.start_soon(self._run_handlers, receive)
                for runner in self._extras:
                    nursery.start_soon(runner.run)
                task_status.started()
                async with send:
                    await self._read_loop(send)
                nursery.cancel_scope.cancel()
        finally:
            if attached:  # the machine tasks have ended with the nursery
                self.machines.detach()
            await self._teardown()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code``/``reason``; idempotent.

        Waits for: the station's tasks to end and the transport to close (bounded by the
        transport's close timeout).  Cancellation: called from inside the station (a handler),
        it returns by being cancelled with the station.
        Closes: the transport and every task of the station.
        """
        await self._close(code, reason, DisconnectReason.CLOSED_BY_US)

    async def wait_closed(self) -> None:
        """Wait until :meth:`run` has finished.

        Waits for: the connection to be closed and the station's tasks to end.
        Cancellation: only of the caller.  Closes: nothing.
        """
        await self._finished.wait()

    async def _close(self, code: int, reason: str, kind: DisconnectReason) -> None:
        if self._close_request is None:
            self._close_request = (code, reason, kind)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        if self._started:
            await self._finished.wait()
        else:
            await self._transport.aclose(code, reason)

    async def _teardown(self) -> None:
        was_connected = self._connected
        self._connected = False
        self._nursery = None
        self._supervisor.disconnect()
        waiter = self._waiter
        if waiter is not None and not waiter.done.is_set():
            waiter.error = ConnectionLostError(f"station {self.identity!r} disconnected")
            waiter.done.set()
        if self._close_request is not None:
            code, reason, kind = self._close_request
        elif self._transport.closed is not None:
            code, reason, kind = 1000, "", DisconnectReason.CLOSED_BY_PEER
        else:
            code, reason, kind = 1001, "server shutting down", DisconnectReason.CLOSED_BY_US
        with trio.CancelScope(shield=True):
            await self._transport.aclose(code, reason)
        if was_connected:
            detail = str(self._transport.closed or "")
            log.info("station %r: disconnected (%s) %s", self.identity, kind.value, detail)
            self._publish(
                Disconnected(
                    identity=self.identity,
                    version=self.version,
                    reason=kind,
                    detail=detail,
                    last_seen_at=self._last_seen_at,
                )
            )
        self._finished.set()

    def _publish(self, event: StationEvent) -> None:
        if self._events is not None:
            self._events.publish(event)

    # -- reading -------------------------------------------------------------------------

    async def _read_loop(self, calls: trio.MemorySendChannel[_Work]) -> None:
        idle_timeout = self.config.idle_timeout
        get_message = self._transport.get_message
        try:
            while True:
                if not idle_timeout:
                    data = await get_message()
                else:
                    with trio.CancelScope(deadline=trio.current_time() + idle_timeout) as idle:
                        data = await get_message()
                    if idle.cancelled_caught:
                        log.warning(
                            "station %r: no frame for %s s; closing", self.identity, idle_timeout
                        )
                        if self._close_request is None:
                            self._close_request = (
                                1000,
                                "idle timeout",
                                DisconnectReason.CLOSED_BY_US,
                            )
                        return
                self._last_seen = trio.current_time()
                self._last_seen_at = _utc_now()
                # in a function of its own: an idle station keeps nothing of its last frame
                await self._on_frame(data, calls)
                del data
        except ConnectionLostError:
            return

    async def _on_frame(self, data: str | bytes, calls: trio.MemorySendChannel[_Work]) -> None:
        received = self._rpc.receive(data)
        for text in received.outgoing:
            await self._transport.send_message(text)
        for event in received.events:
            if isinstance(event, IncomingCall):
                await self._on_call(event, calls)
            elif isinstance(event, IncomingSend):
                self._on_send(event, calls)
            elif isinstance(event, CallCompleted | CallFailed):
                waiter = self._waiter
                if (
                    isinstance(event, CallCompleted)
                    and waiter is not None
                    and waiter.message_id == event.message_id
                ):
                    # before the caller wakes: helpers may wait for the effects, and
                    # a triggered message is never seen before its trigger's answer
                    await self.machines.observe(
                        event.action, waiter.ticket.request, event.response, False
                    )
                self._on_reply(event)
            else:
                self._log_event(event)

    def _log_event(self, event: CallRejected | CallResultErrorReceived | Dropped) -> None:
        who = self.identity
        if isinstance(event, CallRejected):  # the RPC core answered it already
            self._counts.calls_refused += 1
            code = event.error.code.wire(self.version)
            log.warning("station %r: CALL %s answered %s: %s", who, event.action, code, event.error)
        elif isinstance(event, CallResultErrorReceived):
            log.warning("station %r: our answer to %s was refused: %s", who, event.action, event)
        else:
            log.info("station %r: dropped a frame: %s", who, event.reason)

    async def _on_call(self, event: IncomingCall, calls: trio.MemorySendChannel[_Work]) -> None:
        self._counts.calls_received += 1
        now = trio.current_time()
        verdict = self._supervisor.station_call(event.message_id, event.action, event.request, now)
        if isinstance(verdict, Refused):
            self._counts.calls_refused += 1
            log.warning(
                "station %r: %s refused in state %s: %s",
                self.identity,
                event.action,
                self.state.value,
                verdict.description,
            )
            error = CallError(verdict.code, verdict.description, verdict.details)
            await self._reply(event, None, error, now)
            return
        if isinstance(verdict, RepeatBootAnswer):
            log.warning(
                "station %r: BootNotification before its retry interval; answered %s again "
                "(retry in %d s)",
                self.identity,
                verdict.status,
                verdict.interval,
            )
            response = boot_response(self.version, verdict.status, verdict.interval)
            await self._reply(event, response, None, now)  # publishes BootAnswered too
            return
        if (
            event.action == _HEARTBEAT
            and self.config.auto_heartbeat
            and not self._router.has_handler(type(event.request))
        ):
            self._counts.heartbeats_answered += 1
            await self._reply(event, heartbeat_response(self.version), None, now)
            return
        try:
            calls.send_nowait(_Work(event, now))
        except trio.WouldBlock:
            self._counts.calls_refused += 1
            self._supervisor.boot_failed(event.message_id)
            log.warning(
                "station %r: %s while %d CALLs await their answers; answered GenericError",
                self.identity,
                event.action,
                self.config.handler_queue_size,
            )
            busy = CallError(
                ErrorCode.GENERIC_ERROR, "too many CALLs awaiting an answer; send one at a time"
            )
            await self._reply(event, None, busy, now)

    def _on_send(self, event: IncomingSend, calls: trio.MemorySendChannel[_Work]) -> None:
        if not self._supervisor.station_send(event.action):
            log.warning(
                "station %r: SEND %s dropped in state %s",
                self.identity,
                event.action,
                self.state.value,
            )
            return
        try:
            calls.send_nowait(_Work(event, trio.current_time()))
        except trio.WouldBlock:
            log.warning(
                "station %r: SEND %s dropped: handler queue full", self.identity, event.action
            )

    def _on_reply(self, event: CallCompleted | CallFailed) -> None:
        waiter = self._waiter
        if waiter is None or waiter.message_id != event.message_id or waiter.done.is_set():
            log.info("station %r: reply to %s with nobody waiting", self.identity, event.action)
            return
        if isinstance(event, CallCompleted):
            # recorded here, before the reader takes the next frame: a triggered message may
            # follow its trigger's answer at once
            self._supervisor.csms_call_answered(waiter.ticket, event.response)
            waiter.response = event.response
        else:
            waiter.error = event.error
        waiter.done.set()

    # -- answering -----------------------------------------------------------------------

    async def _reply(
        self,
        event: IncomingCall,
        response: Response | None,
        error: CallError | None,
        started: float,
        *,
        observe: bool = False,
    ) -> None:
        """Answer the station's CALL (response, else error) and report the exchange; with
        ``observe``, show it to the machines first (so, once the station has its answer, a
        ``settle()`` covers it)."""
        text: str | None = None
        if response is not None:
            try:
                text = self._rpc.answer(event.message_id, response)
            except Exception:  # invalid (LocalProtocolError) or unencodable: a bug of ours
                self._counts.handler_errors += 1
                log.exception(
                    "station %r: BUG (ours): the answer to %s is invalid and was not sent; "
                    "InternalError sent instead",
                    self.identity,
                    event.action,
                )
                response = None
                error = CallError(ErrorCode.INTERNAL_ERROR, "internal error")
        if text is None:
            if error is None:  # pragma: no cover - callers pass one of the two
                error = CallError(ErrorCode.INTERNAL_ERROR, "internal error")
            try:
                text = self._rpc.answer_error(
                    event.message_id, error.code, error.description, error.details
                )
            except LocalProtocolError:
                log.exception(
                    "station %r: cannot send %s; GenericError instead",
                    self.identity,
                    error,
                )
                error = CallError(ErrorCode.GENERIC_ERROR, error.description[:255])
                text = self._rpc.answer_error(
                    event.message_id, ErrorCode.GENERIC_ERROR, error.description
                )
        if event.action == BOOT:
            self._boot_bookkeeping(event, response)
        if observe:
            await self.machines.observe(event.action, event.request, response, True)
            await self._durable(event)
        await self._transport.send_message(text)
        if event.action == BOOT and response is not None:
            self._publish_boot(event, response)
        self._record(
            Direction.STATION_TO_CSMS,
            event.message_id,
            event.action,
            event.request,
            response,
            error if response is None else None,
            started,
        )
        if observe:
            await self.machines.checkpoint()

    async def _durable(self, event: IncomingCall) -> None:
        """Write-ahead: wait until the exchange is in the store before it is answered.  When
        it cannot be stored, the connection is closed instead (1011; 1000 when another process
        claimed the station): the station sends again what it did not get an answer for."""
        try:
            await self.machines.durable()
        except StoreError as exc:
            log.error(  # noqa: TRY400 - the cause is logged by the store writer
                "station %r: %s not stored (%s); closing the connection unanswered",
                self.identity,
                event.action,
                exc,
            )
            if self._close_request is None:
                self._close_request = (
                    (1000, "served by another process", DisconnectReason.CLOSED_BY_US)
                    if isinstance(exc, StaleEpochError)
                    else (1011, "storage unavailable", DisconnectReason.CLOSED_BY_US)
                )
            raise ConnectionLostError(f"station {self.identity!r}: not stored") from exc

    def _boot_bookkeeping(self, event: IncomingCall, response: Response | None) -> None:
        if response is None:
            self._supervisor.boot_failed(event.message_id)
            return
        status = RegistrationStatus(getattr(response, "status"))  # noqa: B009
        interval = int(getattr(response, "interval"))  # noqa: B009
        self._supervisor.boot_answered(event.message_id, status, interval, trio.current_time())

    def _publish_boot(self, event: IncomingCall, response: Response) -> None:
        status = RegistrationStatus(getattr(response, "status"))  # noqa: B009
        self._publish(
            BootAnswered(
                identity=self.identity,
                version=self.version,
                status=status,
                interval=int(getattr(response, "interval")),  # noqa: B009
                request=event.request,
            )
        )
        if status is RegistrationStatus.ACCEPTED and self.state is StationState.ACCEPTED:
            self._publish(Accepted(identity=self.identity, version=self.version))

    def _record(
        self,
        direction: Direction,
        message_id: str,
        action: str,
        request: Message,
        response: Response | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        """Hand the finished exchange to the extra handlers (never waits)."""
        runners = (*self._extras, *self._shared_extras)
        if not runners:
            return
        exchange = Exchange(
            identity=self.identity,
            version=self.version,
            direction=direction,
            message_id=message_id,
            action=action,
            request=request,
            response=response,
            error=error,
            started=started,
            finished=trio.current_time(),
        )
        for runner in runners:
            if not runner.offer(self, exchange):
                self._counts.extra_dropped += 1

    # -- the handler runner --------------------------------------------------------------

    async def _run_handlers(self, receive: trio.MemoryReceiveChannel[_Work]) -> None:
        async with receive:
            async for work in receive:
                try:
                    if isinstance(work.call, IncomingSend):
                        await self._handle_send(work.call)
                    else:
                        await self._handle_call(work.call, work.received)
                except ConnectionLostError:
                    # we can no longer answer; end the station rather than let the reader
                    # queue CALLs nobody will take
                    if self._nursery is not None:
                        self._nursery.cancel_scope.cancel()
                    return
                del work  # an idle station keeps nothing of its last CALL

    async def _handle_call(self, event: IncomingCall, received: float) -> None:
        request = event.request
        handler = self._router.handler_for(type(request))
        response: Response | None = None
        error: CallError | None = None
        try:
            result = await self._invoke(event, handler)
            expected = type(request).RESPONSE
            if isinstance(result, expected):
                response = result
                self._counts.calls_handled += 1
            else:
                self._counts.handler_errors += 1
                log.error(
                    "station %r: handler %s returned %s for %s, not a %s; answered InternalError",
                    self.identity,
                    _name_of(handler),
                    type(result).__name__,
                    event.action,
                    expected.__name__,
                )
                error = CallError(ErrorCode.INTERNAL_ERROR, "internal error")
        except CallError as exc:
            self._counts.calls_handled += 1
            error = exc
        except Exception:
            self._counts.handler_errors += 1
            rescue = event.action in MUST_ANSWER
            log.exception(
                "station %r: handler %s raised on %s; answered %s",
                self.identity,
                _name_of(handler),
                event.action,
                "by default" if rescue else "InternalError",
            )
            error = CallError(ErrorCode.INTERNAL_ERROR, "internal error")
            if rescue:
                response = await answer_by_default(self, event.request)
        await self._reply(event, response, error, received, observe=True)

    async def _invoke(self, event: IncomingCall, handler: AnyHandler | None) -> object:
        """Run the handler (or a built-in default); a missing one raises NotSupported."""
        default = self._router.default_boot
        if (
            event.action == BOOT
            and default is not None
            and not self._router.has_handler(type(event.request))
        ):
            return boot_response(
                self.version, default.status, default.interval
            )  # before the fallback
        own = self._router.has_handler(type(event.request))
        if handler is not None:
            try:
                return await handler(self, event.request)
            except CallError as exc:
                # a fallback declining with NotSupported leaves the CALL to the defaults
                if own or exc.code is not ErrorCode.NOT_SUPPORTED:
                    raise
                answer = await answer_by_default(self, event.request)
                if answer is None:
                    raise
                return answer
        answer = await answer_by_default(self, event.request)
        if answer is not None:
            return answer
        if event.action == BOOT:
            log.warning(
                "station %r: no BootNotification handler; answered NotSupported, so the "
                "station can never be accepted (register one, or call router.set_default_boot())",
                self.identity,
            )
        raise CallError(ErrorCode.NOT_SUPPORTED, f"{event.action} is not supported by this CSMS")

    async def _handle_send(self, event: IncomingSend) -> None:
        handler = self._router.send_handler_for(type(event.message))
        started = trio.current_time()
        if handler is None:
            log.debug("station %r: SEND %s has no handler; ignored", self.identity, event.action)
        else:
            try:
                await handler(self, event.message)
            except Exception:
                self._counts.handler_errors += 1
                log.exception(
                    "station %r: SEND handler %s raised on %s",
                    self.identity,
                    handler_name(handler),
                    event.action,
                )
        self._record(
            Direction.STATION_TO_CSMS,
            event.message_id,
            event.action,
            event.message,
            None,
            None,
            started,
        )

    # -- our CALLs -----------------------------------------------------------------------

    def _ensure_connected(self, what: str) -> None:
        if not self._connected:
            raise ConnectionLostError(f"station {self.identity!r} is not connected ({what})")

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R:
        """Send ``request`` as a CALL and return the station's response.

        One CALL is outstanding per station: concurrent callers wait their turn in order.

        Waits for: the turn (not bounded by the timeout), then the station's answer, for
        ``call_timeout`` seconds (default ``config.call_timeout``).
        Cancellation: safe at any point; the outstanding slot is freed and a late reply is
        dropped.
        Closes: nothing.

        Raises:
            StateError: the registration state forbids this CALL now (nothing was sent).
            CallError: the station answered with a CALLERROR.
            CallTimeoutError: no answer within the timeout (also a ``trio.TooSlowError``).
            ConnectionLostError: not connected, or the connection dropped before the answer.
            RemoteProtocolError: the station's answer was broken or failed its schema.
            LocalProtocolError: the request is invalid or of another version (nothing sent).
        """
        action = request.ACTION
        self._ensure_connected(action)
        self._supervisor.check_csms_call(action, request)  # fail fast; checked again below
        if self._call_lock is None:
            self._call_lock = trio.Lock()
        async with self._call_lock:
            self._ensure_connected(action)
            ticket = self._supervisor.check_csms_call(action, request)
            message_id, text = self._rpc.start_call(request)
            waiter = _Waiter(message_id, ticket)
            self._waiter = waiter
            self._counts.calls_sent += 1
            started = trio.current_time()
            limit = self.config.call_timeout if call_timeout is None else call_timeout
            try:
                with trio.fail_after(limit):
                    await self._transport.send_message(text)
                    await waiter.done.wait()
            except trio.TooSlowError:
                self._counts.calls_timed_out += 1
                waiter.error = CallTimeoutError(
                    f"station {self.identity!r} did not answer {action} within {limit} s"
                )
            finally:
                if self._waiter is waiter:
                    self._waiter = None
                self._rpc.abandon_call(message_id)
            self._record(
                Direction.CSMS_TO_STATION,
                message_id,
                action,
                request,
                waiter.response,
                waiter.error,
                started,
            )
            if waiter.error is not None:
                self._counts.calls_failed += 1
                raise waiter.error
            assert waiter.response is not None
            return cast(R, waiter.response)

    async def send(self, message: Send) -> None:
        """Send a 2.1 SEND message (never answered; not subject to the one-CALL slot).

        Waits for: the frame to be written.  Cancellation: safe (the frame goes out whole or not
        at all).  Closes: nothing.

        Raises:
            StateError: the registration state forbids it now.
            ConnectionLostError: not connected.
            LocalProtocolError: not a SEND message of this version our side may send.
        """
        self._ensure_connected(message.ACTION)
        self._supervisor.check_csms_call(message.ACTION, message)
        await self._transport.send_message(self._rpc.send(message))
