"""The state of one station's machines: records on a board, queries, ids, waiting.

:class:`MachinesState` is the half of :class:`~ocpp_trio.runtime.machines.StationMachines` that
holds and changes state; the other half runs the tasks.  Each EVSE, transaction and report task
applies its commands with the ``_apply_*`` methods here, which replace the task's frozen record on
the board (the dicts of this object), publish the resulting events and wake whoever waits for them.
Queries and snapshots read the board at any time, also between connections.
"""

from __future__ import annotations

import datetime
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

import attrs
import trio

from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.events import (
    AvailabilityRequested,
    ConnectorStatusChanged,
    MachineEvent,
    ReportCompleted,
    ReservationChanged,
    TransactionChanged,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from ocpp_trio.domain.evse import Evse, EvseCommand, RemoveEvse, Reservation, apply_evse
from ocpp_trio.domain.ledger import LedgerEntry, ledger_entry
from ocpp_trio.domain.observations import Effect, Observation, ToReport, ToTransaction
from ocpp_trio.domain.reconcile import closed_by_reboot, superseded
from ocpp_trio.domain.reports import (
    Report,
    add_part,
    answer_report,
    part_from_message,
)
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import (
    RemoteStart,
    Transaction,
    TransactionEventKind,
    TransactionEventRecord,
    TransactionIdAllocator,
    TransactionIdCounter,
    TransactionNotice,
    apply_record,
    in_order,
    link_remote_start,
)
from ocpp_trio.errors import ConnectionLostError, TransactionTimeoutError
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Broadcast, MachinesStatistics, Subscription
from ocpp_trio.runtime.machines_events import E, subscribe_to

__all__ = ["MachinesConfig", "MachinesState", "ReportWatch"]


class Journal(Protocol):
    """Where the machines journal their state-changing observations (a store's
    :class:`~ocpp_trio.store.writer.StationJournal`; this is all the machines use of it)."""

    @property
    def unfolded(self) -> int:
        """Journal entries not folded into a snapshot yet."""

    @property
    def wants_snapshot(self) -> bool:
        """Whether the journal has grown long enough to be folded."""

    def record(self, observation: Observation) -> bool:
        """Journal ``observation`` (in submission order)."""

    def put_snapshot(self, snapshot: StationSnapshot) -> None:
        """Fold the journal into ``snapshot``."""

    def put_ledger_entry(self, entry: LedgerEntry) -> None:
        """Create or replace a finished transaction's ledger entry, with the next commit."""

    async def durable(self) -> None:
        """Wait until every entry journaled so far is committed."""


log = logging.getLogger("ocpp_trio")
T = TypeVar("T")
C = TypeVar("C")
ReportKey = tuple[str, int]


_EMPTY_MODEL = DeviceModel()


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen(kw_only=True)
class MachinesConfig:
    """How a station's machines behave.

    Attributes:
        machine_buffer: commands that may wait for one EVSE/transaction/report task.
        report_timeout: seconds without a part after which a report in progress expires.
        late_event_window: seconds a transaction task waits, after the Ended event, for the
            events its seqNo gaps say are missing.
        ended_history: finished transactions kept per station (queries, late events).
        report_history: finished reports kept per station.
        remote_start_window: seconds an accepted remote start waits for its transaction.
        default_answers: answer the messages the machines understand (TransactionEvent,
            StatusNotification, report parts, ...) when the application has no handler.
        default_id_tag_status: the 1.6 ``idTagInfo.status`` of the default StartTransaction
            answer when the application has no Authorize handler to ask.
        max_evses: EVSEs tracked per station (connector 0, the station itself, included).
        max_open_transactions: transactions open at once per station (late events may still
            reopen one of the ``ended_history``).
        max_open_reports: reports in progress at once per station.
        max_report_items: data items one report holds (a part without any counts as one);
            parts beyond are not kept, the report finishes INCOMPLETE.
        max_device_model_variables: variables in a station's device model; new ones beyond
            are left out (those it has are still updated).

    The limits hold what one station can make the CSMS keep (and the tasks it runs) whatever
    ids and names it sends: its messages are still answered, but an EVSE, transaction, report,
    report part or device-model variable beyond a limit is not tracked (logged, and counted in
    :attr:`~ocpp_trio.MachinesStatistics.over_limit`).
    """

    machine_buffer: int = 16
    report_timeout: float = 120.0
    late_event_window: float = 60.0
    ended_history: int = 100
    report_history: int = 20
    remote_start_window: float = 600.0
    default_answers: bool = True
    default_id_tag_status: str = "Accepted"
    max_evses: int = attrs.field(default=128, validator=attrs.validators.ge(1))
    max_open_transactions: int = attrs.field(default=128, validator=attrs.validators.ge(1))
    max_open_reports: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    max_report_items: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))
    max_device_model_variables: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


