"""The station runtime: one connected station, its tasks, and ``call()``.

Per connection, :meth:`Station.run` runs an :class:`~ocpp_trio.runtime.session.RpcSession`
(the engine the station side's ``ChargePoint`` runs too: the reader, which never runs user
code, and the handler runner, so a handler may ``await station.call(...)``; the handler
outcomes and the full-queue policy are in its docs).  The **station nursery** also holds one
task per **extra handler** installed on this station, and the **machines**
(:class:`~ocpp_trio.runtime.machines.StationMachines`: EVSE, transaction and report tasks), fed
by the reader (each answer to our CALLs, before the caller wakes) and the handler runner (each
answered station CALL, before the answer is sent).

The CSMS's rules are the session's hooks (:class:`_CSMSSide`): the supervisor's checks
(SecurityError refusals, an early boot's repeated answer), the built-in Heartbeat answer, the
machines' observation and the write-ahead ``durable()`` before an answer goes out, the boot
bookkeeping, the extra handlers, the lifecycle events and the call counters
(:class:`~ocpp_trio.runtime.tally.CallTally`).

Extra handlers never slow the station (see docs/design.md): when an extra handler's channel is
full the exchange is dropped for it and counted (``extra_dropped``); an exception is logged and
the extra handler keeps running, until ``extra_handler_max_failures`` consecutive failures
remove it.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import trio

from ocpp_trio import messages
from ocpp_trio.errors import (
    CallError,
    ConnectionLostError,
    ErrorCode,
    OCPPError,
    StaleEpochError,
    StoreError,
)
from ocpp_trio.messages._base import Direction, Message, Request, Response, Send
from ocpp_trio.protocol.rpc import (
    CallCompleted,
    CallRejected,
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
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.peer import CSMSView
from ocpp_trio.runtime.router import (
    CSMSRouterBase,
    boot_response,
    handler_name,
    heartbeat_response,
)
from ocpp_trio.runtime.session import RpcSession, SessionHooks
from ocpp_trio.runtime.station_config import StationConfig, _Counts
from ocpp_trio.runtime.station_ops import StationOperations
from ocpp_trio.runtime.tally import UNKNOWN_ACTION, CallTally
from ocpp_trio.store.base import Store
from ocpp_trio.transport.base import Transport
from ocpp_trio.transport.server import ConnectionRequest

__all__ = [
    "CallHook",
    "ExtraHandler",
    "ExtraHandlerRunner",
    "Station",
    "StationConfig",
    "StationStatistics",
    "current_station_id",
]

log = logging.getLogger("ocpp_trio")
R = TypeVar("R", bound=Response)
# the station whose task is running: set by Station.run, inherited by every task it starts
_station_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ocpp_trio_station_id", default=None
)


def current_station_id() -> str | None:
    """The identity of the station whose task is running (its reader, handlers, machines,
    extra handlers, ``after_answer`` work), ``None`` elsewhere: what a log formatter or filter
    attaches to the records of one station."""
    return _station_id.get()


_HEARTBEAT: Final = "Heartbeat"

#: ``async def hook(station, request)``: run in the calling task before each CALL of the CSMS
#: goes out (:meth:`Station.add_call_hook`); what it raises stops the CALL, unsent
CallHook = Callable[["Station", Request[Any]], Awaitable[None]]


class Station(StationOperations):
    """One station connection: state, handlers, machines and :meth:`call`.

    Made and run by the CSMS for each accepted connection; find it with
    ``csms.get_station(identity)``.  It can also be run on its own over any
    :class:`~ocpp_trio.transport.base.Transport` (``await nursery.start(station.run)``).

    Args:
        identity: the station id.
        version: the negotiated OCPP version.
        transport: the connection; :meth:`run` closes it when done.
        router: answers the station's requests (a :class:`~ocpp_trio.Router`).
        config: timeouts, queue sizes, registration rules.
        initial_status: the registration remembered from an earlier connection (``ACCEPTED``
            resumes without a BootNotification).
        request: the upgrade request (from the server), if any.
        events: where lifecycle events are published.
        shared_extra_handlers: CSMS-wide extra handlers (run elsewhere) also fed by this station.
        shared_call_hooks: CSMS-wide call hooks, run before this station's CALLs after its own.
        machines: the identity's machines (the CSMS keeps one per identity across
            connections); by default a fresh one.
        csms: the CSMS serving the station (handlers reach it as :attr:`csms`).
        tally: where the calls are counted (the CSMS's, shared by its stations); by default
            the station's own.
    """

    def __init__(
        self,
        identity: str,
        version: Version | str,
        transport: Transport,
        router: CSMSRouterBase[Station],
        *,
        config: StationConfig | None = None,
        initial_status: RegistrationStatus | None = None,
        request: ConnectionRequest | None = None,
        events: Broadcast[StationEvent] | None = None,
        shared_extra_handlers: Sequence[ExtraHandlerRunner[Station]] = (),
        shared_call_hooks: Sequence[CallHook] = (),
        machines: StationMachines | None = None,
        csms: CSMSView[Station] | None = None,
        tally: CallTally | None = None,
    ) -> None:
        self.identity: Final = identity
        self._csms = csms
        self._tally = tally if tally is not None else CallTally()
        self.version: Final = Version(version)
        self.request = request
        self.config = config or StationConfig()
        self._transport = transport
        self._router = router
        self.machines: Final = machines or StationMachines(identity, config=self.config.machines)
        self._events = events
        self._shared_extras = shared_extra_handlers
        self._extras: list[ExtraHandlerRunner[Station]] = []
        self._shared_call_hooks = shared_call_hooks
        self._call_hooks: list[CallHook] = []
        self._supervisor = Supervisor(
            self.version,
            initial_status=initial_status,
            config=self.config.supervisor,
            identity=identity,
        )
        self._counts = _Counts()
        rpc = RpcConnection(
            self.version,
            role="csms",
            validate_outbound=self.config.validate_outbound,
            accept_binary=self.config.accept_binary,
        )
        self._session: Final = RpcSession(
            self,
            transport,
            rpc,
            router,
            _CSMSSide(self),
            self._counts,
            who=f"station {identity!r}",
            peer_name=f"station {identity!r}",
            call_timeout=self.config.call_timeout,
            queue_size=self.config.handler_queue_size,
            idle_timeout=self.config.idle_timeout,
            message_rate=self.config.max_message_rate,
            message_burst=self.config.message_burst,
            logger=log,
        )
        self._started = False
        self._close_request: tuple[int, str, DisconnectReason] | None = None
        self._finished = trio.Event()
        # set once the connection is served, or once run() ends without serving it
        self._serving = trio.Event()

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
        return self._session.connected

    @property
    def queued_calls(self) -> int:
        """Station CALLs waiting for the handler runner now (not counting the one it runs)."""
        return self._session.queued_calls

    @property
    def router(self) -> CSMSRouterBase[Station]:
        """The router answering this station's requests."""
        return self._router

    @property
    def csms(self) -> CSMSView[Station]:
        """The CSMS serving this station: what a handler reaches instead of a module global
        (other stations, the machines, the store, ...).

        Raises:
            RuntimeError: the station runs on its own, without a CSMS.
        """
        if self._csms is None:
            raise RuntimeError(f"station {self.identity!r} is not served by a CSMS")
        return self._csms

    @property
    def store(self) -> Store | None:
        """The store keeping the CSMS's state (``CSMSConfig.store``): ``None`` without one,
        or when the station runs on its own."""
        return self._csms.store if self._csms is not None else None

    @property
    def supervisor(self) -> Supervisor:
        """The registration state machine (read it; do not drive it)."""
        return self._supervisor

    @property
    def last_seen(self) -> float | None:
        """trio time of the last frame received (any frame counts as liveness)."""
        return self._session.last_seen

    @property
    def last_seen_at(self) -> datetime.datetime | None:
        """Wall-clock (UTC) time of the last frame received."""
        return self._session.last_seen_at

    def statistics(self) -> StationStatistics:
        """A snapshot of counters and state."""
        c = self._counts
        return StationStatistics(
            identity=self.identity,
            version=self.version,
            state=self.state,
            status=self.status,
            connected=self.connected,
            calls_received=c.calls_received,
            calls_refused=c.calls_refused,
            calls_handled=c.calls_handled,
            handler_errors=c.handler_errors,
            heartbeats_answered=c.heartbeats_answered,
            calls_sent=c.calls_sent,
            calls_timed_out=c.calls_timed_out,
            calls_failed=c.call_errors,
            extra_dropped=c.extra_dropped,
            extra_errors=sum(e.errors for e in self._extras),
            throttled=c.throttled,
            throttled_seconds=c.throttled_seconds,
            handler_queue=self._session.queued_calls,
            last_seen=self.last_seen,
            last_seen_at=self.last_seen_at,
            rpc=self._session.rpc.statistics(),
            machines=self.machines.statistics(),
        )

    def __repr__(self) -> str:
        return f"<Station {self.identity!r} {self.version.value} {self.state.value}>"

    # -- lifecycle -----------------------------------------------------------------------

    def add_extra_handler(
        self,
        handler: ExtraHandler[Station],
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
        runner = extra_runner(
            self.config, handler, buffer=buffer, max_failures=max_failures, name=name
        )
        self._extras.append(runner)
        nursery = self._session.nursery
        if nursery is not None:
            nursery.start_soon(runner.run)

    def add_call_hook(self, hook: CallHook) -> None:
        """Run ``await hook(station, request)`` before each CALL this station is sent.

        For what must be in place before the station can act on a CALL, e.g. a new password
        recorded as pending before the station may reconnect with it
        (:class:`~ocpp_trio.PasswordChangeObserver`).  Hooks run in the calling task, in the
        order installed (this station's, then the CSMS-wide ones), after the registration
        check and before the CALL waits for its turn; what a hook raises reaches the caller
        and nothing is sent.  They see :meth:`call` and a validated :meth:`call_raw` (as its
        typed request), not a ``call_raw(..., validate=False)``.
        """
        self._call_hooks.append(hook)

    async def _until_served(self, action: str, call_timeout: float | None) -> None:
        """Return once the connection is served; raise ``ConnectionLostError`` if it ends, or
        is still not served after ``call_timeout`` seconds.

        A connection that replaces another is handed out (:meth:`CSMS.get_station`,
        :meth:`CSMS.call`) as soon as it is registered, while the old one closes: a CALL made
        in that moment waits for it instead of failing."""
        if not self._session.connected and not self._serving.is_set():
            timeout = self.config.call_timeout if call_timeout is None else call_timeout
            with trio.move_on_after(timeout):
                await self._serving.wait()
        self._session.ensure_connected(action)

    async def _before_call(self, request: Request[Any]) -> None:
        for hook in (*self._call_hooks, *self._shared_call_hooks):
            await hook(self, request)

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
        token = _station_id.set(self.identity)

        async def start(nursery: trio.Nursery) -> None:
            nonlocal attached
            await self.machines.attach(self.version, nursery)
            attached = True
            for runner in self._extras:
                nursery.start_soon(runner.run)
            task_status.started()

        was_connected = False
        try:
            if self._close_request is not None:
                task_status.started()
                return
            initial = self._supervisor.connect()
            self._session.connected = was_connected = True
            self._serving.set()
            resumed = initial is StationState.RESUMED
            log.info("station %r: serving OCPP %s (%s)", self.identity, self.version, initial.value)
            self._publish(Connected(identity=self.identity, version=self.version, resumed=resumed))
            if resumed:
                self._publish(Accepted(identity=self.identity, version=self.version, resumed=True))
            await self._session.run(start)
        finally:
            self._serving.set()  # callers waiting for the connection to be served give up
            try:
                if attached:  # the machine tasks have ended with the nursery
                    self.machines.detach()
                await self._teardown(was_connected)
            finally:
                _station_id.reset(token)

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
        self._session.cancel()
        if self._started:
            await self._finished.wait()
        else:
            await self._transport.aclose(code, reason)

    async def _teardown(self, was_connected: bool) -> None:
        self._supervisor.disconnect()
        self._session.disconnect(f"station {self.identity!r} disconnected")
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
                    last_seen_at=self.last_seen_at,
                )
            )
        self._finished.set()

    def _publish(self, event: StationEvent) -> None:
        if self._events is not None:
            self._events.publish(event)

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
        if not self._extras and not self._shared_extras:
            return
        runners = (*self._extras, *self._shared_extras)
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
                self._tally.extra_dropped += 1

    # -- our CALLs -----------------------------------------------------------------------

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R:
        """Send ``request`` as a CALL and return the station's response.

        One CALL is outstanding per station: concurrent callers wait their turn in order.

        Waits for: a connection that has just replaced another to be served (at most
        ``call_timeout``), the turn (not bounded by the timeout), then the station's answer,
        for ``call_timeout`` seconds (default ``config.call_timeout``).
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
        await self._until_served(request.ACTION, call_timeout)
        # fail fast, before queueing for the slot; checked again once it is ours
        self._supervisor.check_csms_call(request.ACTION, request)
        if self._call_hooks or self._shared_call_hooks:
            await self._before_call(request)
        return await self._session.call(request, call_timeout=call_timeout)

    async def call_raw(
        self,
        action: str,
        payload: Mapping[str, Any],
        *,
        validate: bool = True,
        call_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send ``payload`` as it is in a CALL of ``action``; return the station's answer
        payload (the JSON object as it came).

        For what the typed messages do not cover: a vendor's action, a conformance test's
        deliberately odd message.  With ``validate`` (the default) ``action`` must be one of
        the station's version that a CSMS sends, the request is checked against its schema
        before anything is sent, and the answer after (the machines and extra handlers then
        see the exchange as for :meth:`call`).  With ``validate=False`` nothing is checked and
        any action name may be sent (not a known one only stations send); the answer is
        returned unread, and extra handlers do not see the exchange (there are no typed
        messages to show them).  The slot, lock, timeout and registration rules are those of
        :meth:`call`.

        Waits for: as :meth:`call`.  Cancellation: as :meth:`call`.  Closes: nothing.

        Raises:
            StateError: the registration state forbids this CALL now (nothing was sent).
            CallError: the station answered with a CALLERROR.
            CallTimeoutError: no answer within the timeout.
            ConnectionLostError: not connected, or the connection dropped before the answer.
            RemoteProtocolError: with ``validate``: the answer failed its schema.
            LocalProtocolError: unknown action with ``validate``, an action a CSMS may not
                send, an invalid payload with ``validate``, or a payload that is not JSON
                (nothing was sent).
        """
        await self._until_served(action, call_timeout)
        self._supervisor.check_csms_call(action, payload)
        decoded: Request[Any] | None = None
        if validate and (self._call_hooks or self._shared_call_hooks):
            # the hooks and the extra handlers see the same request object
            decoded = self._session.raw_request(action, payload)
            await self._before_call(decoded)
        return await self._session.call_raw(
            action, payload, validate=validate, call_timeout=call_timeout, decoded=decoded
        )

    def after_answer(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """From a handler: start ``async_fn(*args)`` once the handler's response is on the
        wire, as a task in the station's nursery.

        For a CALL that must follow an answer, e.g. a CertificateSigned after accepting a
        SignCertificate (see docs/serving.md).  The task starts only if the handler's own
        response was sent: when the handler raises (also a ``CallError``), or its answer
        cannot be sent, the work is dropped (logged).  It runs alongside the handlers of the
        station's next CALLs, so it may ``await station.call(...)``; it is cancelled when the
        connection ends.  What it raises is logged and ends only that task.

        Raises:
            RuntimeError: called while no handler of this station runs.
        """
        self._session.start_after_answer(async_fn, *args)

    async def send(self, message: Send) -> None:
        """Send a 2.1 SEND message (never answered; not subject to the one-CALL slot).

        Waits for: the frame to be written.  Cancellation: safe (the frame goes out whole or not
        at all).  Closes: nothing.

        Raises:
            StateError: the registration state forbids it now.
            ConnectionLostError: not connected.
            LocalProtocolError: not a SEND message of this version our side may send.
        """
        self._session.ensure_connected(message.ACTION)
        self._supervisor.check_csms_call(message.ACTION, message)
        await self._session.send(message)


def extra_runner(
    config: StationConfig,
    handler: ExtraHandler[Station],
    *,
    buffer: int | None,
    max_failures: int | None,
    name: str | None,
) -> ExtraHandlerRunner[Station]:
    """The runner of an extra handler, with ``config``'s defaults for what is ``None``."""
    return ExtraHandlerRunner(
        handler,
        buffer=config.extra_handler_buffer if buffer is None else buffer,
        max_failures=config.extra_handler_max_failures if max_failures is None else max_failures,
        name=name,
    )


class _CSMSSide(SessionHooks):
    """The CSMS's rules, plugged into the station's :class:`RpcSession` (see its hooks)."""

    must_answer = MUST_ANSWER

    def __init__(self, station: Station) -> None:
        self.station = station
        self.supervisor = station._supervisor
        self.machines = station.machines
        self.counts = station._counts
        self.tally = station._tally

    # -- the reader ----------------------------------------------------------------------

    def screen_call(
        self, event: IncomingCall, now: float
    ) -> tuple[Response | None, CallError | None] | None:
        station = self.station
        verdict = self.supervisor.station_call(event.message_id, event.action, event.request, now)
        if isinstance(verdict, Refused):
            self.counts.calls_refused += 1
            log.warning(
                "station %r: %s refused in state %s: %s",
                station.identity,
                event.action,
                station.state.value,
                verdict.description,
            )
            return None, CallError(verdict.code, verdict.description, verdict.details)
        if isinstance(verdict, RepeatBootAnswer):
            log.warning(
                "station %r: BootNotification before its retry interval; answered %s again "
                "(retry in %d s)",
                station.identity,
                verdict.status,
                verdict.interval,
            )
            # publishes BootAnswered too
            return boot_response(station.version, verdict.status, verdict.interval), None
        if (
            event.action == _HEARTBEAT
            and station.config.auto_heartbeat
            and not station.router.has_handler(type(event.request))
        ):
            self.counts.heartbeats_answered += 1
            return heartbeat_response(station.version), None
        return None

    def screen_send(self, event: IncomingSend) -> bool:
        if self.supervisor.station_send(event.action):
            return True
        log.warning(
            "station %r: SEND %s dropped in state %s",
            self.station.identity,
            event.action,
            self.station.state.value,
        )
        return False

    def call_rejected(self, event: CallRejected) -> None:
        action = event.action
        if action is None or action not in messages.actions(self.station.version):
            action = UNKNOWN_ACTION
        self.tally.rejected(action, event.error.code)

    def throttled(self, seconds: float) -> None:
        self.tally.throttled += 1
        self.tally.throttled_seconds += seconds

    def idle(self, seconds: float) -> None:
        station = self.station
        if station._close_request is None:
            station._close_request = (1000, "idle timeout", DisconnectReason.CLOSED_BY_US)

    # -- answering -----------------------------------------------------------------------

    async def default_answer(self, request: Request[Any]) -> Response | None:
        return await answer_by_default(self.station, request)

    def unsupported(self, event: IncomingCall) -> CallError:
        if event.action == BOOT:
            log.warning(
                "station %r: no BootNotification handler; answered NotSupported, so the "
                "station can never be accepted (register one, or call router.set_default_boot())",
                self.station.identity,
            )
        return CallError(ErrorCode.NOT_SUPPORTED, f"{event.action} is not supported by this CSMS")

    async def handle_send(self, event: IncomingSend) -> None:
        station = self.station
        handler = station.router.send_handler_for(type(event.message))
        started = trio.current_time()
        if handler is None:
            log.debug("station %r: SEND %s has no handler; ignored", station.identity, event.action)
        else:
            try:
                await handler(station, event.message)
            except Exception:
                self.counts.handler_errors += 1
                log.exception(
                    "station %r: SEND handler %s raised on %s",
                    station.identity,
                    handler_name(handler),
                    event.action,
                )
        station._record(
            Direction.STATION_TO_CSMS,
            event.message_id,
            event.action,
            event.message,
            None,
            None,
            started,
        )

    async def before_answer(
        self, event: IncomingCall, response: Response | None, handled: bool
    ) -> None:
        if event.action == BOOT:
            self._boot_bookkeeping(event, response)
        if handled:
            # shown to the machines first, so once the station has its answer a settle()
            # covers it; and written ahead: stored before it is acknowledged
            machines = self.machines
            observation = machines.observation(event.action, event.request, response, True)
            if observation is not None:
                await machines.submit(observation, event.payload)
            if machines.journal is not None:  # without a store, nothing to wait for
                await self._durable(event)

    async def after_answer(
        self,
        event: IncomingCall,
        response: Response | None,
        error: CallError | None,
        started: float,
        handled: bool,
    ) -> None:
        station = self.station
        self.tally.answered(event.action, error, trio.current_time() - started)
        if event.action == BOOT and response is not None:
            self._publish_boot(event, response)
        station._record(
            Direction.STATION_TO_CSMS,
            event.message_id,
            event.action,
            event.request,
            response,
            error,
            started,
        )
        if handled and self.machines.journal is not None:
            await self.machines.checkpoint()

    async def _durable(self, event: IncomingCall) -> None:
        """Write-ahead: wait until the exchange is in the store before it is answered.  When
        it cannot be stored, the connection is closed instead (1011; 1000 when another process
        claimed the station): the station sends again what it did not get an answer for."""
        station = self.station
        try:
            await self.machines.durable()
        except StoreError as exc:
            log.error(  # noqa: TRY400 - the cause is logged by the store writer
                "station %r: %s not stored (%s); closing the connection unanswered",
                station.identity,
                event.action,
                exc,
            )
            if station._close_request is None:
                station._close_request = (
                    (1000, "served by another process", DisconnectReason.CLOSED_BY_US)
                    if isinstance(exc, StaleEpochError)
                    else (1011, "storage unavailable", DisconnectReason.CLOSED_BY_US)
                )
            raise ConnectionLostError(f"station {station.identity!r}: not stored") from exc

    def _boot_bookkeeping(self, event: IncomingCall, response: Response | None) -> None:
        if response is None:
            self.supervisor.boot_failed(event.message_id)
            return
        status = RegistrationStatus(getattr(response, "status"))  # noqa: B009
        interval = int(getattr(response, "interval"))  # noqa: B009
        self.supervisor.boot_answered(event.message_id, status, interval, trio.current_time())

    def _publish_boot(self, event: IncomingCall, response: Response) -> None:
        station = self.station
        status = RegistrationStatus(getattr(response, "status"))  # noqa: B009
        station._publish(
            BootAnswered(
                identity=station.identity,
                version=station.version,
                status=status,
                interval=int(getattr(response, "interval")),  # noqa: B009
                request=event.request,
            )
        )
        if status is RegistrationStatus.ACCEPTED and station.state is StationState.ACCEPTED:
            station._publish(Accepted(identity=station.identity, version=station.version))

    # -- our CALLs -----------------------------------------------------------------------

    def check_call(self, request: Request[Any]) -> CallTicket:
        return self.supervisor.check_csms_call(request.ACTION, request)

    def check_raw_call(self, action: str, payload: Mapping[str, Any]) -> CallTicket:
        return self.supervisor.check_csms_call(action, payload)

    async def reply_received(self, ticket: object, event: CallCompleted) -> None:
        assert isinstance(ticket, CallTicket)
        await self.machines.observe(event.action, ticket.request, event.response, False)

    def call_answered(self, ticket: object, response: Response) -> None:
        # recorded here, before the reader takes the next frame: a triggered message may
        # follow its trigger's answer at once
        assert isinstance(ticket, CallTicket)
        self.supervisor.csms_call_answered(ticket, response)

    def call_done(
        self,
        message_id: str,
        request: Request[Any],
        response: Response | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        self.tally.call_done(request.ACTION, error, trio.current_time() - started)
        self.station._record(
            Direction.CSMS_TO_STATION,
            message_id,
            request.ACTION,
            request,
            response,
            error,
            started,
        )

    def raw_call_done(
        self,
        message_id: str,
        action: str,
        payload: Mapping[str, Any],
        answer: Mapping[str, Any] | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        self.tally.call_done(action, error, trio.current_time() - started)
