"""Transactions as plain frozen records, and how messages change them (sans-IO, no trio).

A :class:`Transaction` is the set of its events (:class:`TransactionEventRecord`), deduplicated
and kept sorted, plus what the CSMS linked to it.  Everything else (start and end times, EVSE,
idToken, charging state, meter readings, energy, seqNo gaps) is *derived* from that set, so the
final transaction does not depend on the order in which the events arrived: offline events that
arrive late, out of order or twice give the same result.

- **2.x** ``TransactionEvent``: events are ordered by ``seqNo``; a seqNo seen before is a
  duplicate (the first copy is kept).  Gaps are the seqNos missing between the Started event's
  seqNo (else the lowest seen) and the highest seen; they are reported, never a reason to reject.
- **1.6**: ``StartTransaction`` (the CSMS assigns the integer transaction id, kept here as its
  decimal string), ``MeterValues`` with a ``transactionId``, and ``StopTransaction`` (with
  ``transactionData``).  Events are ordered start, meter values by time, stop.

Energy: the register (``Energy.Active.Import.Register``, the default measurand) is read from
samples without a phase and not measured at the EV; values are converted to Wh (``kWh`` and the
2.x ``multiplier`` are honoured).  The start reading is 1.6 ``meterStart``, else the
``Transaction.Begin`` sample, else the earliest reading; the stop reading is 1.6 ``meterStop``,
else the ``Transaction.End`` sample, else (once ended) the latest reading.
"""

from __future__ import annotations

import bisect
import datetime
import enum
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar

import attrs

from ocpp_trio.domain.sequence import gaps
from ocpp_trio.domain.wire import (
    Json,
    as_bool,
    as_float,
    as_int,
    as_list,
    as_map,
    as_str,
    as_time,
    as_word,
)
from ocpp_trio.protocol.version import Version

__all__ = [
    "ENERGY_REGISTER",
    "RemoteStart",
    "Sample",
    "Transaction",
    "TransactionEventKind",
    "TransactionEventRecord",
    "TransactionIdAllocator",
    "TransactionIdCounter",
    "TransactionNotice",
    "apply_record",
    "in_order",
    "link_remote_start",
    "record_from_meter_values_16",
    "record_from_start_transaction",
    "record_from_stop_transaction",
    "record_from_transaction_event",
    "samples_from_meter_values",
]

T = TypeVar("T")

#: the measurand of the energy register, and the default when a sample names none
ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

_PREFIXED: Final = {"kWh": "Wh", "kW": "W", "kvarh": "varh", "kvar": "var", "kVA": "VA"}


class TransactionEventKind(enum.Enum):
    """Where an event sits in a transaction's life."""

    STARTED = "Started"
    UPDATED = "Updated"
    ENDED = "Ended"


class TransactionNotice(enum.Enum):
    """What applying one event did to a transaction (see :func:`apply_record`)."""

    #: the CSMS learned of this transaction (its first event, of whatever kind)
    STARTED = "started"
    #: a further event was added
    UPDATED = "updated"
    #: the Ended event (1.6: StopTransaction) was added
    ENDED = "ended"
    #: the event was a duplicate; nothing changed but the counter
    DUPLICATE = "duplicate"
    #: a remote start was linked to the transaction
    LINKED = "linked"


@attrs.frozen(kw_only=True)
class Sample:
    """One sampled meter value, converted to its base unit (Wh, W, varh, var, VA)."""

    timestamp: datetime.datetime
    value: float
    measurand: str = ENERGY_REGISTER
    unit: str = "Wh"
    context: str | None = None
    phase: str | None = None
    location: str | None = None

    @property
    def is_energy_register(self) -> bool:
        """Whether this is a whole-meter reading of the imported energy register."""
        return (
            self.measurand == ENERGY_REGISTER
            and self.phase is None
            and self.location != "EV"
            and self.unit == "Wh"
        )


