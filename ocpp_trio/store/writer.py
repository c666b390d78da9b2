"""Write-ahead persistence with group commit: what the stations hand to the store, and when.

One :class:`StoreWriter` serves a whole CSMS.  Stations never write to the store themselves:

* each station identity served by this process has a :class:`StationJournal` (made when the
  process claims the station); its machines hand it every exchange that changes persisted state
  (:meth:`StationJournal.record`, synchronous, in the order the machines see them), and the
  station awaits :meth:`StationJournal.durable` before sending the answer to such a CALL;
* the writer's task (:meth:`StoreWriter.run`, in the CSMS nursery) takes everything appended
  since its last commit, from all stations, and commits it in **one** transaction; while that
  commit runs, new writes gather for the next one.  Under load, many stations share each commit
  (group commit), so the cost of a durable commit is paid once per batch, not per message.

The writes waiting for a commit are bounded without a channel: each station waits for its
previous writes before it answers, and a station has at most a handful of CALLs in flight, so
a batch holds a few writes per connected station at most.

A commit that fails (an I/O error) or that the store refuses as stale (another process claimed
the station) breaks the journals that had writes in it: their :meth:`~StationJournal.durable`
raises, and the station closes its connection instead of acknowledging what was not stored.
The station re-sends what it did not get an answer for.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Final

import attrs
import trio

from ocpp_trio.domain.ledger import LedgerEntry
from ocpp_trio.domain.observations import CSMS_OBSERVED_ACTIONS, Observation
from ocpp_trio.domain.reports import PART_ACTIONS
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import TransactionIdCounter
from ocpp_trio.domain.wire import as_int
from ocpp_trio.errors import StaleEpochError, StoreError
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.store.base import (
    TRANSACTION_ID_COUNTER,
    Append,
    JournalEntry,
    PutCounter,
    PutLedgerEntry,
    PutLocalListVersion,
    PutRegistration,
    PutSnapshot,
    Registration,
    Store,
    StoreOp,
)

__all__ = [
    "PERSISTED_STATION_ACTIONS",
    "StationJournal",
    "StoreWriter",
    "StoreWriterStatistics",
    "StoredTransactionIds",
    "persisted",
]

log = logging.getLogger("ocpp_trio")

#: station CALLs whose exchange changes persisted state (the write-ahead set)
PERSISTED_STATION_ACTIONS: Final = frozenset(
    {
        "BootNotification",
        "StatusNotification",
        "NotifyEvent",
        "TransactionEvent",
        "StartTransaction",
        "StopTransaction",
        "MeterValues",
        "ReservationStatusUpdate",
        *PART_ACTIONS,
    }
)
# our CALLs whose (successful) answer changes persisted state: exactly those the machines
# observe, so one set serves both
_PERSISTED_CSMS_ACTIONS: Final = CSMS_OBSERVED_ACTIONS


def persisted(observation: Observation) -> bool:
    """Whether ``observation`` changes what the store keeps.

    2.x MeterValues outside a transaction change nothing kept (1.6 ones may carry a
    ``transactionId``); our failed CALLs change nothing.
    """
    action = observation.action
    if observation.by_station:
        if action == "MeterValues":
            return observation.request.VERSION is Version.V16
        return action in PERSISTED_STATION_ACTIONS
    return observation.response is not None and action in _PERSISTED_CSMS_ACTIONS


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen(kw_only=True)
class StoreWriterStatistics:
    """Counters of a :class:`StoreWriter`."""

    #: transactions committed, and the writes in them
    commits: int
    writes: int
    #: commits that failed (nothing of them was written)
    failures: int
    #: station writes the store refused as stale
    stale: int
    #: the most writes one commit held
    largest_batch: int
    #: writes waiting for the next commit, and those in the commit running now
    queued: int = 0
    committing: int = 0


class _Batch:
    __slots__ = ("done", "journals", "ops")

    def __init__(self) -> None:
        self.ops: list[StoreOp] = []
        self.journals: set[StationJournal] = set()
        self.done = trio.Event()


class StoreWriter:
    """Commits what the stations' journals gather, in batches (see the module docstring).

    Args:
        store: where to write.
        snapshot_every: journal entries after which a station's machines fold their journal
            into a new snapshot (at least: see :attr:`StationJournal.wants_snapshot`).
        on_commit: called after each commit with its duration in seconds, its writes, and
            whether it succeeded (for metrics; it must not raise or block).
    """

    def __init__(
        self,
        store: Store,
        *,
        snapshot_every: int = 200,
        on_commit: Callable[[float, int, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.snapshot_every = snapshot_every
        self.on_commit = on_commit
        self._committing = 0
        self._open = _Batch()
        self._wake = trio.Event()
        self._running = False
        self._commits = 0
        self._writes = 0
        self._failures = 0
        self._stale = 0
        self._largest = 0

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is committing."""
        return self._running

    def statistics(self) -> StoreWriterStatistics:
        """A snapshot of the counters."""
        return StoreWriterStatistics(
            commits=self._commits,
            writes=self._writes,
            failures=self._failures,
            stale=self._stale,
            largest_batch=self._largest,
            queued=len(self._open.ops),
            committing=self._committing,
        )

    def append(self, op: StoreOp, journal: StationJournal | None = None) -> _Batch:
        """Queue ``op`` for the next commit (never waits); returns the batch it joined."""
        batch = self._open
        batch.ops.append(op)
        if journal is not None:
            batch.journals.add(journal)
        self._wake.set()
        return batch

    async def flush(self) -> None:
        """Wait until everything appended so far is committed (or failed).

        Waits for: the writer's commits (done inline when :meth:`run` is not running).
        Cancellation: safe; the writes stay queued.  Closes: nothing.
        """
        if not self._running:
            await self._commit_open()
            return
        batch = self._open
        if batch.ops:
            await batch.done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled.

        Waits for: cancellation.  Cancellation: a commit in progress completes first (the
        writes then stay committed); what is still queued waits for :meth:`flush`.
        Closes: nothing (the store belongs to the application).
        """
        if self._running:
            raise RuntimeError("the store writer is already running")
        self._running = True
        try:
            task_status.started()
            while True:
                await self._wake.wait()
                await self._commit_open()
        finally:
            self._running = False

    async def _commit_open(self) -> None:
        batch = self._open
        self._open = _Batch()
        self._wake = trio.Event()
        if not batch.ops:
            batch.done.set()
            return
        # shielded: a commit that started is seen through, so that its outcome is recorded
        # (the store's own commit is atomic; this makes the bookkeeping so too)
        with trio.CancelScope(shield=True):
            self._committing = len(batch.ops)
            started = trio.current_time()
            try:
                stale = await self.store.commit(batch.ops)
            except Exception as exc:
                self._commit_done(started, len(batch.ops), ok=False)
                self._failures += 1
                log.exception("store: a commit of %d write(s) failed", len(batch.ops))
                error = StoreError(f"the store failed: {exc}")
                for journal in batch.journals:
                    journal.broken = error
            else:
                self._commit_done(started, len(batch.ops), ok=True)
                self._commits += 1
                self._writes += len(batch.ops)
                self._largest = max(self._largest, len(batch.ops))
                for journal in batch.journals:
                    if journal.identity in stale:
                        self._stale += 1
                        journal.broken = StaleEpochError(
                            f"station {journal.identity!r} was claimed by another process"
                        )
            batch.done.set()

    def _commit_done(self, started: float, writes: int, *, ok: bool) -> None:
        self._committing = 0
        if self.on_commit is not None:
            self.on_commit(trio.current_time() - started, writes, ok)

    def put_counter(self, name: str, value: int) -> None:
        """Raise the counter ``name`` to ``value`` with the next commit."""
        self.append(PutCounter(name=name, value=value))

    def put_registration(self, identity: str, registration: Registration | None) -> None:
        """Seed (or clear) the registration of ``identity`` (an administrative write, not
        fenced by a claim)."""
        self.append(PutRegistration(identity=identity, epoch=None, registration=registration))


class StationJournal:
    """What one station identity writes while this process holds its claim.

    Args:
        writer: the CSMS's writer.
        identity: the station.
        epoch: the claim's epoch (every write carries it).
        last_seq: the highest journal ``seq`` in the store.
        unfolded: journal entries in the store not folded into a snapshot yet.
    """

    def __init__(
        self, writer: StoreWriter, identity: str, *, epoch: int, last_seq: int, unfolded: int
    ) -> None:
        self.writer = writer
        self.identity = identity
        self.epoch = epoch
        self.seq = last_seq
        self.unfolded = unfolded
        self._fold_after = writer.snapshot_every
        #: set when a commit holding our writes failed or was refused; :meth:`durable` raises it
        self.broken: StoreError | None = None
        self._last: _Batch | None = None

    def __repr__(self) -> str:
        return f"<StationJournal {self.identity!r} epoch {self.epoch} seq {self.seq}>"

    def _append(self, op: StoreOp) -> None:
        self._last = self.writer.append(op, self)

    def record(self, observation: Observation) -> bool:
        """Journal ``observation`` if it changes persisted state (a BootNotification also
        writes the registration); returns whether it did.  Never waits."""
        if not persisted(observation):
            return False
        self.seq += 1
        self.unfolded += 1
        entry = JournalEntry(seq=self.seq, observation=observation)
        self._append(Append(identity=self.identity, epoch=self.epoch, entry=entry))
        if observation.action == "BootNotification" and observation.by_station:
            self.put_registration(registration_of(observation))
        return True

    def put_registration(self, registration: Registration | None) -> None:
        """Replace the stored registration (with the next commit)."""
        self._append(
            PutRegistration(identity=self.identity, epoch=self.epoch, registration=registration)
        )

    def put_local_list_version(self, version: int | None) -> None:
        """Record the local authorization list version (with the next commit)."""
        self._append(PutLocalListVersion(identity=self.identity, epoch=self.epoch, version=version))

    def put_ledger_entry(self, entry: LedgerEntry) -> None:
        """Create or replace the ledger entry of a finished transaction (with the next
        commit, so with what was recorded just before it)."""
        self._append(PutLedgerEntry(identity=self.identity, epoch=self.epoch, entry=entry))

    @property
    def wants_snapshot(self) -> bool:
        """Whether enough entries gathered to fold them into a new snapshot: the writer's
        ``snapshot_every``, or as many as the transaction events the last snapshot held when
        that is more."""
        return self.unfolded >= self._fold_after

    def put_snapshot(self, snapshot: StationSnapshot) -> None:
        """Store ``snapshot`` as the base, covering every entry recorded so far.

        The caller guarantees that ``snapshot`` reflects exactly those entries.
        """
        self.unfolded = 0
        # A snapshot holds every event of the open transactions, each about the size of the
        # journal entry that brought it, so a long transaction makes every snapshot as large
        # as the whole transaction. Folding no sooner than after as many entries keeps the
        # cost of snapshots per entry bounded (not growing with the transaction), and what a
        # recovery replays no longer than what it loads.
        held = sum(len(tx.events) for tx in snapshot.transactions)
        self._fold_after = max(self.writer.snapshot_every, held)
        self._append(
            PutSnapshot(
                identity=self.identity, epoch=self.epoch, snapshot=snapshot, through=self.seq
            )
        )

    async def durable(self) -> None:
        """Wait until everything this journal wrote is committed.

        Waits for: the writer's commit holding our latest write.  Cancellation: safe (the
        writes stay queued).  Closes: nothing.

        Raises:
            StoreError: a commit holding our writes failed, or (:class:`StaleEpochError`)
                another process claimed the station.
        """
        batch = self._last
        if batch is not None and not batch.done.is_set():
            await batch.done.wait()
        if self.broken is not None:
            raise self.broken


def registration_of(observation: Observation) -> Registration:
    """The registration a BootNotification exchange leaves."""
    response = observation.response
    status: RegistrationStatus | None = None
    interval = 0
    if response is not None:
        data = response.to_json()
        status = RegistrationStatus(str(data.get("status")))
        interval = as_int(data.get("interval")) or 0
    return Registration(
        status=status,
        version=observation.request.VERSION,
        boot=observation.request,
        interval=interval,
        at=observation.at,
    )


class StoredTransactionIds:
    """The 1.6 transaction id allocator with its counter in the store.

    Every id handed out raises the stored counter in the same commit as the StartTransaction
    answer that carries it (that answer waits for the commit), so after a restart no id a
    station was told is handed out again.  It counts like
    :class:`~ocpp_trio.domain.transactions.TransactionIdCounter` (wrapping to 1 after 2**31 - 1).

    Two processes *serving stations at the same time* from one store would each count on their
    own: give them an allocator of your own (e.g. a database sequence) for that.

    Args:
        writer: where the counter goes.
        next_id: the first id (raised by :meth:`advance` to the stored counter).
    """

    _LIMIT: Final = 2**31 - 1

    def __init__(self, writer: StoreWriter, next_id: int = 1) -> None:
        self._writer = writer
        self._next = next_id

    @classmethod
    def wrapping(cls, writer: StoreWriter, counter: TransactionIdCounter) -> StoredTransactionIds:
        """An allocator continuing from ``counter``."""
        return cls(writer, counter.next_id)

    @property
    def next_id(self) -> int:
        """The id the next :meth:`allocate` returns."""
        return self._next

    def advance(self, stored: int | None) -> None:
        """Continue after ``stored`` (the counter read from the store), if it is ahead."""
        if stored is not None and 1 <= stored <= self._LIMIT and stored > self._next:
            self._next = stored

    def allocate(self, identity: str) -> int:
        """The next id; the stored counter follows with the next commit."""
        value = self._next
        self._next = 1 if value >= self._LIMIT else value + 1
        self._writer.put_counter(TRANSACTION_ID_COUNTER, self._next)
        return value

    async def load(self) -> None:
        """Read the stored counter and continue after it.

        Waits for: the store.  Raises: ``StoreError``.
        """
        self.advance(await self._writer.store.counter(TRANSACTION_ID_COUNTER))
