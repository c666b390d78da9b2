"""The machines of one station: EVSE, transaction and report tasks, fed in submission order.

A :class:`StationMachines` belongs to one station *identity* and outlives its connections: it
holds the device model, the EVSEs, the open transactions and the reports in progress as frozen
records.  While a connection is served (between :meth:`StationMachines.attach` and
:meth:`StationMachines.detach`), its tasks are children of the station nursery:

* one **EVSE task** per EVSE that something happened to on this connection, one **transaction
  task** per open transaction and one **report task** per report in progress, each fed by its
  own bounded channel;
* the station submits every finished exchange the machines care about
  (:data:`~ocpp_trio.domain.observations.OBSERVED_ACTIONS`) with :meth:`StationMachines.submit`,
  which interprets it (:func:`~ocpp_trio.domain.observations.interpret`) right there, in the
  submitting task (the station's reader or handler runner), one exchange at a time and in
  submission order: it updates the device model, starts tasks as needed and sends them their
  commands.  No task or channel sits between the station and this step: it is pure in-memory
  work, and a hop through a dispatcher task cost every observed exchange a task switch.

Each task applies its commands to its own record with a pure function and puts the new record
on the board (the dicts of this object) where queries and snapshots read it, then publishes
events.  A command for a task that is idle (it has applied everything sent to it) is applied
the same way by the submitting task itself, in the same order and without a task switch,
unless it changes the task's own course (its first command, an event that ends or follows the
end of its transaction, a report part, which restarts the report's timeout).  Nothing here
runs user code, and a failure in a machine is logged, never allowed to end the station.

Task lifetimes: an EVSE task starts with the first command that changes its EVSE (a command
that changes nothing, like the boot's "EVSE 0 exists", needs no task) and lives while the
connection does (or until :meth:`remove_evse`); a transaction task ends when its transaction
is complete (Ended, no seqNo missing) or ``late_event_window`` seconds after its Ended event
when seqNos are still missing; a report task ends when its report finishes or after
``report_timeout`` seconds without a part.  All of them end with the connection; their records
stay, and the next connection starts tasks again from them (as :meth:`attach` does after a
restore from a :class:`StationSnapshot`).

Backpressure: the tasks only do in-memory work, so their channels drain fast; when one is
full, the submitting task (the station's reader or handler runner) waits for room.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from functools import partial
from typing import TypeVar

import attrs
import trio

from ocpp_trio.domain.events import DeviceModelUpdated, MachineEvent
from ocpp_trio.domain.evse import Evse, EvseCommand, RemoveEvse, apply_evse
from ocpp_trio.domain.ledger import LedgerEntry
from ocpp_trio.domain.observations import (
    OBSERVED_ACTIONS,
    AddRemoteStart,
    Effect,
    NewModel,
    Observation,
    Publish,
    ToEvse,
    ToReport,
    ToTransaction,
    interpret,
    may_have_effects,
    redact_observation,
)
from ocpp_trio.domain.reconcile import closed_by_reboot, reboot_effects
from ocpp_trio.domain.reports import (
    expire_report,
)
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import RemoteStart, TransactionEventKind
from ocpp_trio.domain.wire import Json
from ocpp_trio.errors import ConnectionLostError
from ocpp_trio.messages._base import Message, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Broadcast
from ocpp_trio.runtime.machines_state import (
    MachinesConfig,
    MachinesState,
    ReportKey,
    ReportWatch,
    _Envelope,
    _Mailbox,
    _Tracker,
    _TxItem,
    _utc_now,
)

__all__ = ["MachinesConfig", "ReportWatch", "StationMachines", "StationSnapshot"]

log = logging.getLogger("ocpp_trio")
T = TypeVar("T")
C = TypeVar("C")
K = TypeVar("K")


class StationMachines(MachinesState):
    """The state machines of one station identity (see the module docstring and
    :class:`~ocpp_trio.runtime.machines_state.MachinesState` for the arguments and queries)."""

    # -- running ---------------------------------------------------------------------------

    @staticmethod
    def observes(action: str) -> bool:
        """Whether exchanges of ``action`` matter to the machines."""
        return action in OBSERVED_ACTIONS

    async def observe(
        self, action: str, request: object, response: Response | None, by_station: bool
    ) -> None:
        """Submit a finished exchange (see :meth:`submit`) if it matters to the machines.

        ``request`` is the CALL's payload (ignored unless it is a message object);
        ``response`` is ``None`` when the exchange failed.
        """
        observation = self.observation(action, request, response, by_station)
        if observation is not None:
            await self.submit(observation)

    def observation(
        self, action: str, request: object, response: Response | None, by_station: bool
    ) -> Observation | None:
        """The observation of a finished exchange to :meth:`submit`, ``None`` when there is
        nothing to submit (the exchange does not matter, or can change nothing: then it is
        counted here).  :meth:`observe` in two steps, for a caller that has nothing to wait
        for in the common case."""
        if action not in OBSERVED_ACTIONS or not self._attached or not isinstance(request, Message):
            return None
        version = self.version
        if (
            self.journal is None
            and version is not None
            and not may_have_effects(action, by_station, response is not None, version)
        ):
            self._observations += 1  # nothing to apply, nothing to journal
            return None
        return Observation(
            action=action, by_station=by_station, request=request, response=response, at=_utc_now()
        )

    async def submit(self, observation: Observation, wire: Json | None = None) -> None:
        """Apply a finished exchange: interpret it here, in the submitting task, and hand the
        commands to the EVSE, transaction and report tasks (ignored when no connection is
        served, or when the action does not matter).

        ``wire`` is the request's JSON object as it came, when at hand: it is read instead of
        encoding the request again (see :func:`~ocpp_trio.domain.observations.interpret`).

        Exchanges are applied in submission order, also when the reader and the handler
        runner submit at the same time (in FIFO turns, taken without waiting when free).

        Waits for: the exchange before it, and room in a task's channel (only when one is
        full).  Cancellation: what was not handed out yet is applied when the connection ends.
        Closes: nothing.
        """
        if not self._attached or observation.action not in OBSERVED_ACTIONS:
            return
        # no secret is journaled, applied or published
        redacted = redact_observation(observation, self.device_model)
        if redacted is not observation:
            observation, wire = redacted, None  # the JSON as it came still holds the secret
        version = self.version
        if version is not None and not may_have_effects(
            observation.action, observation.by_station, observation.response is not None, version
        ):
            self._journal(observation)
            self._observations += 1  # nothing to apply
            return
        self._seq += 1
        tracker = _Tracker(self, self._seq)
        self._outstanding.add(tracker.seq)
        try:
            if self._applying:  # wait for the turn; the exchange before hands it over
                try:
                    await self._turns.park()
                except trio.Cancelled:
                    self._journal(observation)
                    self._unapplied.append(observation)
                    raise
            else:
                self._applying = True
            try:
                await self._dispatch(observation, tracker, wire)
            except trio.Cancelled:
                raise
            except Exception:
                log.exception(
                    "station %r: BUG (ours): the machines failed on %s",
                    self.identity,
                    observation.action,
                )
            finally:
                if self._turns:
                    self._turns.unpark()  # the turn goes to the next exchange, in order
                else:
                    self._applying = False
        finally:
            tracker.done()

    def _journal(self, observation: Observation, entries: Iterable[LedgerEntry] = ()) -> None:
        """Journal ``observation`` (if it changes persisted state) with the ledger entries it
        makes, all in the writer's next commit."""
        journal = self.journal
        if journal is not None:
            journal.record(observation)
            for entry in entries:
                journal.put_ledger_entry(entry)

    async def attach(self, version: Version, nursery: trio.Nursery) -> None:
        """Start serving one connection: the machine tasks will run in ``nursery`` (the
        station nursery), starting with one per open transaction and report in progress.

        One connection at a time: while a replaced connection is still closing, this waits
        for its :meth:`detach` before it starts.  Call :meth:`detach` from the same task once
        ``nursery`` has closed.

        Waits for: the previous connection's :meth:`detach`.  Cancellation: safe (nothing
        attached).  Closes: nothing.
        """
        await self._run_lock.acquire()
        self.version = Version(version)
        self._nursery = nursery
        self._attached = True
        for tx_id in list(self._open):
            self._tx_channel(tx_id)
        for key in list(self._reports):
            self._report_channel(key)

    def detach(self) -> None:
        """End serving the connection, once the nursery given to :meth:`attach` has closed
        (so every machine task has ended): apply what was left unapplied, fail the waiters,
        and fold the journal into a snapshot.  Idempotent."""
        if not self._attached:
            return
        self._attached = False
        self._nursery = None
        try:
            self._wind_down()
            self._outstanding.clear()
            self._wake_settlers()
            lost = ConnectionLostError(f"station {self.identity!r} disconnected")
            for wait in self._tx_waits:
                wait.fail(lost)
            for waits in self._report_waits.values():
                for report_wait in waits:
                    report_wait.fail(lost)
            # everything submitted has been applied: fold the journal into a snapshot
            if self.journal is not None and self.journal.unfolded:
                self.journal.put_snapshot(self.snapshot())
        finally:
            self._run_lock.release()

    async def remove_evse(self, evse_id: int) -> None:
        """Forget EVSE ``evse_id`` (decommissioned); its task ends.

        Waits for: room in the EVSE task's channel.  Cancellation: safe.  Closes: the task.
        """
        box = self._evse_tasks.get(evse_id)
        if box is None:
            self._evses.pop(evse_id, None)
            return
        envelope = _Envelope[EvseCommand | RemoveEvse](RemoveEvse(), box)
        try:
            await box.send.send(envelope)
        except BaseException as exc:
            envelope.done()  # never delivered
            if not isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                raise
            self._evses.pop(evse_id, None)

    # -- dispatching -----------------------------------------------------------------------

    async def _dispatch(
        self, observation: Observation, tracker: _Tracker | None, wire: Json | None
    ) -> None:
        self._observations += 1
        assert self.version is not None
        effects: list[Effect] = []
        entries: list[LedgerEntry] = []
        try:
            effects = self._within_limits(self._interpret(observation, self.version, wire))
            touched = self._ending_effects(effects)
            if touched:  # the rare exchange that ends a transaction
                entries = await self._ledger_entries(touched, tracker.seq if tracker else None)
        except trio.Cancelled:
            self._leftover.extend(effects)  # applied when the connection ends
            raise
        finally:
            # journaled here, under the order lock, so that the journal's order is the order
            # the exchanges are applied in; with the ledger entries, in one commit
            self._journal(observation, entries)
        for index, effect in enumerate(effects):
            if self._apply_here(effect):
                continue
            try:
                await self._hand_over(effect, tracker)
            except trio.Cancelled:
                # the connection is ending: what no task took is applied once they are done
                self._leftover.extend(effects[index:])
                raise

    def _interpret(
        self, observation: Observation, version: Version, wire: Json | None = None
    ) -> list[Effect]:
        """The effects of an exchange, with the transactions a reboot closes."""
        effects = interpret(self, observation, version, wire)
        if observation.action == "BootNotification":
            effects += reboot_effects(self._open.values(), observation, version)
        return effects

    def restore(
        self, snapshot: StationSnapshot | None, observations: Iterable[Observation] = ()
    ) -> None:
        """Replace the state with ``snapshot`` (empty when ``None``), then apply
        ``observations`` in order, as the tasks would have (recovery from a store).

        No events are published for the replayed exchanges (they were when they happened).

        Raises:
            RuntimeError: a connection is being served.
            Exception: an observation could not be applied (the state is then partial).
        """
        if self.running:
            raise RuntimeError(f"station {self.identity!r} is connected; cannot restore it now")
        self._load_snapshot(snapshot or StationSnapshot(identity=self.identity))
        events, self._events = self._events, Broadcast[MachineEvent](name="replay")
        self._replaying = True  # what is replayed is in the store already, ledger included
        try:
            for observation in observations:
                version = observation.request.VERSION
                self.version = version
                self._observations += 1
                for effect in self._within_limits(self._interpret(observation, version)):
                    self._perform_now(effect, strict=True)
        finally:
            self._events = events
            self._replaying = False
            self._note_ended()

    def _within_limits(self, effects: list[Effect]) -> list[Effect]:
        """``effects`` without those that would make the machines track more EVSEs, open
        transactions, reports in progress or device-model variables than
        :class:`MachinesConfig` allows (a station can send any id or name; the exchange itself
        is answered all the same)."""
        config = self.config
        new_evses: set[int] = set()
        new_transactions: set[str] = set()
        new_reports: set[tuple[str, int]] = set()
        kept: list[Effect] = []
        for effect in effects:
            if isinstance(effect, ToEvse):
                if not self._admits(
                    effect.evse_id, self._evses, new_evses, "EVSE", "max_evses", config.max_evses
                ):
                    continue
            elif isinstance(effect, ToTransaction):
                tx_id = effect.transaction_id
                # a late event reopens a finished one, whatever the limit
                if tx_id not in self._ended and not self._admits(
                    tx_id, self._open, new_transactions, "transaction", "max_open_transactions",
                    config.max_open_transactions,
                ):  # fmt: skip
                    continue
            elif isinstance(effect, ToReport):
                key = (effect.kind, effect.request_id)
                if not self._admits(
                    key, self._reports, new_reports, "report", "max_open_reports",
                    config.max_open_reports,
                ):  # fmt: skip
                    continue
            elif isinstance(effect, NewModel):
                limit = config.max_device_model_variables
                model, left_out = effect.model.within(limit, base=self._model)
                if left_out:
                    self._over(
                        "device-model variable", f"{left_out} new", "max_device_model_variables",
                        limit,
                    )  # fmt: skip
                    effect = attrs.evolve(effect, model=model)
            kept.append(effect)
        return kept

    def _admits(
        self, key: K, held: Collection[K], new: set[K], what: str, limit: str, value: int
    ) -> bool:
        """Whether ``key`` may be tracked: ``held`` (or ``new`` in this exchange) already,
        else if ``held`` and ``new`` together stay under ``value`` (then ``key`` joins
        ``new``); a refusal is logged and counted as over ``MachinesConfig.<limit>``."""
        if key in held or key in new:
            return True
        if len(held) + len(new) >= value:
            self._over(what, key, limit, value)
            return False
        new.add(key)
        return True

    def _apply_here(self, effect: Effect) -> bool:
        """Apply ``effect`` in the submitting task if that keeps the order; ``False``: it is
        for a task (see :meth:`_hand_over`).

        A command for a task that is idle (nothing sent to it is left to apply) is applied
        here and now: the same order, without a task switch.  What changes the task's own
        course (its first command, an event that ends its transaction or follows the end, a
        report's part, which restarts the report's timeout) still goes to the task.
        """
        if isinstance(effect, ToEvse):
            box = self._evse_tasks.get(effect.evse_id)
            if box is None:
                if not _changes_nothing(self, effect):
                    return False  # an EVSE gets a task with the first command that changes it
                self._evses.setdefault(effect.evse_id, Evse(evse_id=effect.evse_id))
                return True
            if box.pending:
                return False
        elif isinstance(effect, ToTransaction):
            if _tx_item(effect) is None:
                return True
            box_tx = self._tx_tasks.get(effect.transaction_id)
            if box_tx is None or box_tx.pending or not self._runs_on(effect):
                return False
        elif isinstance(effect, ToReport):
            return not self._report_takes(effect)
        self._perform_now(effect)
        return True

    async def _hand_over(self, effect: Effect, tracker: _Tracker | None) -> None:
        """Send ``effect`` to its task (started if needed): one :meth:`_apply_here` declined."""
        if isinstance(effect, ToEvse):
            command: EvseCommand | RemoveEvse = effect.command
            await self._deliver(partial(self._evse_channel, effect.evse_id), command, tracker)
        elif isinstance(effect, ToTransaction):
            item = _tx_item(effect)
            assert item is not None
            await self._deliver(partial(self._tx_channel, effect.transaction_id), item, tracker)
        else:
            assert isinstance(effect, ToReport)
            key = (effect.kind, effect.request_id)
            await self._deliver(partial(self._report_channel, key), effect, tracker)

    def _runs_on(self, effect: ToTransaction) -> bool:
        """Whether ``effect`` is an event that leaves its open transaction running (so its
        task goes on waiting as it is)."""
        record = effect.record
        if record is None or record.kind is TransactionEventKind.ENDED:
            return False
        tx = self._open.get(effect.transaction_id)
        return tx is not None and not tx.ended

    def _perform_now(self, effect: Effect, *, strict: bool = False) -> None:
        """Apply an effect here and now (no task involved); ``strict`` raises what fails."""
        try:
            if isinstance(effect, ToEvse):
                self._apply_evse(effect.evse_id, effect.command)
            elif isinstance(effect, ToTransaction):
                item = _tx_item(effect)
                if item is not None:
                    self._reopen(effect.transaction_id)
                    self._apply_transaction(effect.transaction_id, item)
            elif isinstance(effect, ToReport):
                if self._report_takes(effect):
                    self._apply_report((effect.kind, effect.request_id), effect)
            elif isinstance(effect, Publish):
                self._publish(effect.event)
            elif isinstance(effect, NewModel):
                self._model = effect.model
                self._publish(
                    DeviceModelUpdated(
                        identity=self.identity, source=effect.source, count=effect.count
                    )
                )
            elif isinstance(effect, AddRemoteStart):
                self._add_remote_start(effect.remote_start)
            else:
                self._remote_starts.pop(effect.remote_start_id, None)
        except Exception:
            if strict:
                raise
            log.exception("station %r: BUG (ours): applying %r failed", self.identity, effect)

    def _wind_down(self) -> None:
        """Once the tasks have ended: apply what was not handed out to them, then the
        exchanges whose turn had not come.  Every exchange the station was answered for is
        recorded."""
        leftover, self._leftover = self._leftover, []
        for effect in leftover:
            self._perform_now(effect)
        assert self.version is not None
        version = self.version
        unapplied, self._unapplied = self._unapplied, []
        for observation in unapplied:
            self._observations += 1
            try:
                for effect in self._interpret(observation, version):
                    self._perform_now(effect)
            except Exception:
                log.exception(
                    "station %r: BUG (ours): applying %s failed", self.identity, observation.action
                )

    def _drain(
        self, receive: trio.MemoryReceiveChannel[_Envelope[C]], apply: Callable[[C], None]
    ) -> None:
        """Apply, without waiting, what is still queued in ``receive``."""
        while True:
            try:
                envelope = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            try:
                apply(envelope.item)
            except Exception:
                log.exception(
                    "station %r: BUG (ours): applying %r failed", self.identity, envelope.item
                )
            finally:
                envelope.done()

    def _add_remote_start(self, remote: RemoteStart) -> None:
        horizon = remote.requested_at - datetime.timedelta(seconds=self.config.remote_start_window)
        for old in [r for r in self._remote_starts.values() if r.requested_at < horizon]:
            del self._remote_starts[old.remote_start_id]
        self._remote_starts[remote.remote_start_id] = remote

    def _report_takes(self, effect: ToReport) -> bool:
        """Whether the report accepts ``effect`` (a part for a finished report does not)."""
        key = (effect.kind, effect.request_id)
        if key not in self._reports and key in self._report_history:
            if effect.part is not None:
                self._late_parts += 1
                log.warning(
                    "station %r: %s part for request %d after the report finished; ignored",
                    self.identity,
                    effect.kind,
                    effect.request_id,
                )
                return False
            del self._report_history[key]  # the requestId was used again: a new report
        return True

    def _reopen(self, tx_id: str) -> None:
        """A late event for a finished transaction: it is open again until complete."""
        finished = self._ended.pop(tx_id, None)
        if finished is not None and tx_id not in self._open:
            self._open[tx_id] = finished
            if finished.ended:
                self._reported_ended.add(tx_id)
                self._ending.add(tx_id)

    async def _deliver(
        self,
        channel: Callable[[], _Mailbox[C]],
        item: C,
        tracker: _Tracker | None,
    ) -> None:
        # a task may end between lookups (its transaction completed): then start another
        for _attempt in range(3):
            box = channel()
            envelope = _Envelope(item, box, tracker)
            try:
                try:
                    box.send.send_nowait(envelope)
                except trio.WouldBlock:
                    await box.send.send(envelope)
            except BaseException as exc:
                envelope.done()  # never delivered
                if not isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                    raise
            else:
                return
        log.error("station %r: BUG (ours): could not deliver %r", self.identity, item)

    def _spawn(
        self,
        registry: dict[K, _Mailbox[C]],
        key: K,
        body: Callable[[K, _Mailbox[C], trio.MemoryReceiveChannel[_Envelope[C]]], Awaitable[None]],
        name: str,
    ) -> _Mailbox[C]:
        if self._nursery is None:
            raise ConnectionLostError(f"station {self.identity!r}: machines not running")
        send, receive = trio.open_memory_channel[_Envelope[C]](self.config.machine_buffer)
        box = registry[key] = _Mailbox(send)
        self._nursery.start_soon(body, key, box, receive, name=f"{name} {self.identity}/{key}")
        return box

    def _evse_channel(self, evse_id: int) -> _Mailbox[EvseCommand | RemoveEvse]:
        box = self._evse_tasks.get(evse_id)
        if box is None:
            self._evses.setdefault(evse_id, Evse(evse_id=evse_id))
            box = self._spawn(self._evse_tasks, evse_id, self._run_evse, "evse")
        return box

    def _tx_channel(self, tx_id: str) -> _Mailbox[_TxItem]:
        box = self._tx_tasks.get(tx_id)
        if box is None:
            self._reopen(tx_id)
            box = self._spawn(self._tx_tasks, tx_id, self._run_transaction, "transaction")
        return box

    def _report_channel(self, key: ReportKey) -> _Mailbox[ToReport]:
        box = self._report_tasks.get(key)
        if box is None:
            box = self._spawn(self._report_tasks, key, self._run_report, "report")
        return box

    # -- EVSE tasks ------------------------------------------------------------------------

    async def _run_evse(
        self,
        evse_id: int,
        box: _Mailbox[EvseCommand | RemoveEvse],
        receive: trio.MemoryReceiveChannel[_Envelope[EvseCommand | RemoveEvse]],
    ) -> None:
        try:
            async for envelope in receive:
                try:
                    if isinstance(envelope.item, RemoveEvse):
                        self._evses.pop(evse_id, None)
                        return
                    self._apply_evse(evse_id, envelope.item)
                except Exception:
                    log.exception("station %r: BUG (ours): EVSE %d failed", self.identity, evse_id)
                finally:
                    envelope.done()
                del envelope
        finally:
            if self._evse_tasks.get(evse_id) is box:
                del self._evse_tasks[evse_id]
            self._drain(receive, partial(self._evse_item, evse_id))
            receive.close()

    def _evse_item(self, evse_id: int, item: EvseCommand | RemoveEvse) -> None:
        if isinstance(item, RemoveEvse):
            self._evses.pop(evse_id, None)
        else:
            self._apply_evse(evse_id, item)

    # -- transaction tasks -----------------------------------------------------------------

    async def _run_transaction(
        self,
        tx_id: str,
        box: _Mailbox[_TxItem],
        receive: trio.MemoryReceiveChannel[_Envelope[_TxItem]],
    ) -> None:
        finished = False
        try:
            while True:
                tx = self._open.get(tx_id)
                envelope: _Envelope[_TxItem] | None = None
                # closed by a reboot: wait for the station's own account like for a gap
                if tx is not None and tx.complete and not closed_by_reboot(tx):
                    try:  # no checkpoint from here to the close: nothing can slip in
                        envelope = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        finished = True
                        return
                else:
                    if tx is not None and tx.ended:
                        with trio.move_on_after(self.config.late_event_window):
                            envelope = await receive.receive()
                    else:  # no cancel scope per event while the transaction runs
                        envelope = await receive.receive()
                    if envelope is None:
                        if tx is not None and closed_by_reboot(tx):
                            log.info(
                                "station %r: transaction %s closed: the station rebooted",
                                self.identity,
                                tx_id,
                            )
                        else:
                            log.info(
                                "station %r: transaction %s ended with seqNo %s missing",
                                self.identity,
                                tx_id,
                                tx.missing_seq_nos if tx is not None else (),
                            )
                        finished = True
                        return
                try:
                    self._apply_transaction(tx_id, envelope.item)
                except Exception:
                    log.exception(
                        "station %r: BUG (ours): transaction %s failed", self.identity, tx_id
                    )
                finally:
                    envelope.done()
        finally:
            if self._tx_tasks.get(tx_id) is box:
                del self._tx_tasks[tx_id]
            self._drain(receive, partial(self._apply_transaction, tx_id))
            receive.close()
            if finished:
                self._retire_transaction(tx_id)

    # -- report tasks ----------------------------------------------------------------------

    async def _run_report(
        self,
        key: ReportKey,
        box: _Mailbox[ToReport],
        receive: trio.MemoryReceiveChannel[_Envelope[ToReport]],
    ) -> None:
        finished = False
        try:
            while True:
                report = self._reports.get(key)
                envelope: _Envelope[ToReport] | None = None
                if report is not None and report.finished:
                    try:
                        envelope = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        finished = True
                        return
                else:
                    with trio.move_on_after(self.config.report_timeout):
                        envelope = await receive.receive()
                    if envelope is None:
                        if report is not None:
                            self._report_changed(report, expire_report(report, _utc_now()))
                        finished = True
                        return
                try:
                    self._apply_report(key, envelope.item)
                except Exception:
                    log.exception("station %r: BUG (ours): report %s failed", self.identity, key)
                finally:
                    envelope.done()
        finally:
            if self._report_tasks.get(key) is box:
                del self._report_tasks[key]
            self._drain(receive, partial(self._apply_report, key))
            receive.close()
            if finished:
                self._retire_report(key)


def _changes_nothing(state: MachinesState, effect: ToEvse) -> bool:
    """Whether ``effect`` would leave its EVSE's record as it is (e.g. the boot's "EVSE 0
    exists" for a station whose EVSE 0 is already known, or not known yet)."""
    command = effect.command
    if isinstance(command, RemoveEvse):
        return False
    old = state.evses.get(effect.evse_id) or Evse(evse_id=effect.evse_id)
    return apply_evse(old, command) is old


def _tx_item(effect: ToTransaction) -> _TxItem | None:
    return effect.record if effect.record is not None else effect.link
