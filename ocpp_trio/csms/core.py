"""The CSMS object: the station registry, lifecycle events, and the three entry tiers.

Entry tiers (as trio and trio-websocket do):

* ``async with open_csms(router, host, port) as csms:`` owns its nursery;
* ``csms = await start_csms(nursery, router, host, port)`` runs in the caller's nursery;
* ``csms: CSMS = await nursery.start(serve_csms, router, host, port)`` for ``nursery.start``.

``port=None`` serves no socket: stations are then handed in with
:meth:`CSMS.handle_connection` or :meth:`CSMS.serve_station` (tests over memory transports).

ExceptionGroup policy: ``serve_csms`` (and ``start_csms``) let groups propagate.
``open_csms`` lets the exception of the ``async with`` body through unwrapped; a failure of the
CSMS's own background tasks becomes one :class:`CSMSError` raised ``from`` the group (also when
the body failed at the same time; the group holds both).  An error while starting (e.g. the
port is taken: ``OSError``) is raised as is.  Cancellation passes through untouched.

Duplicate connections: a new connection for an identity that is connected replaces the old one
(closed with 1000, "replaced by a new connection"), or, with :attr:`DuplicatePolicy.REFUSE`, is
itself closed with 1008.  There are never two live sessions for one identity.  The policy is
CSMS-wide (:attr:`CSMSConfig.duplicate_connections`) and may be set per station
(:meth:`CSMS.set_duplicate_policy`, or in the station's credential record, which wins for the
connections the authenticator let in with it).

One-shot identities: where any identity may connect (no authentication), each one would leave
its machines in memory and a record in the store for good.  With
:attr:`CSMSConfig.forget_unbooted_after`, an identity that never booted (no registration) and
has been gone that long is forgotten: its machines, and its record in the store (at start, the
store's own leftovers too, where the store can sweep them).

Persistence: with ``CSMSConfig(store=...)`` every station's registration and machines are kept
in the store, written ahead of the answers that acknowledge them, and a station that connects is
resumed from it (see :mod:`ocpp_trio.csms.recovery`); :meth:`CSMS.run` then runs the store writer.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import MappingProxyType
from typing import NoReturn, Protocol, TypeVar, runtime_checkable

import attrs
import trio

from ocpp_trio.csms.ledger import Ledger, LedgerConfig
from ocpp_trio.csms.recovery import Recovery, RecoveryAction, RecoveryConfig, RecoveryPlan
from ocpp_trio.domain.credentials import DuplicatePolicy
from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.events import MachineEvent, TransactionChanged
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import TransactionIdAllocator, TransactionIdCounter
from ocpp_trio.errors import CSMSError, StationOfflineError, StoreError
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import (
    Broadcast,
    BroadcastStatistics,
    DisconnectReason,
    ExtraHandler,
    ExtraHandlerRunner,
    StationEvent,
    Subscription,
)
from ocpp_trio.runtime.groups import open_service, single_failure
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.machines_events import E, subscribe_to
from ocpp_trio.runtime.station import CallHook, Station, StationConfig, extra_runner
from ocpp_trio.runtime.tally import CallStatistics, CallTally, Latency, LatencySnapshot
from ocpp_trio.store.base import Registration, ReleasesStations, Store, SweepsUnbooted
from ocpp_trio.store.writer import StoredTransactionIds, StoreWriter, StoreWriterStatistics
from ocpp_trio.transport.base import CloseCode, Transport
from ocpp_trio.transport.server import (
    ConnectionRequest,
    RequestChecker,
    ServerConfig,
    ServerInfo,
    StationConnection,
    VersionSelector,
    serve_ocpp_websocket,
)

__all__ = [
    "CSMS",
    "CSMSConfig",
    "CSMSStatistics",
    "DuplicatePolicy",
    "open_csms",
    "serve_csms",
    "start_csms",
]

log = logging.getLogger("ocpp_trio")

R = TypeVar("R", bound=Response)


class RemoteCaller(Protocol):
    """Sends a CALL to a station that another node of the CSMS serves (see
    :mod:`ocpp_trio.csms.cluster`)."""

    async def call(
        self, identity: str, request: Request[R], *, call_timeout: float | None = None
    ) -> R:
        """The station's response; raises as :meth:`CSMS.call` says."""
        ...

    async def version_of(self, identity: str) -> Version | None:
        """The OCPP version ``identity`` last connected with (to any node), ``None`` when
        unknown."""
        ...


