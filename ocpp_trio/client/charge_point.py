"""The station side: a charge point that connects to a CSMS, boots, calls, answers, reconnects.

A :class:`ChargePoint` runs one station identity.  :meth:`ChargePoint.run` owns a nursery with:

* the **connection loop** (the task running ``run`` itself): connects through its connector
  (:func:`~ocpp_trio.transport.connect.websocket_connector` by default), serves the connection
  until it drops, waits the randomized exponential back-off (:class:`RetryBackOff`) and
  connects again, forever;
* the **queue flusher**: sends the transaction messages of the offline queue
  (:meth:`ChargePoint.enqueue`), one at a time and in order, whenever the charge point is
  connected and accepted.

Per connection, an :class:`~ocpp_trio.runtime.session.RpcSession` (the engine the CSMS's
``Station`` runs too) holds in its **session nursery**:

* the **reader** (the connection loop's task): reads frames, feeds the sans-IO
  :class:`~ocpp_trio.protocol.rpc.RpcConnection` (``role="station"``), sends what it says to send
  at once, hands replies to the waiting :meth:`ChargePoint.call`, and puts the CSMS's CALLs on a
  bounded channel.  It never runs user code; it answers ``SecurityError`` itself while Rejected and
  ``GenericError`` when the channel is full.
* the **handler runner**: runs the router's handler of each CSMS CALL, one at a time, and sends
  the answer, so a handler may ``await charge_point.call(...)`` without deadlock.  A request
  without a handler goes to the router's fallback, else to the built-in answers
  (TriggerMessage for BootNotification and Heartbeat), else it is answered ``NotSupported``.
* the **registration task**: on a first connection (or after a reboot) it sends BootNotification
  and follows the answer (Pending: boot again after ``interval`` or when triggered; Rejected:
  boot again after ``interval``); on a reconnect of an accepted station it sends nothing and
  resumes.  Once accepted it sends a Heartbeat after each ``interval`` of inactivity.

Offline queue: transaction messages (1.6 Start/StopTransaction and MeterValues with a
transaction id, 2.x TransactionEvent) go through :meth:`ChargePoint.enqueue` whether online or
not, so they always reach the CSMS in order.  Messages queued without an accepted connection
are marked ``offline=true`` (2.x TransactionEvent) when sent.  A 1.6 message that needs the
transaction id the CSMS assigns may be queued as a function that builds it at send time, after
the StartTransaction before it was answered.

The entry points (``open_charge_point``, ``start_charge_point``, ``serve_charge_point``) are in
:mod:`ocpp_trio.client.entry`.  Connection failures are never errors: they are logged and
retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.client.config import (
    BootFactory,
    BootInfo,
    ChargePointConfig,
    ChargePointState,
    ChargePointStatistics,
    QueuedMessage,
    clamp_interval,
)
from ocpp_trio.client.queue import OfflineQueue
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectFailedError,
    ConnectionLostError,
    ErrorCode,
    OCPPError,
    RemoteProtocolError,
)
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.rpc import IncomingCall, IncomingSend, RpcConnection
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.router import RouterBase
from ocpp_trio.runtime.session import RpcSession, SessionCounts, SessionHooks
from ocpp_trio.transport.base import Transport
from ocpp_trio.transport.connect import Connector

__all__ = ["DEFAULT_BOOT", "ChargePoint"]

log = logging.getLogger("ocpp_trio.client")
R = TypeVar("R", bound=Response)

DEFAULT_BOOT: Final = BootInfo(vendor="ocpp-trio", model="ChargePoint")
_TRANSIENT: Final = (CallError, CallTimeoutError, RemoteProtocolError)
_CONNECT_ERRORS: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.TooSlowError,
)


@attrs.define
class _Counts(SessionCounts):
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    boots_sent: int = 0


class ChargePoint:
    """One charge point (station) connected to a CSMS; see the module docs for its tasks.

    Make it with :func:`open_charge_point`, :func:`start_charge_point` or
    :func:`serve_charge_point`; or construct it and run :meth:`run` yourself.

    Args:
        identity: the station's identity.
        connect: opens one connection (see :data:`~ocpp_trio.transport.connect.Connector`).
        versions: the OCPP versions offered, in order of preference.
        router: answers the CSMS's requests (default: an empty one: only the built-in answers).
        boot: what the BootNotification says (a :class:`BootInfo`, or a function of the
            version and the 2.x boot reason returning the request).
        config: timeouts, back-off, queue sizes.
        rng: the random source of the back-off (seed one for reproducible waits).
    """

    def __init__(
        self,
        identity: str,
        connect: Connector,
        *,
        versions: Sequence[Version | str] = (Version.V201,),
        router: RouterBase[ChargePoint] | None = None,
        boot: BootInfo | BootFactory = DEFAULT_BOOT,
        config: ChargePointConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not versions:
            raise ValueError("offer at least one OCPP version")
        self.identity: Final = identity
        self.versions: Final = tuple(dict.fromkeys(Version(v) for v in versions))
        self.router: RouterBase[ChargePoint] = router if router is not None else RouterBase()
        self.config = config or ChargePointConfig()
        self._connect = connect
        self._boot_factory = boot.request if isinstance(boot, BootInfo) else boot
        self._accepted_once = False
        self._rng = rng or random.Random()
        self._version: Version | None = None
        self._registration: RegistrationStatus | None = None
        self._interval: float | None = None
        self._session: _Connection | None = None
        self._connecting = False
        self._changed = trio.Event()
        self._queue = OfflineQueue(
            identity,
            size=self.config.offline_queue_size,
            attempts=self.config.message_attempts,
            attempt_interval=self.config.message_attempt_interval,
            on_change=self._notify,
        )
        self._boot_reason = "PowerUp"
        self._boot_triggers = 0
        self._heartbeat_now = False
        self._reboot_pending = False
        self._last_activity = 0.0
        self._run_scope: trio.CancelScope | None = None
        self._started = False
        self._finished = trio.Event()
        self._counts = _Counts()

    # -- state ---------------------------------------------------------------------------

    @property
    def version(self) -> Version | None:
        """The version of the current connection (or of the last one)."""
        return self._version

    @property
    def state(self) -> ChargePointState:
        """Where the charge point stands (see :class:`ChargePointState`)."""
        session = self._session
        if session is not None:
            return session.state
        return ChargePointState.CONNECTING if self._connecting else ChargePointState.OFFLINE

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._session is not None

    @property
    def accepted(self) -> bool:
        """Whether a connection is open and the CSMS has accepted the charge point on it."""
        return self.state is ChargePointState.ACCEPTED

    @property
    def registration(self) -> RegistrationStatus | None:
        """The last boot answer (kept across reconnects); ``None`` before one, or after a
        reboot."""
        return self._registration

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds of inactivity between Heartbeats: the configured value, else the Accepted
        boot answer's, else ``None`` (not accepted yet)."""
        if self.config.heartbeat_interval is not None:
            return self.config.heartbeat_interval
        return self._interval

    def set_heartbeat_interval(self, seconds: float) -> None:
        """Use ``seconds`` from now on (e.g. after the CSMS changed ``HeartbeatInterval``);
        ``0`` sends no Heartbeat.  The configured ``heartbeat_interval``, if any, still wins."""
        if not seconds >= 0:
            raise ValueError(f"the heartbeat interval must be >= 0, not {seconds}")
        self._interval = seconds
        self._notify()

    def statistics(self) -> ChargePointStatistics:
        """A snapshot of the counters and state."""
        c = self._counts
        return ChargePointStatistics(
            identity=self.identity,
            state=self.state,
            version=self._version,
            connects=c.connects,
            connect_failures=c.connect_failures,
            disconnects=c.disconnects,
            boots_sent=c.boots_sent,
            calls_sent=c.calls_sent,
            calls_answered=c.calls_answered,
            calls_failed=c.calls_failed,
            calls_timed_out=c.calls_timed_out,
            calls_received=c.calls_received,
            handler_errors=c.handler_errors,
            queued=self._queue.pending,
            queue_given_up=self._queue.given_up,
        )

    def __repr__(self) -> str:
        version = self._version.value if self._version else "-"
        return f"<ChargePoint {self.identity!r} {version} {self.state.value}>"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_state(self, predicate: Callable[[ChargePoint], bool]) -> None:
        """Wait until ``predicate(self)`` is true (checked after every change of state).

        Waits for: the predicate, without a time limit.  Cancellation: only of the wait.

        Raises:
            ConnectionLostError: the charge point stopped first.
        """
        while not predicate(self):
            if self._finished.is_set():
                raise ConnectionLostError(f"charge point {self.identity!r} has stopped")
            await self._changed.wait()

    async def wait_accepted(self) -> None:
        """Wait until the charge point is connected and accepted (at once if it is).

        Raises:
            ConnectionLostError: the charge point stopped first.
        """
        await self.wait_state(lambda cp: cp.accepted)

    # -- calling the CSMS ----------------------------------------------------------------

    def _require_session(self, action: str) -> _Connection:
        session = self._session
        if session is None:
            raise ConnectionLostError(f"charge point {self.identity!r} is not connected ({action})")
        return session

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R:
        """Send ``request`` as a CALL and return the CSMS's response.

        One CALL is outstanding per connection: concurrent callers wait their turn in order.
        Nothing is queued while offline (use :meth:`enqueue` for transaction messages).

        Waits for: the turn (not bounded by the timeout), then the answer, for
        ``call_timeout`` seconds (default ``config.call_timeout``).  Cancellation: safe at any
        point; the slot is freed and a late answer dropped.  Closes: nothing.

        Raises:
            CallError: the CSMS answered with a CALLERROR.
            CallTimeoutError: no answer in time (also a ``trio.TooSlowError``).
            ConnectionLostError: not connected, or the connection dropped before the answer.
            RemoteProtocolError: the answer was broken or failed its schema.
            LocalProtocolError: the request is invalid, of another version than the
                connection's, or one a station may not send (nothing was sent).
        """
        session = self._require_session(request.ACTION)
        return await session.rpc.call(request, call_timeout=call_timeout)

    def _check_registration(self, session: _Connection, action: str, error: OCPPError) -> None:
        """A CSMS that answers SecurityError to an accepted station no longer knows it (it
        restarted without a store, say): boot again rather than fail forever."""
        if (
            isinstance(error, CallError)
            and error.code is ErrorCode.SECURITY_ERROR
            and action != "BootNotification"
            and session is self._session
            and session.state is ChargePointState.ACCEPTED
        ):
            log.warning(
                "%s: the CSMS answered %s with SecurityError; booting again",
                self.identity,
                action,
            )
            self._registration = None
            self._boot_reason = "Unknown"
            session.state = ChargePointState.BOOTING
            self._notify()

    async def enqueue(self, message: Request[R] | Callable[[], Request[R]]) -> QueuedMessage[R]:
        """Queue a transaction message; it is sent once every message queued before it is done
        and the charge point is connected and accepted.

        ``message`` is the request, or a function that builds it when its turn comes (for 1.6
        messages that need the transaction id of a StartTransaction queued before them:
        ``lambda: v1_6.StopTransactionRequest(transaction_id=start.result().transaction_id,
        ...)``).  A 2.x TransactionEvent queued while not accepted is sent with
        ``offline=true``.  A message the CSMS answers with a CALLERROR, an invalid answer or none
        in time is sent again, ``config.message_attempts`` times in all.

        Waits for: room in the queue (``config.offline_queue_size``), not for the answer (await
        the returned handle's :meth:`QueuedMessage.wait` for that).  Cancellation: nothing is
        queued.

        Raises:
            ConnectionLostError: the charge point has stopped.
        """
        return await self._queue.put(message, offline=not self.accepted)

    # -- changing state from handlers ----------------------------------------------------

    def after_answer(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a plain function; start a task from it to do I/O) once the answer
        of the handler now running has been sent, or at once outside a handler.

        A message a CSMS request triggers must follow the answer to that request: a handler
        answering TriggerMessage(StatusNotification) passes a function here that starts the
        task sending the StatusNotification.
        """
        session = self._session
        if session is not None:
            session.rpc.defer(action)
        else:
            action()

    def trigger_boot(self) -> None:
        """Send a BootNotification (reason ``Triggered``) now if the charge point is Pending;
        from a handler, once its answer has been sent."""

        def now() -> None:
            self._boot_triggers += 1
            self._notify()

        self.after_answer(now)

    def trigger_heartbeat(self) -> None:
        """Send a Heartbeat now if accepted; from a handler, once its answer has been sent."""

        def now() -> None:
            self._heartbeat_now = True
            self._notify()

        self.after_answer(now)

    def request_reboot(self, reason: str = "RemoteReset") -> None:
        """Reboot: close the connection (1000), connect again at once and boot with ``reason``
        (a 2.x ``BootReason``).  From a handler, this happens once its answer has been sent.

        What a reboot means for the application's own state (running sessions, say) is the
        application's to handle; the offline queue is kept.
        """

        def now() -> None:
            self._registration = None
            self._boot_reason = reason
            self._reboot_pending = True
            session = self._session
            if session is not None:
                session.close = (1000, "rebooting")
                session.rpc.cancel()
            self._notify()

        self.after_answer(now)

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve and reconnect until cancelled.

        Reports through ``task_status`` once its tasks run (before the first connection).
        Waits for: cancellation; never returns otherwise.  Cancellation: the connection is
        closed (1001) and the queued messages' handles fail with ``ConnectionLostError``.
        Closes: every connection, the offline queue.  Exceptions: none from the CSMS's
        behaviour or the network (they are logged and retried); bugs only.

        Raises:
            RuntimeError: ``run`` was already called.
        """
        if self._started:
            raise RuntimeError(f"charge point {self.identity!r} is already running or has run")
        self._started = True
        try:
            async with trio.open_nursery() as nursery:
                self._run_scope = nursery.cancel_scope
                nursery.start_soon(self._queue.run, self._call_any, self.wait_accepted)
                task_status.started()
                await self._connection_loop()
        finally:
            self._run_scope = None
            self._queue.close()
            self._finished.set()
            self._notify()

    async def aclose(self) -> None:
        """Stop the charge point (as cancelling :meth:`run` does); idempotent.

        Waits for: :meth:`run` to finish, when it is running.
        """
        if self._run_scope is not None:
            self._run_scope.cancel()
        if self._started:
            await self._finished.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def _connection_loop(self) -> None:
        failures = 0
        while True:
            self._accepted_once = False
            self._connecting = True
            self._notify()
            try:
                await self._connect_and_serve()
            except* _CONNECT_ERRORS as group:
                self._counts.connect_failures += 1
                log.warning("%s: %s", self.identity, _describe(group))
            finally:
                self._connecting = False
            if self._reboot_pending:
                self._reboot_pending = False
                failures = 0
                continue
            failures = 1 if self._accepted_once else failures + 1
            delay = self.config.retry_back_off.delay(failures, self._rng)
            log.info("%s: reconnecting in %.1f s", self.identity, delay)
            self._notify()
            await trio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        async with self._connect(self.versions) as transport:
            await self._serve(transport)

    async def _serve(self, transport: Transport) -> None:
        token = transport.info.subprotocol
        version = Version.from_subprotocol(token) if token else None
        if version is None or version not in self.versions:
            await transport.aclose(1002, "no agreed OCPP version")
            raise ConnectFailedError(
                f"the CSMS agreed on no OCPP version we offered (subprotocol {token!r})"
            )
        if self._version is not None and version is not self._version:
            self._registration = None  # made in another version's terms: boot again
        self._version = version
        session = _Connection(self, transport, version)
        self._session = session
        self._counts.connects += 1
        log.info("%s: connected (OCPP %s, %s)", self.identity, version, transport.info.remote)
        self._notify()

        async def start(nursery: trio.Nursery) -> None:
            nursery.start_soon(self._register, session)

        try:
            await session.rpc.run(start)
        finally:
            self._session = None
            self._counts.disconnects += 1
            session.rpc.disconnect(f"{self.identity}: the connection dropped")
            with trio.CancelScope(shield=True):
                await transport.aclose(*session.close)
            log.info("%s: disconnected (%s)", self.identity, transport.closed or "closed")
            self._notify()

    def _builtin_answer(self, request: Request[Any]) -> Response | None:
        """TriggerMessage for BootNotification (while not accepted) and Heartbeat."""
        if request.ACTION != "TriggerMessage":
            return None
        wanted = str(getattr(request, "requested_message", ""))
        if wanted == "BootNotification":
            if self.accepted:
                status = "Rejected"  # F06.FR.17: not while accepted
            else:
                self.trigger_boot()
                status = "Accepted"
        elif wanted == "Heartbeat":
            self.trigger_heartbeat()
            status = "Accepted"
        else:
            status = "NotImplemented"
        return type(request).RESPONSE.from_json({"status": status})

    # -- registration and heartbeats -----------------------------------------------------

    async def _register(self, session: _Connection) -> None:
        try:
            if self._registration is RegistrationStatus.ACCEPTED:
                log.info("%s: resumed as accepted (no BootNotification)", self.identity)
                self._now_accepted(session)
            while True:
                if session.state is not ChargePointState.ACCEPTED:
                    await self._boot(session)
                await self._keep_alive(session)
        except ConnectionLostError:
            return  # the reader sees it too and ends the session

    def _now_accepted(self, session: _Connection) -> None:
        session.state = ChargePointState.ACCEPTED
        self._accepted_once = True
        self._last_activity = trio.current_time()
        self._notify()

    async def _boot(self, session: _Connection) -> None:
        reason = self._boot_reason
        while True:
            triggers = self._boot_triggers
            request = self._boot_factory(session.version, reason)
            self._counts.boots_sent += 1
            try:
                response = await self.call(request)
            except _TRANSIENT as exc:
                log.warning("%s: BootNotification failed: %s", self.identity, exc)
                await self._wait_boot_trigger(triggers, self.config.boot_retry_interval)
                continue
            status = RegistrationStatus(str(getattr(response, "status")))  # noqa: B009
            interval = int(getattr(response, "interval"))  # noqa: B009
            self._registration = status
            log.info("%s: boot answered %s (interval %d s)", self.identity, status, interval)
            if status is RegistrationStatus.ACCEPTED:
                self._interval = float(interval)
                self._boot_reason = "PowerUp"
                self._now_accepted(session)
                return
            wait = clamp_interval(interval, self.config.boot_retry_interval)
            if status is RegistrationStatus.PENDING:
                session.state = ChargePointState.PENDING
                self._notify()
                triggered = await self._wait_boot_trigger(triggers, wait)
                reason = "Triggered" if triggered else self._boot_reason
            else:
                session.state = ChargePointState.REJECTED
                self._notify()
                await trio.sleep(wait)  # B03: nothing at all until the interval has passed
                reason = self._boot_reason

    async def _wait_boot_trigger(self, since: int, seconds: float) -> bool:
        """Wait ``seconds`` or until a boot is triggered; returns whether it was."""
        with trio.move_on_after(seconds):
            while self._boot_triggers == since:
                await self._changed.wait()
            return True
        return False

    async def _keep_alive(self, session: _Connection) -> None:
        while session.state is ChargePointState.ACCEPTED:
            changed = self._changed
            interval = self.heartbeat_interval
            due = self._last_activity + interval if interval else float("inf")
            if self._heartbeat_now or trio.current_time() >= due:
                self._heartbeat_now = False
                heartbeat = messages.decode_request(session.version, "Heartbeat", {})
                assert isinstance(heartbeat, Request)
                try:
                    await self.call(heartbeat)
                except _TRANSIENT as exc:
                    log.warning("%s: Heartbeat failed: %s", self.identity, exc)
                continue
            with trio.move_on_at(due):
                await changed.wait()

    async def _call_any(self, request: Request[Any]) -> Response:
        return await self.call(request)