@attrs.frozen(kw_only=True)
class TransactionEventRecord:
    """One event of a transaction, reduced to what the CSMS keeps.

    ``received_at`` is when the CSMS saw it; it is not part of the event's identity (two
    arrivals of the same event compare equal).
    """

    kind: TransactionEventKind
    timestamp: datetime.datetime
    seq_no: int | None = None
    trigger_reason: str | None = None
    offline: bool = False
    charging_state: str | None = None
    stopped_reason: str | None = None
    id_token: str | None = None
    id_token_type: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    remote_start_id: int | None = None
    reservation_id: int | None = None
    #: 1.6 meterStart / meterStop (Wh)
    meter_wh: float | None = None
    samples: tuple[Sample, ...] = ()
    received_at: datetime.datetime | None = attrs.field(default=None, eq=False)

    @property
    def order(self) -> tuple[int, int, datetime.datetime]:
        """The sort key: seqNo for 2.x; for 1.6 start, updates by time, then stop."""
        if self.seq_no is not None:
            return (self.seq_no, 0, self.timestamp)
        rank = {
            TransactionEventKind.STARTED: 0,
            TransactionEventKind.UPDATED: 1,
            TransactionEventKind.ENDED: 2,
        }
        return (-1, rank[self.kind], self.timestamp)

    def same_slot(self, other: TransactionEventRecord) -> bool:
        """Whether ``other`` claims the same place (then it is a duplicate of this one)."""
        if self.seq_no is not None or other.seq_no is not None:
            return self.seq_no == other.seq_no
        if self.kind is not other.kind:
            return False
        if self.kind is TransactionEventKind.UPDATED:
            return self == other
        return True


def _first(values: Iterable[T | None]) -> T | None:
    for value in values:
        if value is not None:
            return value
    return None