@runtime_checkable
class AdmissionSettings(Protocol):
    """A ``check_request`` that knows the settings it let a connection in with (the
    :class:`~ocpp_trio.security.auth.StationAuthenticator`): the duplicate-connection policy
    is then the one of the same settings, never one changed between the two steps."""

    def admitted_duplicate_policy(self, request: ConnectionRequest) -> DuplicatePolicy | None:
        """The policy of the settings that let ``request`` in (``None``: they name none)."""
        ...


@attrs.frozen(kw_only=True)
class CSMSConfig:
    """How the CSMS behaves.

    Attributes:
        station: the configuration of every station connection.
        server: WebSocket serving (versions, limits, timeouts).
        duplicate_connections: see :class:`DuplicatePolicy`.
        event_buffer: default buffer of each event subscriber (events beyond it are dropped
            for that subscriber and counted).
        close_timeout: seconds :meth:`CSMS.aclose` waits for its stations to close.
        transaction_ids: assigns 1.6 transaction ids, CSMS-wide (save its state to continue
            after a restart, e.g. ``TransactionIdCounter.next_id``; with a store, a
            ``TransactionIdCounter`` is continued from the stored counter and kept there).
        store: where station state is kept (``None``: in memory only); the application opens
            and closes it (e.g. ``open_sqlite_store``), the CSMS writes to it while it runs.
        recovery: how stations are resumed from the store, and what happens when they cannot.
        ledger: how long the transaction ledger (in the store) keeps finished transactions.
        forget_unbooted_after: seconds after which an identity that never booted and is gone
            is forgotten (see the module docs); ``None``: kept (the application decides).
    """

    station: StationConfig = attrs.Factory(StationConfig)
    server: ServerConfig = attrs.Factory(ServerConfig)
    duplicate_connections: DuplicatePolicy = DuplicatePolicy.REPLACE
    event_buffer: int = 64
    close_timeout: float = 10.0
    transaction_ids: TransactionIdAllocator = attrs.field(factory=TransactionIdCounter)
    store: Store | None = None
    recovery: RecoveryConfig = attrs.Factory(RecoveryConfig)
    ledger: LedgerConfig = attrs.Factory(LedgerConfig)
    forget_unbooted_after: float | None = None


@attrs.frozen(kw_only=True)
class CSMSStatistics:
    """A snapshot of the CSMS's counters."""

    stations_connected: int
    connections_served: int
    connections_replaced: int
    connections_refused: int
    events: BroadcastStatistics
    #: exchanges CSMS-wide extra handlers missed because their channel was full
    extra_dropped: int
    #: exceptions raised by CSMS-wide extra handlers
    extra_errors: int
    #: the machines' events (transactions, reports, statuses, ...)
    machine_events: BroadcastStatistics | None = None
    #: station identities with machines (added, or seen connected)
    stations_known: int = 0
    #: the store writer's counters, with a store
    store: StoreWriterStatistics | None = None
    #: the calls of every station since the CSMS started (they survive disconnections)
    calls: CallStatistics | None = None
    #: connected stations by (OCPP version, registration state)
    stations_by_state: Mapping[tuple[str, str], int] = attrs.field(factory=dict)
    #: station CALLs waiting for their handler runner, in all, and at the busiest station
    handler_queue: int = 0
    handler_queue_max: int = 0
    #: how long the store's commits took, with a store
    store_commits: LatencySnapshot | None = None
    #: identities forgotten because they never booted (``forget_unbooted_after``)
    stations_forgotten: int = 0


@attrs.define
class _Counts:
    served: int = 0
    replaced: int = 0
    refused: int = 0
    forgotten: int = 0


