"""Recovery: a station served again (after a restart, or by another process) from the store.

When a station connects and a CSMS has a store, :meth:`Recovery.claim` claims the station (its
epoch goes up by one, so the process that served it before can no longer write to it) and
decides how its connection starts:

* **accepted in the store** (same OCPP version): the connection starts RESUMED, accepted, with
  no BootNotification expected and CSMS calls allowed at once.  The machines (device model,
  EVSEs, reservations, open transactions with their seqNos and meter values, reports in
  progress) are the stored snapshot with the stored journal replayed on top; their EVSE and
  transaction tasks start again from it.  When this process served the station last and nobody
  claimed it since, the machines in memory are current and kept as they are.
* **pending or rejected** in the store: the connection starts in that state.
* **never booted**: it starts CONNECTED (a BootNotification is required).

A station registered under another OCPP version than the one it connects with now is a **new
registration**: the stored registration is dropped (one INFO line) and the connection waits for
its BootNotification, which a station that changed its version sends (a firmware update, a
configuration change); its stored machines are kept, so the boot closes the transactions it
left open (and they reach the ledger).  No Reset is sent: the station boots by itself.

Recovery **fails** when the stored state cannot be read, is inconsistent (a snapshot of
another station, a gap in the journal, an exchange that cannot be replayed), or when the
station, resumed as accepted, answers a CSMS call with ``SecurityError`` (what a station that
does not take itself for accepted answers).  Then, per :class:`RecoveryConfig`:

* :attr:`RecoveryAction.RESET` (default): the connection starts accepted and a Reset is sent
  (``OnIdle``, 1.6 ``Soft``; or ``Immediate`` / ``Hard``), so the station reboots and sends a
  BootNotification;
* :attr:`RecoveryAction.REFUSE`: the registration is dropped; the station must boot again (its
  other CALLs are answered SecurityError until it does).

Either way the reason is logged (WARNING) and a :class:`RecoveryFailed` event is published.  A
station that refused our CALL with SecurityError is also disconnected, with its registration
forgotten, so that its next connection waits for its BootNotification.
"""

from __future__ import annotations

import datetime
import enum
import logging
from typing import Any

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.events import MachineEvent
from ocpp_trio.errors import CallError, ErrorCode, OCPPError, UnreadableRecordError
from ocpp_trio.messages._base import Direction, Request
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Broadcast, Exchange
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.peer import StationPeer
from ocpp_trio.store.base import Registration, StoredStation
from ocpp_trio.store.writer import StationJournal, StoreWriter

__all__ = [
    "Recovery",
    "RecoveryAction",
    "RecoveryConfig",
    "RecoveryFailed",
    "RecoveryPlan",
    "ResetKind",
    "reset_request",
]

log = logging.getLogger("ocpp_trio")


class RecoveryAction(enum.Enum):
    """What to do when a station cannot be resumed from the store."""

    #: serve it as accepted and send it a Reset, so that it reboots and boots again
    RESET = "reset"
    #: drop its registration: it must send a BootNotification (other CALLs: SecurityError)
    REFUSE = "refuse"


class ResetKind(enum.Enum):
    """The Reset sent by :attr:`RecoveryAction.RESET`."""

    #: 2.x ``OnIdle`` (after the running transactions), 1.6 ``Soft``
    ON_IDLE = "on_idle"
    #: 2.x ``Immediate``, 1.6 ``Hard``
    IMMEDIATE = "immediate"


@attrs.frozen(kw_only=True)
class RecoveryConfig:
    """How a CSMS with a store recovers stations.

    Attributes:
        on_failure: see :class:`RecoveryAction`.
        reset: the kind of Reset sent by :attr:`RecoveryAction.RESET`.
        snapshot_every: journal entries after which a station's state is stored afresh as a
            snapshot (the journal is folded into it); also done when the station disconnects.
            A station whose last snapshot held more transaction events than this waits for
            as many entries, so that what snapshots cost per entry does not grow with the
            length of a transaction.
        watch_security_errors: treat a SecurityError answer to a CSMS call, while a resumed
            station has not booted again, as a failed recovery.
    """

    on_failure: RecoveryAction = RecoveryAction.RESET
    reset: ResetKind = ResetKind.ON_IDLE
    snapshot_every: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    watch_security_errors: bool = True


@attrs.frozen(kw_only=True)
class RecoveryFailed(MachineEvent):
    """A station could not be resumed from the store: ``reason`` says why, ``action`` what was
    done (see :class:`RecoveryAction`)."""

    reason: str
    action: RecoveryAction


def reset_request(version: Version, kind: ResetKind) -> Request[Any]:
    """The Reset request of ``version`` for ``kind``."""
    if version is Version.V16:
        value = "Soft" if kind is ResetKind.ON_IDLE else "Hard"
    else:
        value = "OnIdle" if kind is ResetKind.ON_IDLE else "Immediate"
    request = messages.decode_request(version, "Reset", {"type": value})
    assert isinstance(request, Request)
    return request