@attrs.frozen(kw_only=True)
class Transaction:
    """One transaction of one station: its events and what is derived from them.

    Attributes:
        identity: the station.
        transaction_id: the station's id (2.x), or the id the CSMS assigned, as text (1.6).
        version: the OCPP version of its messages.
        events: the distinct events, sorted (see :attr:`TransactionEventRecord.order`).
        linked_remote_start_id: a remote start matched to it by the CSMS (1.6, or a 2.x answer
            naming a running transaction); the events' own ``remoteStartId`` wins.
        duplicates: events received again (ignored).
    """

    identity: str
    transaction_id: str
    version: Version
    events: tuple[TransactionEventRecord, ...] = ()
    linked_remote_start_id: int | None = None
    duplicates: int = 0

    # -- life ------------------------------------------------------------------------------

    # which kinds of event it holds, kept by apply_record or found once when first asked:
    # asked for every event received, and a long transaction holds thousands of events
    _kinds: frozenset[TransactionEventKind] | None = attrs.field(
        init=False, default=None, eq=False, repr=False
    )

    def _kinds_held(self) -> frozenset[TransactionEventKind]:
        kinds = self._kinds
        if kinds is None:
            kinds = frozenset(e.kind for e in self.events)
            object.__setattr__(self, "_kinds", kinds)
        return kinds

    @property
    def started(self) -> bool:
        """Whether the Started event (1.6: StartTransaction) was received."""
        return TransactionEventKind.STARTED in self._kinds_held()

    @property
    def ended(self) -> bool:
        """Whether the Ended event (1.6: StopTransaction) was received."""
        return TransactionEventKind.ENDED in self._kinds_held()

    @property
    def complete(self) -> bool:
        """Ended, with no seqNo missing: nothing more is expected."""
        return self.ended and not self.missing_count

    @property
    def started_at(self) -> datetime.datetime | None:
        """The Started event's time, else the earliest event's."""
        for e in self.events:
            if e.kind is TransactionEventKind.STARTED:
                return e.timestamp
        return min((e.timestamp for e in self.events), default=None)

    @property
    def ended_at(self) -> datetime.datetime | None:
        """The Ended event's time, or ``None`` while open."""
        for e in self.events:
            if e.kind is TransactionEventKind.ENDED:
                return e.timestamp
        return None

    @property
    def updated_at(self) -> datetime.datetime | None:
        """The latest event time."""
        return max((e.timestamp for e in self.events), default=None)

    # -- attributes taken from the events (first one that says, in order) -------------------

    @property
    def evse_id(self) -> int | None:
        """The EVSE (1.6: the connector id, which is its EVSE)."""
        return _first(e.evse_id for e in self.events)

    @property
    def connector_id(self) -> int | None:
        """The connector within the EVSE, when told."""
        return _first(e.connector_id for e in self.events)

    @property
    def id_token(self) -> str | None:
        """The idToken (1.6: idTag) that started it, else the first one seen."""
        return _first(e.id_token for e in self.events)

    @property
    def stop_id_token(self) -> str | None:
        """The idToken that ended it (1.6: StopTransaction's idTag), when told."""
        for e in self.events:
            if e.kind is TransactionEventKind.ENDED:
                return e.id_token
        return None

    @property
    def remote_start_id(self) -> int | None:
        """The remote start that led to it, when one did."""
        own = _first(e.remote_start_id for e in self.events)
        return self.linked_remote_start_id if own is None else own

    @property
    def reservation_id(self) -> int | None:
        """The reservation it consumed, if any."""
        return _first(e.reservation_id for e in self.events)

    @property
    def charging_state(self) -> str | None:
        """The latest charging state reported (2.x)."""
        return _first(e.charging_state for e in reversed(self.events))

    @property
    def stopped_reason(self) -> str | None:
        """Why it ended (2.x stoppedReason, 1.6 reason)."""
        return _first(e.stopped_reason for e in reversed(self.events))

    @property
    def offline_events(self) -> int:
        """How many events the station flagged as sent after an offline period."""
        return sum(1 for e in self.events if e.offline)

    # -- sequence --------------------------------------------------------------------------

    @property
    def seq_nos(self) -> tuple[int, ...]:
        """The seqNos received (2.x), sorted."""
        return tuple(e.seq_no for e in self.events if e.seq_no is not None)

    @property
    def last_seq_no(self) -> int | None:
        """The highest seqNo received (2.x)."""
        return max(self.seq_nos, default=None)

    @property
    def missing_seq_nos(self) -> tuple[int, ...]:
        """The seqNos missing between the first (the Started event's) and the highest: the
        lowest :data:`~ocpp_trio.domain.sequence.MISSING_LISTED` (1,000) of them; see
        :attr:`missing_count` for how many (a seqNo is not bounded, a list of the gap is)."""
        return self._gaps()[0]

    @property
    def missing_count(self) -> int:
        """How many seqNos are missing between the first and the highest."""
        return self._gaps()[1]

    def _gaps(self) -> tuple[tuple[int, ...], int]:
        seen = self.seq_nos
        if not seen:
            return (), 0
        base = _first(e.seq_no for e in self.events if e.kind is TransactionEventKind.STARTED)
        if base is None:
            base = seen[0]
        return gaps(seen, base, seen[-1])

    # -- meter -----------------------------------------------------------------------------

    @property
    def samples(self) -> tuple[Sample, ...]:
        """Every sample of every event, in event order."""
        return tuple(s for e in self.events for s in e.samples)

    def _readings(self) -> list[Sample]:
        return [s for s in self.samples if s.is_energy_register]

    @property
    def meter_start_wh(self) -> float | None:
        """The energy register at the start (Wh)."""
        for e in self.events:
            if e.kind is TransactionEventKind.STARTED and e.meter_wh is not None:
                return e.meter_wh
        readings = self._readings()
        begin = [s for s in readings if s.context == "Transaction.Begin"]
        if begin:
            return begin[0].value
        return readings[0].value if readings else None

    @property
    def meter_stop_wh(self) -> float | None:
        """The energy register at the end (Wh), once ended."""
        for e in self.events:
            if e.kind is TransactionEventKind.ENDED and e.meter_wh is not None:
                return e.meter_wh
        readings = self._readings()
        end = [s for s in readings if s.context == "Transaction.End"]
        if end:
            return end[-1].value
        if self.ended and readings:
            return readings[-1].value
        return None

    @property
    def meter_latest_wh(self) -> float | None:
        """The latest energy register reading (Wh): the stop reading once ended."""
        stop = self.meter_stop_wh
        if stop is not None:
            return stop
        readings = self._readings()
        return readings[-1].value if readings else self.meter_start_wh

    @property
    def energy_wh(self) -> float | None:
        """Energy delivered so far (Wh): latest (or stop) reading minus the start reading."""
        start, latest = self.meter_start_wh, self.meter_latest_wh
        if start is None or latest is None:
            return None
        return latest - start