class CSMS:
    """A central system: serves stations with ``router`` and keeps track of them.

    Args:
        router: answers the stations' requests.
        config: see :class:`CSMSConfig`.
    """

    def __init__(self, router: Router, *, config: CSMSConfig | None = None) -> None:
        self.router = router
        self.config = config or CSMSConfig()
        #: where the server listens, once serving (``None`` without a listener)
        self.server_info: ServerInfo | None = None
        self._stations: dict[str, Station] = {}
        # The registration remembered per identity between connections (in memory only).
        self._statuses: dict[str, RegistrationStatus] = {}
        self._events: Broadcast[StationEvent] = Broadcast(name="CSMS event")
        # The machines (device model, EVSEs, transactions, reports) per identity; they outlive
        # connections (in memory only).
        self._machines: dict[str, StationMachines] = {}
        self._machine_events: Broadcast[MachineEvent] = Broadcast(name="CSMS machine event")
        self._extras: list[ExtraHandlerRunner[Station]] = []
        self._call_hooks: list[CallHook] = []
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._counts = _Counts()
        self._tally = CallTally()
        self._commit_latency = Latency()
        #: the upgrade check :func:`serve_csms` runs with (the metrics read its statistics)
        self.check_request: RequestChecker | None = None
        self._writer: StoreWriter | None = None
        self._recovery: Recovery | None = None
        self._ledger: Ledger | None = None
        self._duplicate_policies: dict[str, DuplicatePolicy] = {}
        # identities that never booted, by the trio time their last connection ended
        self._unbooted_gone: dict[str, float] = {}
        # identities the application registered (add_station): never forgotten
        self._seeded: set[str] = set()
        self._transaction_ids = self.config.transaction_ids
        #: sends CALLs to stations served by other nodes (set by a cluster, ``None``: none)
        self.remote: RemoteCaller | None = None
        if self.config.store is not None:
            self._ledger = Ledger(self.config.store, self.config.ledger)
            recovery = self.config.recovery
            self._writer = StoreWriter(
                self.config.store,
                snapshot_every=recovery.snapshot_every,
                on_commit=self._committed,
            )
            self._recovery = Recovery(self._writer, recovery, self._machine_events)
            if type(self._transaction_ids) is TransactionIdCounter:
                self._transaction_ids = StoredTransactionIds.wrapping(
                    self._writer, self._transaction_ids
                )

    @property
    def ledger(self) -> Ledger:
        """The transaction ledger: every finished transaction, kept in the store.

        Raises:
            RuntimeError: this CSMS has no store (``CSMSConfig(store=...)``).
        """
        if self._ledger is None:
            raise RuntimeError("a CSMS without a store keeps no ledger (CSMSConfig(store=...))")
        return self._ledger

    @property
    def store(self) -> Store | None:
        """Where station state is kept (``config.store``), ``None`` for memory only."""
        return self.config.store

    # -- registry ------------------------------------------------------------------------

    @property
    def stations(self) -> Mapping[str, Station]:
        """The connected stations by identity (a read-only live view)."""
        return MappingProxyType(self._stations)

    def get_station(self, identity: str) -> Station | None:
        """The connected station ``identity``, or ``None``."""
        return self._stations.get(identity)

    async def call(
        self, identity: str, request: Request[R], *, call_timeout: float | None = None
    ) -> R:
        """Send ``request`` to station ``identity``, connected here or, in a cluster
        (:attr:`remote`), to another node, and return its response.

        Waits for: the station's answer, at most ``call_timeout`` seconds (default: the
        station configuration's).  Cancellation: as :meth:`Station.call`; a routed command
        still ends with an outcome of its own.

        Raises:
            StationOfflineError: no node serves the station (nothing was sent).
            StateError: its registration state forbids the CALL now.
            CallError: it answered with a CALLERROR.
            CallTimeoutError: no answer in time.
            ConnectionLostError: its connection here dropped before the answer.
        """
        station = self._stations.get(identity)
        if station is not None:
            return await station.call(request, call_timeout=call_timeout)
        if self.remote is not None:
            return await self.remote.call(identity, request, call_timeout=call_timeout)
        raise StationOfflineError(f"station {identity!r} is not connected")

    def remembered_status(self, identity: str) -> RegistrationStatus | None:
        """The registration kept for ``identity`` between connections."""
        return self._statuses.get(identity)

    def duplicate_policy(self, identity: str) -> DuplicatePolicy:
        """The duplicate-connection policy of ``identity`` (its own, else the CSMS's); a
        connection that ``check_request`` let in with settings naming a policy (a station's
        credential record) follows that one."""
        return self._duplicate_policies.get(identity, self.config.duplicate_connections)

    def _duplicate_policy_of(
        self, identity: str, connection: StationConnection | None
    ) -> DuplicatePolicy:
        checker: object = self.check_request  # any callable; some know their settings
        if connection is not None and isinstance(checker, AdmissionSettings):
            admitted = checker.admitted_duplicate_policy(connection.request)
            if admitted is not None:
                return admitted
        return self.duplicate_policy(identity)

    def set_duplicate_policy(self, identity: str, policy: DuplicatePolicy | str | None) -> None:
        """Give ``identity`` its own duplicate-connection policy (``None``: the CSMS's)."""
        if policy is None:
            self._duplicate_policies.pop(identity, None)
        else:
            self._duplicate_policies[identity] = DuplicatePolicy(policy)

    def remember_status(self, identity: str, status: RegistrationStatus | None) -> None:
        """Seed (or forget, with ``None``) the registration of ``identity``: an ``ACCEPTED``
        station's next connection starts accepted, without waiting for a BootNotification.
        With a store, the registration is stored too (with the writer's next commit)."""
        self._remember(identity, status)
        if self._writer is not None:
            registration = (
                None
                if status is None
                else Registration(
                    status=RegistrationStatus(status), at=datetime.datetime.now(datetime.UTC)
                )
            )
            self._writer.put_registration(identity, registration)

    def _remember(self, identity: str, status: RegistrationStatus | None) -> None:
        if status is None:
            self._statuses.pop(identity, None)
        else:
            self._statuses[identity] = RegistrationStatus(status)

    def add_station(
        self,
        identity: str,
        *,
        device_model: DeviceModel | None = None,
        snapshot: StationSnapshot | None = None,
    ) -> StationMachines:
        """Register ``identity`` before it connects (or update a known one), seeding its
        device model and/or restoring its machines from ``snapshot``.

        Returns the identity's :class:`StationMachines` (query its state at any time, also
        while the station is offline).  A known identity keeps its machines; ``device_model``
        then replaces its model, and ``snapshot`` is refused while it is connected.  With a
        store, what is seeded here replaces the stored state when the station next connects.

        Raises:
            RuntimeError: ``snapshot`` for a connected station.
        """
        self._seeded.add(identity)
        self._unbooted_gone.pop(identity, None)
        return self._add_station(identity, device_model=device_model, snapshot=snapshot)

    def _add_station(
        self,
        identity: str,
        *,
        device_model: DeviceModel | None = None,
        snapshot: StationSnapshot | None = None,
    ) -> StationMachines:
        machines = self._machines.get(identity)
        if snapshot is not None:
            if identity in self._stations:
                raise RuntimeError(f"station {identity!r} is connected; cannot restore it now")
            machines = None
        if machines is None:
            machines = StationMachines(
                identity,
                config=self.config.station.machines,
                initial=snapshot,
                device_model=device_model,
                events=self._machine_events,
                transaction_ids=self._transaction_ids,
            )
            self._machines[identity] = machines
        elif device_model is not None:
            machines.set_device_model(device_model)
        if self._recovery is not None and (snapshot is not None or device_model is not None):
            self._recovery.seed(identity, snapshot=snapshot is not None, device_model=device_model)
        return machines

    def machines(self, identity: str) -> StationMachines | None:
        """The machines of ``identity`` (connected or not), or ``None`` if never seen."""
        return self._machines.get(identity)

    def subscribe_events(
        self, kind: type[E], *, identity: str | None = None, buffer: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[E]]:
        """Subscribe to events of type ``kind`` and its subclasses, typed: ``async with
        csms.subscribe_events(TransactionEnded) as ended: async for event in ended: ...``.

        ``kind`` may be a machine event (``MachineEvent`` for all of them,
        ``TransactionChanged`` for the transaction events, ``ReportCompleted``, ...) or a
        lifecycle event (``Connected``, ``Disconnected``, ...); ``identity`` keeps one station's.
        Buffering and the slow-subscriber policy are those of :meth:`subscribe`.

        Raises:
            TypeError: ``kind`` is not an event class.
        """
        return subscribe_to(
            kind,
            machine_events=self._machine_events,
            lifecycle=self._events,
            identity=identity,
            buffer=self.config.event_buffer if buffer is None else buffer,
        )

    def subscribe_transactions(
        self, *, identity: str | None = None, buffer: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[TransactionChanged]]:
        """Subscribe to transaction started/updated/ended events (see
        :meth:`subscribe_events`)."""
        return self.subscribe_events(TransactionChanged, identity=identity, buffer=buffer)

    def subscribe(
        self, *, buffer: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[StationEvent]]:
        """Subscribe to lifecycle events: ``async with csms.subscribe() as events: async for
        event in events: ...``.

        Each subscriber has its own buffer (default ``config.event_buffer``); when it is full,
        events are dropped for that subscriber and counted (``events.dropped``): a slow
        subscriber never blocks a station.  The iteration ends when the CSMS closes.
        """
        return self._events.subscribe(buffer=self.config.event_buffer if buffer is None else buffer)

    def add_extra_handler(
        self,
        handler: ExtraHandler[Station],
        *,
        buffer: int | None = None,
        max_failures: int | None = None,
        name: str | None = None,
    ) -> None:
        """Install an extra handler for every station (see :meth:`Station.add_extra_handler`
        for the policy); it runs as one task of the CSMS, fed by all stations."""
        runner = extra_runner(
            self.config.station, handler, buffer=buffer, max_failures=max_failures, name=name
        )
        self._extras.append(runner)
        if self._nursery is not None:
            self._nursery.start_soon(runner.run)

    def add_call_hook(self, hook: CallHook) -> None:
        """Run ``await hook(station, request)`` before each CALL to any station (see
        :meth:`Station.add_call_hook`); also for the stations already connected."""
        self._call_hooks.append(hook)

    def _committed(self, seconds: float, writes: int, ok: bool) -> None:
        self._commit_latency.observe(seconds)

    def statistics(self) -> CSMSStatistics:
        """A snapshot of the counters."""
        by_state: dict[tuple[str, str], int] = {}
        queued = busiest = 0
        for station in self._stations.values():
            key = (station.version.value, station.state.value)
            by_state[key] = by_state.get(key, 0) + 1
            waiting = station.queued_calls
            queued += waiting
            busiest = max(busiest, waiting)
        return CSMSStatistics(
            stations_connected=len(self._stations),
            connections_served=self._counts.served,
            connections_replaced=self._counts.replaced,
            connections_refused=self._counts.refused,
            events=self._events.statistics(),
            extra_dropped=sum(r.dropped for r in self._extras),
            extra_errors=sum(r.errors for r in self._extras),
            machine_events=self._machine_events.statistics(),
            stations_known=len(self._machines),
            store=self._writer.statistics() if self._writer is not None else None,
            calls=self._tally.statistics(),
            stations_by_state=by_state,
            handler_queue=queued,
            handler_queue_max=busiest,
            store_commits=self._commit_latency.snapshot() if self._writer is not None else None,
            stations_forgotten=self._counts.forgotten,
        )

    # -- serving -------------------------------------------------------------------------

    async def handle_connection(self, connection: StationConnection) -> None:
        """Serve one accepted connection (the server's handler).

        Waits for: the connection to end.  Cancellation: the station is closed (1001).
        Closes: the connection's transport.  Exceptions: none from the station's behaviour.
        """
        await self.serve_station(
            connection.transport,
            connection.identity,
            connection.version,
            connection=connection,
        )

    async def serve_station(
        self,
        transport: Transport,
        identity: str,
        version: Version | str,
        *,
        connection: StationConnection | None = None,
        task_status: trio.TaskStatus[Station | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve a station over any transport (e.g. a memory pair in tests).

        Reports the :class:`Station` through ``task_status`` once it runs (``None`` when the
        connection was refused as a duplicate, or the CSMS is closed).

        Waits for: the connection to end.  Cancellation: the station is closed (1001).
        Closes: ``transport``, always.  Exceptions: none from the station's behaviour.
        """
        if self._closed:
            await transport.aclose(CloseCode.GOING_AWAY, "CSMS shutting down")
            task_status.started(None)
            return
        plan: RecoveryPlan | None = None
        if self._recovery is not None and identity not in self._stations:
            try:
                plan = await self._claim(identity, Version(version))
            except StoreError as exc:
                log.error("station %r: the store failed (%s); connection closed", identity, exc)  # noqa: TRY400
                await transport.aclose(CloseCode.INTERNAL_ERROR, "storage unavailable")
                task_status.started(None)
                return
        old = self._stations.get(identity)
        if (
            old is not None
            and self._duplicate_policy_of(identity, connection) is DuplicatePolicy.REFUSE
        ):
            self._counts.refused += 1
            log.warning("station %r: already connected; new connection refused", identity)
            await transport.aclose(CloseCode.POLICY_VIOLATION, "already connected")
            task_status.started(None)
            return
        if old is not None:
            initial_status = old.status
        elif plan is not None:
            initial_status = plan.status
        else:
            initial_status = self._statuses.get(identity)
        station = Station(
            identity,
            version,
            transport,
            self.router,
            config=self.config.station,
            initial_status=initial_status,
            request=connection.request if connection is not None else None,
            events=self._events,
            shared_extra_handlers=self._extras,
            shared_call_hooks=self._call_hooks,
            machines=self._add_station(identity),
            csms=self,
            tally=self._tally,
        )
        on_started = self._recovery_started(station, plan) if plan is not None else None
        # registered before the old one is closed, so a third connection arriving meanwhile
        # replaces this one: never two live sessions for one identity
        self._stations[identity] = station
        self._unbooted_gone.pop(identity, None)
        self._counts.served += 1
        try:
            if old is not None:
                self._counts.replaced += 1
                log.warning("station %r: a new connection replaces the old one", identity)
                await old._close(
                    CloseCode.NORMAL, "replaced by a new connection", DisconnectReason.REPLACED
                )
                station.supervisor.restore(old.status)  # in case it changed while closing
            await station.run(task_status=_ReportStation(task_status, station, on_started))
        finally:
            claim: int | None = None  # the epoch of the claim this connection was served under
            if self._stations.get(identity) is station:
                # read before the identity is free to be claimed again by a new connection
                journal = self._recovery.journal(identity) if self._recovery else None
                claim = journal.epoch if journal is not None else None
                del self._stations[identity]
                forgotten = self._recovery is not None and self._recovery.forget(identity)
                self._remember(identity, None if forgotten else station.status)
                if identity not in self._statuses and identity not in self._seeded:
                    self._unbooted_gone[identity] = trio.current_time()
        if claim is not None:  # the connection ended (not the CSMS): nobody serves it here now
            await self._release(identity, claim)

    async def _release(self, identity: str, epoch: int) -> None:
        """Tell a store that records who serves each station (a cluster's) that this process
        no longer serves ``identity`` under claim ``epoch`` (a later claim, here or by another
        process, is left alone). Best effort: a stale owner only routes calls to a process
        that answers "offline"."""
        store: object = self.config.store  # mypy: a Store may have the capability too
        if not isinstance(store, ReleasesStations):
            return
        try:
            await store.release(identity, epoch)
        except StoreError as exc:
            log.info("station %r: its owner is not cleared in the store: %s", identity, exc)

    async def _claim(self, identity: str, version: Version) -> RecoveryPlan | None:
        """Claim ``identity`` in the store and restore its machines (``None``: another
        connection for it registered meanwhile, and this one replaces it as usual)."""
        recovery = self._recovery
        assert recovery is not None
        if not recovery.writer.running:
            raise RuntimeError("a CSMS with a store serves stations only while CSMS.run runs")
        lock = recovery.lock(identity)
        try:
            async with lock:
                if identity in self._stations:
                    return None
                known = identity in self._machines
                machines = self._add_station(identity)
                plan = await recovery.claim(identity, version, machines, known=known)
                self._remember(identity, plan.status)
                return plan
        finally:
            recovery.unlock(identity)

    def _recovery_started(self, station: Station, plan: RecoveryPlan) -> Callable[[], None] | None:
        """What to start once ``station`` runs: the fallback Reset of a failed recovery, and
        the watch for a resumed station that does not take itself for accepted."""
        recovery = self._recovery
        assert recovery is not None
        if plan.resumed and recovery.config.watch_security_errors:
            station.add_extra_handler(
                recovery.watcher(plan.journal), buffer=64, max_failures=0, name="recovery watch"
            )
        if plan.action is not RecoveryAction.RESET:
            return None

        def start() -> None:
            if self._nursery is not None:
                self._nursery.start_soon(recovery.send_reset, station)

        return start

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the CSMS's own tasks (CSMS-wide extra handlers; with a store, the store writer
        and the ledger's pruning) until cancelled.

        Waits for: cancellation.  Cancellation: closes every station (1001, bounded by
        ``config.close_timeout``) and ends every event subscription.
        Closes: the stations, the event broadcast.  Exceptions: bugs only.
        """
        try:
            async with trio.open_nursery() as nursery:
                if self._writer is not None:
                    if isinstance(self._transaction_ids, StoredTransactionIds):
                        await self._transaction_ids.load()
                    await nursery.start(self._writer.run)
                if self._ledger is not None and self._ledger.config.retention is not None:
                    nursery.start_soon(self._ledger.keep_pruned)
                self._nursery = nursery
                for runner in self._extras:
                    nursery.start_soon(runner.run)
                if self.config.forget_unbooted_after is not None:
                    await self._sweep_store(self.config.forget_unbooted_after)
                    nursery.start_soon(
                        self._forget_unbooted_loop, self.config.forget_unbooted_after
                    )
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self.aclose()

    async def forget_unbooted(self, older_than: float) -> list[str]:
        """Forget every identity that never booted and has been gone ``older_than`` seconds
        or more: its machines, and its record in the store.  Returns the identities.

        Waits for: the store (pending writes first).  Cancellation: safe; an identity is
        forgotten whole or not at all.  Closes: nothing.
        """
        now = trio.current_time()
        due = [i for i, gone in self._unbooted_gone.items() if now - gone >= older_than]
        forgotten: list[str] = []
        for identity in due:
            if await self._forget_unbooted(identity):
                forgotten.append(identity)
        if forgotten:
            log.info("forgot %d station(s) that never booted", len(forgotten))
        return forgotten

    async def _forget_unbooted(self, identity: str) -> bool:
        recovery = self._recovery
        if recovery is None:
            return self._drop_unbooted(identity)
        lock = recovery.lock(identity)
        try:
            async with lock:
                if not self._drop_unbooted(identity):
                    return False
                recovery.drop(identity)
                with trio.CancelScope(shield=True):
                    await recovery.writer.flush()
                    await recovery.writer.store.forget(identity)
                return True
        finally:
            recovery.unlock(identity)

    def _drop_unbooted(self, identity: str) -> bool:
        if (
            identity in self._stations
            or identity in self._statuses
            or identity in self._seeded
            or identity not in self._unbooted_gone
        ):
            self._unbooted_gone.pop(identity, None)
            return False
        del self._unbooted_gone[identity]
        self._machines.pop(identity, None)
        self._counts.forgotten += 1
        return True

    async def _forget_unbooted_loop(self, older_than: float) -> None:
        period = min(max(older_than / 2, 0.05), 60.0)
        while True:
            await trio.sleep(period)
            try:
                await self.forget_unbooted(older_than)
            except StoreError as exc:
                log.warning("forgetting stations that never booted failed: %s", exc)

    async def _sweep_store(self, older_than: float) -> None:
        """Forget the store's own unbooted leftovers (from earlier runs), where it can."""
        store: object = self.config.store
        if not isinstance(store, SweepsUnbooted):
            return
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=older_than)
        try:
            gone = await store.forget_unbooted(cutoff)
        except StoreError as exc:
            log.warning("sweeping stations that never booted failed: %s", exc)
            return
        if gone:
            log.info("forgot %d stored station(s) that never booted", len(gone))

    async def aclose(self) -> None:
        """Close every station (1001) and end the event subscriptions; idempotent.

        Waits for: the stations to close, at most ``config.close_timeout`` seconds.
        Closes: the stations and the broadcast; new connections are refused afterwards.
        With a store, what the stations left to write is committed (not the store itself).
        """
        self._closed = True
        with trio.move_on_after(self.config.close_timeout):
            async with trio.open_nursery() as nursery:
                for station in list(self._stations.values()):
                    nursery.start_soon(station.aclose, CloseCode.GOING_AWAY, "CSMS shutting down")
        if self._writer is not None:
            with trio.move_on_after(self.config.close_timeout):
                await self._writer.flush()
        self._events.close()
        self._machine_events.close()


class _ReportStation:
    """A ``TaskStatus[None]`` for :meth:`Station.run` that reports the station itself."""

    def __init__(
        self,
        task_status: trio.TaskStatus[Station | None],
        station: Station,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        self._task_status = task_status
        self._station = station
        self._on_started = on_started

    def started(self, value: object = None) -> None:
        self._task_status.started(self._station)
        if self._on_started is not None:
            self._on_started()


async def serve_csms(
    router: Router,
    host: str | None,
    port: int | None,
    *,
    config: CSMSConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    select_version: VersionSelector | None = None,
    check_request: RequestChecker | None = None,
    task_status: trio.TaskStatus[CSMS] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run a CSMS serving OCPP-J on ``host:port`` until cancelled.

    Use as ``csms: CSMS = await nursery.start(serve_csms, router, host, port)``; reports once
    the listener is bound (``csms.server_info.port`` after binding port 0).  ``port=None`` serves
    no socket.

    Waits for: cancellation; never returns.
    Cancellation: stops listening and closes every station (1001).
    Closes: the listener, every connection, the event subscriptions.
    Exceptions: a failure before ``task_status.started`` (``OSError`` binding the listener) is
    raised as is; failures of background tasks after it propagate as ``ExceptionGroup``.
    """
    csms = CSMS(router, config=config)
    csms.check_request = check_request
    started = False
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(csms.run)
            if port is not None:
                info: ServerInfo = await nursery.start(
                    partial(
                        serve_ocpp_websocket,
                        csms.handle_connection,
                        host,
                        port,
                        config=csms.config.server,
                        select_version=select_version,
                        check_request=check_request,
                        ssl_context=ssl_context,
                    )
                )
                csms.server_info = info
            task_status.started(csms)
            started = True
            await trio.sleep_forever()
    except BaseExceptionGroup as group:
        single = single_failure(group)
        if started or single is None:
            raise
        error = single  # a startup failure (e.g. binding): raised as is, like the server does
    raise error


async def start_csms(
    nursery: trio.Nursery,
    router: Router,
    host: str | None,
    port: int | None,
    *,
    config: CSMSConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    select_version: VersionSelector | None = None,
    check_request: RequestChecker | None = None,
) -> CSMS:
    """Start a CSMS in ``nursery`` (see :func:`serve_csms`) and return it once listening.

    Waits for: the listener to be bound.  Cancellation: of ``nursery`` stops the CSMS.
    Closes: nothing itself; the CSMS closes everything when ``nursery`` is cancelled.
    Exceptions: ``OSError`` when binding fails; later failures go to ``nursery``.
    """
    csms: CSMS = await nursery.start(
        partial(
            serve_csms,
            router,
            host,
            port,
            config=config,
            ssl_context=ssl_context,
            select_version=select_version,
            check_request=check_request,
        )
    )
    return csms


def open_csms(
    router: Router,
    host: str | None,
    port: int | None,
    *,
    config: CSMSConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    select_version: VersionSelector | None = None,
    check_request: RequestChecker | None = None,
) -> AbstractAsyncContextManager[CSMS]:
    """Run a CSMS for the duration of an ``async with`` block.

    Waits for: the listener to be bound before entering; on exit, the CSMS to close.
    Cancellation: passes through; the CSMS closes every station (1001).
    Closes: the listener, every connection, the event subscriptions.
    Exceptions: the body's own exception unwrapped; ``OSError`` when binding fails; a failure
    of the CSMS's background tasks as :class:`CSMSError` from the ``ExceptionGroup``.
    """
    return open_service(
        partial(
            start_csms,
            router=router,
            host=host,
            port=port,
            config=config,
            ssl_context=ssl_context,
            select_version=select_version,
            check_request=check_request,
        ),
        lambda: CSMSError("a background task of the CSMS failed"),
    )