def _describe(group: BaseExceptionGroup[BaseException]) -> str:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    if isinstance(leaf, ConnectFailedError):
        return str(leaf)
    if isinstance(leaf, trio.TooSlowError):
        return "connection timed out"
    return f"connection failed: {type(leaf).__name__}: {leaf}"


class _Connection(SessionHooks):
    """One connection of a charge point: its session, registration state and closing code;
    also the station side's rules plugged into the session (its hooks)."""

    def __init__(self, charge_point: ChargePoint, transport: Transport, version: Version) -> None:
        self.charge_point = charge_point
        self.version = version
        self.state = ChargePointState.BOOTING
        self.close: tuple[int, str] = (1001, "station going away")
        config = charge_point.config
        self.rpc: RpcSession[ChargePoint] = RpcSession(
            charge_point,
            transport,
            RpcConnection(version, role="station", validate_outbound=config.validate_outbound),
            charge_point.router,
            self,
            charge_point._counts,
            who=f"charge point {charge_point.identity!r}",
            peer_name="the CSMS",
            call_timeout=config.call_timeout,
            queue_size=config.handler_queue_size,
            logger=log,
        )
        self.rpc.connected = True

    def screen_call(
        self, event: IncomingCall, now: float
    ) -> tuple[Response | None, CallError | None] | None:
        if self.state is ChargePointState.REJECTED:
            # B03.FR.08: a Rejected station answers every CSMS CALL with SecurityError
            return None, CallError(ErrorCode.SECURITY_ERROR, "the charge point is not accepted")
        return None

    def screen_send(self, event: IncomingSend) -> bool:
        log.info("%s: ignored SEND %s", self.charge_point.identity, event.action)
        return False

    async def default_answer(self, request: Request[Any]) -> Response | None:
        return self.charge_point._builtin_answer(request)

    def check_call(self, request: Request[Any]) -> None:
        self.charge_point._last_activity = trio.current_time()

    def call_done(
        self,
        message_id: str,
        request: Request[Any],
        response: Response | None,
        error: OCPPError | None,
        started: float,
    ) -> None:
        if error is not None:
            self.charge_point._check_registration(self, request.ACTION, error)