def apply_record(
    transaction: Transaction | None,
    record: TransactionEventRecord,
    *,
    identity: str,
    transaction_id: str,
    version: Version,
) -> tuple[Transaction, tuple[TransactionNotice, ...]]:
    """Add ``record`` to ``transaction`` (``None``: not known yet).

    Returns the new transaction and what happened: ``STARTED`` for a new transaction,
    ``UPDATED`` for a further event, ``ENDED`` for the Ended event (a lone Ended gives
    ``STARTED, ENDED``), or ``DUPLICATE``.  Never raises: every event is accepted.
    """
    notices: list[TransactionNotice] = []
    if transaction is None:
        transaction = Transaction(identity=identity, transaction_id=transaction_id, version=version)
        notices.append(TransactionNotice.STARTED)
    events = transaction.events
    last = events[-1].seq_no if events else None
    if record.seq_no is not None and last is not None and record.seq_no > last:
        # the usual 2.x case, the next event: above every seqNo held, so new and last
        at = len(events)
    else:
        if _holds_slot(events, record):
            return _evolved(
                transaction, transaction._kinds_held(), duplicates=transaction.duplicates + 1
            ), (TransactionNotice.DUPLICATE,)
        # events are sorted: the new one goes after those that sort equal (as a stable sort
        # of the events and then the record would put it)
        at = bisect.bisect_right(events, record.order, key=_order)
    kinds = transaction._kinds_held()
    was_ended = TransactionEventKind.ENDED in kinds
    transaction = _evolved(
        transaction,
        kinds | {record.kind},
        # one copy where unpacking makes two (a list, then the tuple)
        events=events + (record,)  # noqa: RUF005
        if at == len(events)
        else (*events[:at], record, *events[at:]),
    )
    if record.kind is TransactionEventKind.ENDED and not was_ended:
        notices.append(TransactionNotice.ENDED)
    elif not notices:
        notices.append(TransactionNotice.UPDATED)
    return transaction, tuple(notices)


def _evolved(
    transaction: Transaction, kinds: frozenset[TransactionEventKind], **changes: Any
) -> Transaction:
    """``attrs.evolve(transaction, **changes)`` knowing the kinds of event the result holds
    (evolve starts the new transaction without them, to be found again by a scan)."""
    new = attrs.evolve(transaction, **changes)
    object.__setattr__(new, "_kinds", kinds)
    return new


def _order(event: TransactionEventRecord) -> tuple[int, int, datetime.datetime]:
    return event.order


def _order_first(event: TransactionEventRecord) -> int:
    return event.order[0]


def _order_two(event: TransactionEventRecord) -> tuple[int, int]:
    first, second, _ = event.order
    return first, second


def _holds_slot(events: Sequence[TransactionEventRecord], record: TransactionEventRecord) -> bool:
    """Whether one of ``events`` (sorted) claims ``record``'s slot.

    Only the events whose sort keys could match are compared (found by bisection), so a long
    transaction does not cost a comparison per event it holds: with a seqNo, the events with
    that seqNo; without, those of the same kind, and for an update only those at its time.
    """
    key = record.order
    if record.seq_no is not None:
        start = bisect.bisect_left(events, key[0], key=_order_first)
        stop = bisect.bisect_right(events, key[0], key=_order_first)
    elif record.kind is TransactionEventKind.UPDATED:
        start = bisect.bisect_left(events, key, key=_order)
        stop = bisect.bisect_right(events, key, key=_order)
    else:
        start = bisect.bisect_left(events, key[:2], key=_order_two)
        stop = bisect.bisect_right(events, key[:2], key=_order_two)
    return any(events[i].same_slot(record) for i in range(start, stop))


def in_order(transaction: Transaction) -> Transaction:
    """``transaction`` with its events sorted as :func:`apply_record` keeps them (itself when
    they are): for a transaction made elsewhere, such as one in a snapshot the application
    hands over, since :func:`apply_record` finds an event's place by bisection."""
    keys = [e.order for e in transaction.events]
    if all(a <= b for a, b in itertools.pairwise(keys)):
        return transaction
    return attrs.evolve(transaction, events=tuple(sorted(transaction.events, key=_order)))