def _open_transactions(snapshot: StationSnapshot) -> dict[str, Transaction]:
    """The open transactions of ``snapshot`` by id, their events sorted as apply_record keeps
    them (a snapshot may come from the application)."""
    return {t.transaction_id: in_order(t) for t in snapshot.transactions}


class _Tracker:
    """Counts the work one observation caused; the machines settle when it reaches 0."""

    __slots__ = ("count", "owner", "seq")

    def __init__(self, owner: MachinesState, seq: int) -> None:
        self.owner = owner
        self.seq = seq
        self.count = 1

    def done(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.owner._settled(self.seq)


class _Mailbox(Generic[C]):
    """The channel to one machine task, and how many commands sent on it the task has not
    applied yet: with none, the task is idle, and a command applied at once in the submitting
    task instead is applied in the same order as the task would have."""

    __slots__ = ("pending", "send")

    def __init__(self, send: trio.MemorySendChannel[_Envelope[C]]) -> None:
        self.send = send
        self.pending = 0


class _Envelope(Generic[C]):
    """A command for a task, counted in its mailbox (and tracker) until :meth:`done`."""

    __slots__ = ("item", "mailbox", "tracker")

    def __init__(self, item: C, mailbox: _Mailbox[C], tracker: _Tracker | None = None) -> None:
        self.item = item
        self.mailbox = mailbox
        self.tracker = tracker
        mailbox.pending += 1
        if tracker is not None:
            tracker.count += 1

    def done(self) -> None:
        """The command was applied, or will never be (it could not be delivered)."""
        self.mailbox.pending -= 1
        if self.tracker is not None:
            self.tracker.done()


class _Wait(Generic[T]):
    def __init__(self, accept: Callable[[T], bool]) -> None:
        self.accept = accept
        self.event = trio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def offer(self, value: T) -> None:
        if not self.event.is_set() and self.accept(value):
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


class ReportWatch:
    """The end of one report, awaited (see :meth:`StationMachines.expect_report`)."""

    def __init__(self, wait: _Wait[Report]) -> None:
        self._wait = wait

    async def wait(self) -> Report:
        """The finished report (complete, incomplete, expired, empty or rejected).

        Waits for: the report to finish (it expires ``report_timeout`` seconds after its last
        part at the latest).  Cancellation: safe.  Closes: nothing.

        Raises:
            ConnectionLostError: the connection ended first.
        """
        await self._wait.event.wait()
        if self._wait.error is not None:
            raise self._wait.error
        assert self._wait.value is not None
        return self._wait.value


_TxItem = TransactionEventRecord | int  # an event, or a remote start id to link


@attrs.frozen
class _Projection:
    """A transaction event applied ahead of its task, for the ledger entry that is journaled
    with the exchange (see ``_ledger_entries``); the task takes the result when nothing
    changed the transaction in between."""

    record: TransactionEventRecord
    old: Transaction | None
    new: Transaction
    notices: tuple[TransactionNotice, ...]


_NOTICE_EVENTS: Mapping[TransactionNotice, type[TransactionChanged]] = {
    TransactionNotice.STARTED: TransactionStarted,
    TransactionNotice.UPDATED: TransactionUpdated,
    TransactionNotice.LINKED: TransactionUpdated,
    TransactionNotice.ENDED: TransactionEnded,
}


class MachinesState:
    """The state machines of one station identity (see the module docstring).

    Args:
        identity: the station.
        config: see :class:`MachinesConfig`.
        initial: a snapshot to continue from.
        device_model: a seed device model (overrides the snapshot's).
        events: where events are published (the CSMS passes its own; by default one of its
            own, see :meth:`subscribe`).
        transaction_ids: the 1.6 transaction-id allocator (default: a private counter).
    """

    def __init__(
        self,
        identity: str,
        *,
        config: MachinesConfig | None = None,
        initial: StationSnapshot | None = None,
        device_model: DeviceModel | None = None,
        events: Broadcast[MachineEvent] | None = None,
        transaction_ids: TransactionIdAllocator | None = None,
    ) -> None:
        # an empty device model is immutable: every new station shares one
        snap = initial or StationSnapshot(identity=identity, device_model=_EMPTY_MODEL)
        self.identity = identity
        self.config = config or MachinesConfig()
        self.transaction_ids: TransactionIdAllocator = transaction_ids or TransactionIdCounter()
        self._events = events if events is not None else Broadcast(name=f"{identity} event")
        self._model = device_model if device_model is not None else snap.device_model
        self._evses: dict[int, Evse] = {e.evse_id: e for e in snap.evses}
        self._open: dict[str, Transaction] = _open_transactions(snap)
        self._ended: OrderedDict[str, Transaction] = OrderedDict()
        self._reports: dict[ReportKey, Report] = {r.key: r for r in snap.reports}
        self._report_history: OrderedDict[ReportKey, Report] = OrderedDict()
        self._remote_starts: dict[int, RemoteStart] = {
            r.remote_start_id: r for r in snap.remote_starts
        }
        self._expected_remote: list[tuple[str, int | None, int]] = []
        self._next_request_id = snap.next_request_id
        self._next_remote_start_id = snap.next_remote_start_id
        self.version: Version | None = None
        #: where persisted exchanges are journaled (set by a CSMS with a store)
        self.journal: Journal | None = None
        # per connection
        self._run_lock = trio.Lock()  # one connection at a time
        # exchanges are applied one at a time, in order: the one applying holds the turn
        self._applying = False
        self._turns = trio.lowlevel.ParkingLot()
        self._attached = False
        self._leftover: list[Effect] = []  # effects not handed out when a connection ended
        self._unapplied: list[Observation] = []  # exchanges whose turn had not come
        self._nursery: trio.Nursery | None = None
        self._evse_tasks: dict[int, _Mailbox[EvseCommand | RemoveEvse]] = {}
        self._tx_tasks: dict[str, _Mailbox[_TxItem]] = {}
        self._report_tasks: dict[ReportKey, _Mailbox[ToReport]] = {}
        self._tx_waits: list[_Wait[Transaction]] = []
        #: finished transactions open again for a late event (their end was published)
        self._reported_ended: set[str] = set()
        # the ledger: the open transactions that have ended (or whose Ended event is on its
        # way to their task), and the events applied ahead of the task (their entries went
        # with the journal)
        self._ending: set[str] = set()
        self._note_ended()
        self._projected: dict[str, _Projection] = {}
        self._replaying = False
        self._report_waits: dict[ReportKey, list[_Wait[Report]]] = {}
        # settling
        self._seq = 0
        self._outstanding: set[int] = set()
        self._progress: trio.Event | None = None  # made when someone waits (settle)
        # counters
        self._observations = 0
        self._duplicates = 0
        self._late_parts = 0
        self._over_limit = 0
        self._limits_logged: set[str] = set()

    # -- reading ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a connection is being served (the tasks run)."""
        return self._attached

    @property
    def device_model(self) -> DeviceModel:
        """The current device model."""
        return self._model

    def set_device_model(self, model: DeviceModel) -> None:
        """Replace the device model (e.g. to seed it)."""
        self._model = model

    @property
    def evses(self) -> Mapping[int, Evse]:
        """The EVSEs by id (a read-only live view; EVSE 0 is the whole station)."""
        return MappingProxyType(self._evses)

    def connector_status(self, evse_id: int, connector_id: int = 1) -> str | None:
        """The last status reported for a connector (1.6: ``connector_status(n)``)."""
        evse = self._evses.get(evse_id)
        connector = evse.connector(connector_id) if evse is not None else None
        return connector.status if connector is not None else None

    @property
    def transactions(self) -> Mapping[str, Transaction]:
        """The open transactions (and ended ones still waiting for late events) by id."""
        return MappingProxyType(self._open)

    def open_transactions(self) -> Iterable[Transaction]:
        """The open transactions."""
        return tuple(self._open.values())

    @property
    def ended_transactions(self) -> tuple[Transaction, ...]:
        """The most recent finished transactions, oldest first."""
        return tuple(self._ended.values())

    def transaction(self, transaction_id: str | int) -> Transaction | None:
        """A transaction by id, open or recently finished (1.6 ids may be given as ints)."""
        key = str(transaction_id)
        return self._open.get(key) or self._ended.get(key)

    @property
    def reports(self) -> Mapping[ReportKey, Report]:
        """The reports in progress by (part action, requestId)."""
        return MappingProxyType(self._reports)

    def report(self, kind: str, request_id: int) -> Report | None:
        """A report in progress or recently finished."""
        key = (kind, request_id)
        return self._reports.get(key) or self._report_history.get(key)

    @property
    def remote_starts(self) -> Mapping[int, RemoteStart]:
        """Accepted remote starts still waiting for their transaction."""
        return MappingProxyType(self._remote_starts)

    def find_reservation(self, reservation_id: int) -> Reservation | None:
        """A reservation by id, on whichever EVSE holds it."""
        for evse in self._evses.values():
            found = evse.reservation(reservation_id)
            if found is not None:
                return found
        return None

    def statistics(self) -> MachinesStatistics:
        """Live task counts and counters."""
        return MachinesStatistics(
            evse_tasks=len(self._evse_tasks),
            transaction_tasks=len(self._tx_tasks),
            report_tasks=len(self._report_tasks),
            observations=self._observations,
            duplicate_events=self._duplicates,
            late_report_parts=self._late_parts,
            over_limit=self._over_limit,
            open_transactions=len(self._open),
            open_reports=len(self._reports),
        )

    def snapshot(self) -> StationSnapshot:
        """The state as plain records (what has been applied so far; see :meth:`settle`)."""
        return StationSnapshot(
            identity=self.identity,
            device_model=self._model,
            evses=tuple(self._evses[k] for k in sorted(self._evses)),
            transactions=tuple(self._open.values()),
            reports=tuple(self._reports.values()),
            remote_starts=tuple(self._remote_starts.values()),
            next_request_id=self._next_request_id,
            next_remote_start_id=self._next_remote_start_id,
        )

    def _load_snapshot(self, snapshot: StationSnapshot) -> None:
        """Replace the records on the board with ``snapshot``'s (the history is cleared)."""
        self._model = snapshot.device_model
        self._evses = {e.evse_id: e for e in snapshot.evses}
        self._open = _open_transactions(snapshot)
        self._ended.clear()
        self._note_ended()
        self._projected.clear()
        self._reports = {r.key: r for r in snapshot.reports}
        self._report_history.clear()
        self._remote_starts = {r.remote_start_id: r for r in snapshot.remote_starts}
        self._expected_remote.clear()
        self._next_request_id = snapshot.next_request_id
        self._next_remote_start_id = snapshot.next_remote_start_id

    # -- persistence -----------------------------------------------------------------------

    async def durable(self) -> None:
        """Wait until every exchange journaled so far is committed to the store (at once
        without a store).

        Waits for: the store writer's commit.  Cancellation: safe.  Closes: nothing.

        Raises:
            StoreError: the commit failed, or another process claimed the station.
        """
        journal = self.journal
        if journal is not None:
            await journal.durable()

    async def checkpoint(self) -> None:
        """Fold the journal into a new stored snapshot when it has grown long enough.

        Waits for: the machines to settle.  Cancellation: safe (no snapshot then).
        Closes: nothing.
        """
        journal = self.journal
        if journal is None or not journal.wants_snapshot:
            return
        await self.settle()
        # the snapshot must reflect exactly what was journaled: nothing may be in flight
        if self.journal is journal and not self._outstanding:
            journal.put_snapshot(self.snapshot())

    # -- the ledger ------------------------------------------------------------------------
    #
    # Every finished transaction has a ledger entry in the store, written in the same commit
    # as the journal entry of the exchange that ended or changed it.  Such an exchange's
    # transaction events are applied ahead of the transaction task, as soon as the events
    # before them have been (``_ledger_entries``, in the submitting task, under the order
    # lock), and the entries are journaled with the exchange; the task then takes the result.
    # Whatever reaches an ended transaction another way (a connection ending mid-way, a remote
    # start linked later) has its entry written when the task applies it.

    def _ends(self, effect: ToTransaction) -> bool:
        """Whether ``effect`` ends its transaction or changes an ended one (in constant time:
        a long transaction's events are not looked through for each of its messages)."""
        record = effect.record
        if record is None:
            return False
        tx_id = effect.transaction_id
        if record.kind is TransactionEventKind.ENDED:
            self._ending.add(tx_id)
            return True
        return tx_id in self._ending or tx_id in self._ended

    def _note_ended(self) -> None:
        """Take the open transactions that have ended as ending (after a snapshot or a
        replay put them on the board)."""
        self._ending = {tx_id for tx_id, tx in self._open.items() if tx.ended}

    def _ending_effects(self, effects: list[Effect]) -> list[ToTransaction]:
        """The effects that end a transaction or change an ended one (none without a store:
        no ledger then)."""
        if self.journal is None or self._replaying:
            return []
        return [e for e in effects if isinstance(e, ToTransaction) and self._ends(e)]

    async def _ledger_entries(
        self, touched: list[ToTransaction], seq: int | None
    ) -> list[LedgerEntry]:
        """The ledger entries of the transactions that exchange ``seq`` ends or changes after
        their end (``touched``, see ``_ending_effects``), applied ahead (see above).

        Waits for: the exchanges before ``seq`` to be applied.  Cancellation: nothing was
        applied ahead.
        """
        if seq is not None:
            await self._settle_through(seq - 1)
        entries: list[LedgerEntry] = []
        now = _utc_now()
        try:
            for effect in touched:
                tx_id, record = effect.transaction_id, effect.record
                assert record is not None
                old = self._open.get(tx_id) or self._ended.get(tx_id)
                new, notices = self._advance(tx_id, old, record)
                self._projected[tx_id] = _Projection(record, old, new, notices)
                if new.ended:
                    entries.append(ledger_entry(new, now))
                else:
                    self._ending.discard(tx_id)  # open again (2.1 resumed it)
        except Exception:
            # the tasks write the entries when they apply the events
            log.exception("station %r: BUG (ours): the ledger entry failed", self.identity)
            self._projected.clear()
            return []
        return entries

    def _put_ledger_entry(self, transaction: Transaction) -> None:
        """Write the ledger entry of ``transaction`` if it has ended (no store: nothing)."""
        if not transaction.ended:
            self._ending.discard(transaction.transaction_id)  # open again (2.1 resumed it)
            return
        self._ending.add(transaction.transaction_id)
        journal = self.journal
        if journal is not None and not self._replaying:
            journal.put_ledger_entry(ledger_entry(transaction, _utc_now()))

    # -- ids -------------------------------------------------------------------------------

    def allocate_request_id(self) -> int:
        """A fresh ``requestId`` for a report (or other) request to this station."""
        value = self._next_request_id
        self._next_request_id = value + 1 if value < 2**31 - 1 else 1
        return value

    def allocate_remote_start_id(self) -> int:
        """A fresh ``remoteStartId`` (2.x), also used to number 1.6 remote starts."""
        value = self._next_remote_start_id
        self._next_remote_start_id = value + 1 if value < 2**31 - 1 else 1
        return value

    def expect_remote_start(self, id_token: str, evse_id: int | None) -> int:
        """Reserve the id the next 1.6 RemoteStartTransaction for ``id_token`` on ``evse_id``
        will get (the 1.6 request carries none)."""
        remote_id = self.allocate_remote_start_id()
        self._expected_remote.append((id_token.casefold(), evse_id, remote_id))
        return remote_id

    def take_remote_start_id(self, id_token: str, evse_id: int | None) -> int:
        """The id for an observed 1.6 remote start (the reserved one, else a new one)."""
        for i, (token, evse, remote_id) in enumerate(self._expected_remote):
            if token == id_token.casefold() and evse == evse_id:
                del self._expected_remote[i]
                return remote_id
        return self.allocate_remote_start_id()

    # -- events ----------------------------------------------------------------------------

    def subscribe(
        self, kind: type[E], *, buffer: int = 64
    ) -> AbstractAsyncContextManager[Subscription[E]]:
        """Subscribe to this station's events of type ``kind`` (e.g. ``TransactionEnded``,
        or ``MachineEvent`` for all); see
        :func:`~ocpp_trio.runtime.machines_events.subscribe_to`."""
        return subscribe_to(
            kind,
            machine_events=self._events,
            lifecycle=None,
            identity=self.identity,
            buffer=buffer,
        )

    def _publish(self, event: MachineEvent) -> None:
        self._events.publish(event)

    # -- waiting ---------------------------------------------------------------------------

    def _settled(self, seq: int) -> None:
        self._outstanding.discard(seq)
        self._wake_settlers()

    def _wake_settlers(self) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set()

    async def settle(self) -> None:
        """Wait until everything submitted so far has been applied by every task.

        Waits for: the tasks to process the exchanges submitted before the
        call (or the connection to end).  Cancellation: safe.  Closes: nothing.
        """
        await self._settle_through(self._seq)

    async def _settle_through(self, last: int) -> None:
        """Wait until the exchanges numbered up to ``last`` have been applied."""
        while self._outstanding and min(self._outstanding) <= last:
            if self._progress is None:
                self._progress = trio.Event()
            await self._progress.wait()

    async def wait_transaction(
        self, accept: Callable[[Transaction], bool], *, wait_timeout: float
    ) -> Transaction:
        """Wait for a transaction for which ``accept`` is true (checked now, then on every
        change of any transaction of this station).

        Waits for: such a transaction, at most ``wait_timeout`` seconds.  Cancellation: safe.
        Closes: nothing.

        Raises:
            TransactionTimeoutError: none came in time.
            ConnectionLostError: the connection ended meanwhile (or was not up).
        """
        for tx in (*self._open.values(), *reversed(self._ended.values())):
            if accept(tx):
                return tx
        if not self.running:
            raise ConnectionLostError(f"station {self.identity!r} is not connected")
        wait: _Wait[Transaction] = _Wait(accept)
        self._tx_waits.append(wait)
        try:
            with trio.move_on_after(wait_timeout):
                await wait.event.wait()
        finally:
            self._tx_waits.remove(wait)
        if wait.error is not None:
            raise wait.error
        if wait.value is None:
            raise TransactionTimeoutError(
                f"station {self.identity!r}: no matching transaction within {wait_timeout} s"
            )
        return wait.value

    @contextmanager
    def expect_report(self, kind: str, request_id: int) -> Iterator[ReportWatch]:
        """Watch for the end of report (``kind``, ``request_id``) for the duration of the
        ``with`` block; enter it *before* sending the request, so no part can be missed."""
        key = (kind, request_id)
        wait: _Wait[Report] = _Wait(lambda report: report.finished)
        self._report_waits.setdefault(key, []).append(wait)
        try:
            yield ReportWatch(wait)
        finally:
            waits = self._report_waits.get(key, [])
            if wait in waits:
                waits.remove(wait)
            if not waits:
                self._report_waits.pop(key, None)

    # -- applying (called by the tasks) ------------------------------------------------

    def _apply_evse(self, evse_id: int, command: EvseCommand) -> None:
        old = self._evses.get(evse_id) or Evse(evse_id=evse_id)
        new = apply_evse(old, command)
        self._evses[evse_id] = new
        if new is old:
            return
        for connector in new.connectors:
            before = old.connector(connector.connector_id)
            if connector.status is not None and before != connector:
                self._publish(
                    ConnectorStatusChanged(
                        identity=self.identity,
                        evse_id=evse_id,
                        connector=connector,
                        previous=before.status if before is not None else None,
                    )
                )
        if new.requested is not None and new.requested != old.requested:
            self._publish(
                AvailabilityRequested(
                    identity=self.identity, evse_id=evse_id, requested=new.requested
                )
            )
        for reservation in new.reservations:
            if old.reservation(reservation.reservation_id) != reservation:
                self._publish(ReservationChanged(identity=self.identity, reservation=reservation))

    def _advance(
        self, tx_id: str, old: Transaction | None, record: TransactionEventRecord
    ) -> tuple[Transaction, tuple[TransactionNotice, ...]]:
        """``old`` with ``record`` added (pure: nothing on the board changes)."""
        assert self.version is not None
        if old is not None:
            old = superseded(old, record)  # the station's own events win over a reboot's
        return apply_record(
            old, record, identity=self.identity, transaction_id=tx_id, version=self.version
        )

    def _apply_transaction(self, tx_id: str, item: _TxItem) -> None:
        old = self._open.get(tx_id)
        if isinstance(item, TransactionEventRecord):
            projected = self._projected.pop(tx_id, None)
            if projected is not None and projected.record is item and projected.old is old:
                # applied ahead for the ledger: its entry was journaled with the exchange
                new, notices = projected.new, projected.notices
            else:
                new, notices = self._advance(tx_id, old, item)
                if TransactionNotice.ENDED in notices or tx_id in self._ending:
                    self._put_ledger_entry(new)
        elif old is None:
            return  # a link to a transaction we know nothing of yet: nothing to link to
        else:
            new, notices = link_remote_start(old, item)
            if notices and tx_id in self._ending:
                self._put_ledger_entry(new)
        self._open[tx_id] = new
        for notice in notices:
            if notice is TransactionNotice.DUPLICATE:
                self._duplicates += 1
                log.info("station %r: duplicate event of transaction %s", self.identity, tx_id)
                continue
            if notice is TransactionNotice.ENDED:
                if closed_by_reboot(new):
                    # provisional: published once the station has had late_event_window
                    # seconds to give its own account (see _reconcile)
                    continue
                if tx_id in self._reported_ended:
                    # its TransactionEnded was published already: a correction is an update
                    notice = TransactionNotice.UPDATED
            self._publish(_NOTICE_EVENTS[notice](identity=self.identity, transaction=new))
        if notices and notices != (TransactionNotice.DUPLICATE,):
            for wait in list(self._tx_waits):
                wait.offer(new)

    def _retire_transaction(self, tx_id: str) -> None:
        reported = tx_id in self._reported_ended
        self._reported_ended.discard(tx_id)
        self._ending.discard(tx_id)
        tx = self._open.pop(tx_id, None)
        if tx is None:
            return
        if closed_by_reboot(tx) and not reported:
            # the station gave no account of its own in time: the CSMS's end stands
            self._publish(TransactionEnded(identity=self.identity, transaction=tx))
        self._ended[tx_id] = tx
        while len(self._ended) > self.config.ended_history:
            self._ended.popitem(last=False)

    def _over(self, what: str, which: object, limit: str, value: int) -> None:
        self._over_limit += 1
        # once per kind and station: a station past a limit tends to stay past it
        level = logging.DEBUG if what in self._limits_logged else logging.WARNING
        self._limits_logged.add(what)
        log.log(
            level,
            "station %r: %s %r not tracked: already %d (MachinesConfig.%s); answered all the same",
            self.identity,
            what,
            which,
            value,
            limit,
        )

    def _apply_report(self, key: ReportKey, item: ToReport) -> None:
        now = _utc_now()
        old = self._reports.get(key) or Report(
            identity=self.identity, kind=item.kind, request_id=item.request_id, started_at=now
        )
        new = old
        if item.part is not None:
            if new.finished:
                self._late_parts += 1
            # parts not kept still take their arrival number: the gap shows they are missing
            part = part_from_message(item.part, now, arrival=len(new.parts) + new.dropped)
            limit = self.config.max_report_items
            new = add_part(new, part, now, max_items=limit)
            self._duplicates += new.duplicates - old.duplicates
            if new.dropped > old.dropped:
                self._over("report part", (*key, part.seq_no), "max_report_items", limit)
        if item.answer is not None:
            new = answer_report(new, item.request, item.answer, now)
        self._report_changed(old, new)

    def _report_changed(self, old: Report, new: Report) -> None:
        self._reports[new.key] = new
        if new.finished and not old.finished:
            if new.missing:
                log.warning(
                    "station %r: report %s #%d finished %s; seqNo %s missing%s",
                    self.identity,
                    new.kind,
                    new.request_id,
                    new.status.value,
                    list(new.missing),
                    f" ({new.dropped} part(s) not kept: max_report_items)" if new.dropped else "",
                )
            self._publish(ReportCompleted(identity=self.identity, report=new))
            for wait in list(self._report_waits.get(new.key, ())):
                wait.offer(new)

    def _retire_report(self, key: ReportKey) -> None:
        report = self._reports.pop(key, None)
        if report is None:
            return
        self._report_history[key] = report
        while len(self._report_history) > self.config.report_history:
            self._report_history.popitem(last=False)