@attrs.frozen(kw_only=True)
class RecoveryPlan:
    """How a claimed station's connection starts.

    Attributes:
        status: the registration the connection starts with.
        journal: where the connection's writes go.
        failure: why recovery failed, ``None`` when it did not.
        action: what was done about the failure.
        restored: whether the machines were rebuilt from the store (else memory was current).
    """

    status: RegistrationStatus | None
    journal: StationJournal
    failure: str | None = None
    action: RecoveryAction | None = None
    restored: bool = False

    @property
    def resumed(self) -> bool:
        """Whether the connection starts accepted without a BootNotification."""
        return self.status is RegistrationStatus.ACCEPTED


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _check_journal(record: StoredStation) -> None:
    expected = record.through
    for entry in record.journal:
        expected += 1
        if entry.seq != expected:
            raise ValueError(f"journal entry {expected} is missing (found {entry.seq})")


class Recovery:
    """The recovery of one CSMS's stations (see the module docstring).

    Args:
        writer: the CSMS's store writer.
        config: the recovery rules.
        events: where :class:`RecoveryFailed` is published.
    """

    def __init__(
        self, writer: StoreWriter, config: RecoveryConfig, events: Broadcast[MachineEvent]
    ) -> None:
        self.writer = writer
        self.config = config
        self._events = events
        # the journal of this process's latest claim, per identity
        self._journals: dict[str, StationJournal] = {}
        self._locks: dict[str, trio.Lock] = {}
        # what the application seeded (add_station) since the identity's last claim
        self._seeds: dict[str, tuple[bool, DeviceModel | None]] = {}
        #: identities whose registration a failed recovery dropped (read once by the CSMS)
        self.forgotten: set[str] = set()

    def seed(self, identity: str, *, snapshot: bool, device_model: DeviceModel | None) -> None:
        """The application seeded ``identity`` (``CSMS.add_station``): at its next claim, a
        seeded snapshot replaces the stored state, a seeded device model the stored model."""
        had_snapshot, _model = self._seeds.get(identity, (False, None))
        self._seeds[identity] = (had_snapshot or snapshot, device_model)

    def forget(self, identity: str) -> bool:
        """Whether a failed recovery dropped the registration of ``identity`` (asked once, when
        its connection ends)."""
        if identity in self.forgotten:
            self.forgotten.discard(identity)
            return True
        return False

    def drop(self, identity: str) -> None:
        """Keep nothing about ``identity`` (the CSMS forgot it)."""
        self._journals.pop(identity, None)
        self._seeds.pop(identity, None)
        self.forgotten.discard(identity)

    def journal(self, identity: str) -> StationJournal | None:
        """The journal of this process's latest claim of ``identity``."""
        return self._journals.get(identity)

    def lock(self, identity: str) -> trio.Lock:
        """A lock serialising the claims of one identity (dropped by :meth:`unlock`)."""
        lock = self._locks.get(identity)
        if lock is None:
            lock = self._locks[identity] = trio.Lock()
        return lock

    def unlock(self, identity: str) -> None:
        """Forget the lock of ``identity`` when nobody holds or waits for it."""
        lock = self._locks.get(identity)
        if lock is not None and not lock.locked() and not lock.statistics().tasks_waiting:
            del self._locks[identity]

    async def claim(
        self, identity: str, version: Version, machines: StationMachines, *, known: bool
    ) -> RecoveryPlan:
        """Claim ``identity`` and bring ``machines`` to its stored state.

        Args:
            identity: the station.
            version: the version of the new connection.
            machines: the identity's machines (not running).
            known: whether ``machines`` held state before (seeded or served here).

        Waits for: our own pending writes, then the store.  Cancellation: safe before the
        claim; after it, the claim stands (the next one supersedes it).

        Raises:
            StoreError: the store failed (the connection should be closed).
        """
        await self.writer.flush()
        previous = self._journals.get(identity)
        failure: str | None = None
        record: StoredStation | None = None
        try:
            record = await self.writer.store.claim(identity, version)
        except UnreadableRecordError as exc:
            failure = str(exc)
            epoch, last_seq = exc.epoch, exc.last_seq
        else:
            epoch, last_seq = record.epoch, record.last_seq
        journal = StationJournal(
            self.writer,
            identity,
            epoch=epoch,
            last_seq=last_seq,
            unfolded=len(record.journal) if record is not None else 0,
        )
        self._journals[identity] = journal
        machines.journal = journal
        restored = False
        lost = record is None  # the stored state could not be used: start from nothing
        seeded_snapshot, seeded_model = self._seeds.pop(identity, (False, None))
        if record is not None:
            current = seeded_snapshot or (
                previous is not None and previous.epoch == epoch - 1 and previous.broken is None
            )
            if record.empty and (known or current):
                journal.put_snapshot(machines.snapshot())  # a seeded model, stored at once
            elif not current:
                try:
                    _restore(machines, record)
                except Exception as exc:
                    failure = f"station {identity!r}: stored state inconsistent: {exc}"
                    log.debug("station %r: restore failed", identity, exc_info=True)
                    lost = True
                else:
                    restored = True
            if seeded_model is not None:
                machines.set_device_model(seeded_model)
            if seeded_snapshot or seeded_model is not None:
                journal.put_snapshot(machines.snapshot())  # what the application gave wins
        registration = record.registration if record is not None else None
        status = registration.status if registration is not None else None
        if failure is None and registration is not None and status is not None:
            stored = registration.version
            if stored is not None and stored is not version:
                # another version: a new registration (no Reset; the station boots itself)
                log.info(
                    "station %r: registered (%s) with OCPP %s, now connects with OCPP %s: "
                    "a new registration, waiting for its BootNotification",
                    identity,
                    status.value,
                    stored,
                    version,
                )
                status = None
                journal.put_registration(None)
        if failure is None:
            if restored:
                log.info(
                    "station %r: restored from the store (%s, %d transaction(s) open)",
                    identity,
                    status.value if status is not None else "not booted",
                    len(machines.transactions),
                )
            return RecoveryPlan(status=status, journal=journal, restored=restored)
        # a snapshot the application seeded is kept even when the stored state is lost
        lost = lost and not seeded_snapshot
        return self._failed_at_claim(identity, version, machines, journal, record, failure, lost)

    def _failed_at_claim(
        self,
        identity: str,
        version: Version,
        machines: StationMachines,
        journal: StationJournal,
        record: StoredStation | None,
        failure: str,
        lost: bool,
    ) -> RecoveryPlan:
        registration = record.registration if record is not None else None
        unreadable = record is None
        if lost:
            machines.restore(None)
        if lost or unreadable:
            journal.put_snapshot(machines.snapshot())  # replaces what could not be used
        resumable = unreadable or (
            registration is not None and registration.status is RegistrationStatus.ACCEPTED
        )
        action = self.config.on_failure if resumable else RecoveryAction.REFUSE
        status = RegistrationStatus.ACCEPTED if action is RecoveryAction.RESET else None
        # stored as decided, so the next connection does not fail the same way
        journal.put_registration(
            Registration(status=status, version=version, at=_utc_now()) if status else None
        )
        self.report(identity, failure, action)
        return RecoveryPlan(status=status, journal=journal, failure=failure, action=action)

    def report(self, identity: str, reason: str, action: RecoveryAction) -> None:
        """Log and publish a failed recovery."""
        what = {
            RecoveryAction.RESET: f"sending a Reset ({self.config.reset.value})",
            RecoveryAction.REFUSE: "the station must boot again",
        }[action]
        log.warning("station %r: recovery failed: %s; %s", identity, reason, what)
        self._events.publish(RecoveryFailed(identity=identity, reason=reason, action=action))

    async def send_reset(self, station: StationPeer) -> None:
        """Send the configured Reset; log the outcome (never raises for the station's).

        Waits for: the station's answer.  Cancellation: passes through.
        """
        request = reset_request(station.version, self.config.reset)
        try:
            response = await station.call(request)
        except OCPPError as exc:
            log.warning("station %r: the recovery Reset failed: %s", station.identity, exc)
            return
        status = response.to_json().get("status")
        log.info("station %r: the recovery Reset was answered %s", station.identity, status)

    def watcher(self, journal: StationJournal) -> _SecurityErrorWatch:
        """An extra handler that fails the recovery when the resumed station refuses a CSMS
        call with SecurityError before it boots again."""
        return _SecurityErrorWatch(self, journal)

    async def refused_by_station(
        self, station: StationPeer, action: str, journal: StationJournal
    ) -> None:
        """The resumed station answered ``action`` with SecurityError: report, Reset if so
        configured, drop the registration and disconnect.

        Waits for: the Reset's answer.  Cancellation: passes through.
        """
        reason = (
            f"station {station.identity!r} answered {action} with SecurityError: it does not "
            "take itself for accepted"
        )
        self.report(station.identity, reason, self.config.on_failure)
        if self.config.on_failure is RecoveryAction.RESET:
            await self.send_reset(station)
        if self._journals.get(station.identity) is journal:
            journal.put_registration(None)
        self.forgotten.add(station.identity)
        await station.aclose(1000, "recovery failed: boot again")


class _SecurityErrorWatch:
    """See :meth:`Recovery.watcher`."""

    def __init__(self, recovery: Recovery, journal: StationJournal) -> None:
        self._recovery = recovery
        self._journal = journal
        self._done = False

    async def __call__(self, station: StationPeer, exchange: Exchange) -> None:
        if self._done:
            return
        if exchange.direction is Direction.STATION_TO_CSMS:
            if exchange.action == "BootNotification":
                self._done = True  # it booted again: nothing left to verify
            return
        error = exchange.error
        if isinstance(error, CallError) and error.code in (
            ErrorCode.SECURITY_ERROR,
            "SecurityError",
        ):
            self._done = True
            await self._recovery.refused_by_station(station, exchange.action, self._journal)


def _restore(machines: StationMachines, record: StoredStation) -> None:
    snapshot = record.snapshot
    if snapshot is not None and snapshot.identity != record.identity:
        raise ValueError(f"the snapshot is of station {snapshot.identity!r}")
    _check_journal(record)
    machines.restore(snapshot, [entry.observation for entry in record.journal])