def link_remote_start(
    transaction: Transaction, remote_start_id: int
) -> tuple[Transaction, tuple[TransactionNotice, ...]]:
    """Link a remote start to ``transaction`` (idempotent)."""
    if transaction.linked_remote_start_id == remote_start_id:
        return transaction, ()
    return attrs.evolve(transaction, linked_remote_start_id=remote_start_id), (
        TransactionNotice.LINKED,
    )


# -- reading messages ------------------------------------------------------------------------


def _unit(raw: str | None, multiplier: int) -> tuple[str, float]:
    unit = raw or "Wh"
    try:
        factor = 10.0**multiplier
    except OverflowError:  # the schema does not bound the multiplier
        factor = math.inf
    base = _PREFIXED.get(unit)
    if base is not None:
        return base, factor * 1000.0
    return unit, factor


def samples_from_meter_values(meter_values: Sequence[Any], version: Version) -> tuple[Sample, ...]:
    """The samples of wire ``meterValue`` entries (1.6 or 2.x), in base units.

    Values that are not numbers (1.6 ``SignedData``), and values beyond a float's range once
    in base units, are skipped.
    """
    samples: list[Sample] = []
    for entry in meter_values:
        entry = as_map(entry)
        timestamp = as_time(entry.get("timestamp"))
        if timestamp is None:
            continue
        for raw in as_list(entry.get("sampledValue")):
            sv = as_map(raw)
            if version is Version.V16:
                if sv.get("format") == "SignedData":
                    continue
                unit, factor = _unit(as_word(sv.get("unit")), 0)
            else:
                uom = as_map(sv.get("unitOfMeasure"))
                unit, factor = _unit(as_word(uom.get("unit")), as_int(uom.get("multiplier")) or 0)
            value = as_float(sv.get("value"))
            if value is None:
                continue
            value *= factor
            if not math.isfinite(value):
                continue
            samples.append(
                Sample(
                    timestamp=timestamp,
                    value=value,
                    # shared copies: a long transaction keeps thousands of samples
                    measurand=as_word(sv.get("measurand")) or ENERGY_REGISTER,
                    unit=unit,
                    context=as_word(sv.get("context")),
                    phase=as_word(sv.get("phase")),
                    location=as_word(sv.get("location")),
                )
            )
    return tuple(samples)


def record_from_transaction_event(
    payload: Json, received_at: datetime.datetime | None = None, *, version: Version
) -> tuple[str, TransactionEventRecord]:
    """(transactionId, record) of a 2.x TransactionEventRequest (wire JSON)."""
    info = as_map(payload.get("transactionInfo"))
    evse = as_map(payload.get("evse"))
    token = as_map(payload.get("idToken"))
    kind = TransactionEventKind(as_str(payload.get("eventType")) or "Updated")
    record = TransactionEventRecord(
        kind=kind,
        timestamp=as_time(payload.get("timestamp")) or received_at or _epoch(),
        seq_no=as_int(payload.get("seqNo")),
        trigger_reason=as_word(payload.get("triggerReason")),
        offline=as_bool(payload.get("offline")),
        charging_state=as_word(info.get("chargingState")),
        stopped_reason=as_word(info.get("stoppedReason")),
        id_token=as_str(token.get("idToken")),
        id_token_type=as_word(token.get("type")),
        evse_id=as_int(evse.get("id")),
        connector_id=as_int(evse.get("connectorId")),
        remote_start_id=as_int(info.get("remoteStartId")),
        reservation_id=as_int(payload.get("reservationId")),
        samples=samples_from_meter_values(as_list(payload.get("meterValue")), version),
        received_at=received_at,
    )
    return as_str(info.get("transactionId")) or "", record


def record_from_start_transaction(
    payload: Json,
    transaction_id: int,
    received_at: datetime.datetime | None = None,
    *,
    remote_start_id: int | None = None,
) -> tuple[str, TransactionEventRecord]:
    """(transaction id, record) of a 1.6 StartTransaction and the id the CSMS answered."""
    connector = as_int(payload.get("connectorId"))
    record = TransactionEventRecord(
        kind=TransactionEventKind.STARTED,
        timestamp=as_time(payload.get("timestamp")) or received_at or _epoch(),
        id_token=as_str(payload.get("idTag")),
        evse_id=connector,
        connector_id=1 if connector else None,
        reservation_id=as_int(payload.get("reservationId")),
        remote_start_id=remote_start_id,
        meter_wh=as_float(payload.get("meterStart")),
        received_at=received_at,
    )
    return str(transaction_id), record


def record_from_meter_values_16(
    payload: Json, received_at: datetime.datetime | None = None
) -> tuple[str, TransactionEventRecord] | None:
    """(transaction id, record) of a 1.6 MeterValues with a ``transactionId``, else ``None``."""
    transaction_id = as_int(payload.get("transactionId"))
    if transaction_id is None:
        return None
    samples = samples_from_meter_values(as_list(payload.get("meterValue")), Version.V16)
    connector = as_int(payload.get("connectorId"))
    timestamp = max((s.timestamp for s in samples), default=None)
    record = TransactionEventRecord(
        kind=TransactionEventKind.UPDATED,
        timestamp=timestamp or received_at or _epoch(),
        evse_id=connector or None,
        connector_id=1 if connector else None,
        samples=samples,
        received_at=received_at,
    )
    return str(transaction_id), record


def record_from_stop_transaction(
    payload: Json, received_at: datetime.datetime | None = None
) -> tuple[str, TransactionEventRecord]:
    """(transaction id, record) of a 1.6 StopTransaction (with its ``transactionData``)."""
    record = TransactionEventRecord(
        kind=TransactionEventKind.ENDED,
        timestamp=as_time(payload.get("timestamp")) or received_at or _epoch(),
        id_token=as_str(payload.get("idTag")),
        stopped_reason=as_str(payload.get("reason")) or "Local",
        meter_wh=as_float(payload.get("meterStop")),
        samples=samples_from_meter_values(as_list(payload.get("transactionData")), Version.V16),
        received_at=received_at,
    )
    return str(as_int(payload.get("transactionId"))), record


def _epoch() -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


# -- 1.6 transaction ids -----------------------------------------------------------------------


class TransactionIdAllocator(Protocol):
    """Assigns the integer ``transactionId`` of 1.6 StartTransaction answers.

    Inject your own (e.g. backed by a database sequence) through the CSMS; it must never hand
    out the same id twice to one station while that transaction may still be referenced.
    """

    def allocate(self, identity: str) -> int:
        """A fresh transaction id for a transaction of ``identity``."""
        ...


class TransactionIdCounter:
    """The default allocator: one counter for the whole CSMS, from ``next_id`` (default 1).

    Ids stay within the signed 32-bit range many 1.6 stations assume, wrapping to 1.
    Save :attr:`next_id` to continue after a restart.
    """

    _LIMIT: Final = 2**31 - 1

    def __init__(self, next_id: int = 1) -> None:
        if not 1 <= next_id <= self._LIMIT:
            raise ValueError(f"next_id must be in 1..{self._LIMIT}, not {next_id}")
        self._next = next_id

    @property
    def next_id(self) -> int:
        """The id the next :meth:`allocate` returns."""
        return self._next

    def allocate(self, identity: str) -> int:
        """The next id (``identity`` is not used: ids are unique CSMS-wide)."""
        value = self._next
        self._next = 1 if value >= self._LIMIT else value + 1
        return value


@attrs.frozen(kw_only=True)
class RemoteStart:
    """A remote start the station accepted, waiting for (or matched to) its transaction.

    2.x: ``remote_start_id`` is the request's ``remoteStartId``.  1.6 has none on the wire; the
    CSMS numbers them and matches the next StartTransaction with the same idTag (case-
    insensitive) on the same connector (any connector when none was named).
    """

    remote_start_id: int
    id_token: str
    requested_at: datetime.datetime
    evse_id: int | None = None
    #: the running transaction the answer named (2.x), or the one matched
    transaction_id: str | None = None
