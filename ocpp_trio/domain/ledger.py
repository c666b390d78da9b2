"""The transaction ledger: one durable row per finished transaction (sans-IO, no trio).

A :class:`LedgerEntry` is what the ledger keeps of a transaction once it has ended: who
(station, EVSE and connector, idToken), when (start, end), why it ended, the meter readings and
energy, and every meter sample.  It is made from a
:class:`~ocpp_trio.domain.transactions.Transaction` with :func:`ledger_entry`; the store keeps
one entry per ``(identity, transaction_id)`` and replaces it when the transaction changes after
its end (a late event, or the station's own account replacing the end the CSMS gave it on a
reboot: :attr:`LedgerEntry.provisional`).

Queries (:class:`LedgerQuery`) select by station, idToken and a range of end times, and come
back in pages (:class:`LedgerPage`) ordered by end time, then station, then transaction id.  A
page's :attr:`~LedgerPage.cursor` is the key of its last entry as opaque text; the next page is
asked for with ``after=cursor``.  Paging by key (not by offset) keeps the pages consistent while
new transactions end.

Times: every time is timezone-aware; :func:`utc_text` gives the fixed-width UTC text the stores
index and compare (it sorts as the times do).
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Final

import attrs

from ocpp_trio.domain.reconcile import closed_by_reboot
from ocpp_trio.domain.transactions import Sample, Transaction
from ocpp_trio.protocol.version import Version

__all__ = [
    "MAX_PAGE",
    "LedgerEntry",
    "LedgerKey",
    "LedgerPage",
    "LedgerQuery",
    "decode_cursor",
    "encode_cursor",
    "ledger_entry",
    "page_of",
    "utc_text",
]

#: the most entries one page may hold
MAX_PAGE: Final = 1000

#: the order of the ledger: (end time as :func:`utc_text`, identity, transaction id)
LedgerKey = tuple[str, str, str]


def utc_text(value: datetime.datetime) -> str:
    """``value`` as fixed-width UTC text (``2024-05-01T12:00:00.000000+00:00``), which sorts
    as the times do.

    Raises:
        ValueError: ``value`` has no timezone.
    """
    if value.tzinfo is None:
        raise ValueError(f"a ledger time needs a timezone: {value!r}")
    return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """One finished transaction, as the ledger keeps it.

    Attributes:
        identity: the station.
        transaction_id: the station's id (2.x), or the id the CSMS assigned, as text (1.6).
        version: the OCPP version of its messages.
        evse_id: the EVSE (1.6: the connector id).
        connector_id: the connector within the EVSE, when told.
        id_token: the idToken (1.6 idTag) that started it, else the first one seen.
        stop_id_token: the idToken that ended it, when told.
        started_at: the Started event's time (1.6: StartTransaction's), else the earliest
            event's.
        ended_at: the Ended event's time (1.6: StopTransaction's).
        stopped_reason: why it ended (2.x ``stoppedReason``, 1.6 ``reason``).
        meter_start_wh: the energy register at the start (Wh).
        meter_stop_wh: the energy register at the end (Wh).
        energy_wh: ``meter_stop_wh - meter_start_wh``.
        remote_start_id: the remote start that led to it, if any.
        provisional: the CSMS ended it because the station rebooted; the station's own
            account, if it ever comes, replaces this entry.
        missing_seq_nos: seqNos (2.x) never received (the lowest 1,000 of them).
        events: the distinct events received.
        samples: every meter sample of every event, in event order, in base units.
        recorded_at: when this entry was written (the CSMS's clock, UTC).
    """

    identity: str
    transaction_id: str
    version: Version
    evse_id: int | None = None
    connector_id: int | None = None
    id_token: str | None = None
    stop_id_token: str | None = None
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime
    stopped_reason: str | None = None
    meter_start_wh: float | None = None
    meter_stop_wh: float | None = None
    energy_wh: float | None = None
    remote_start_id: int | None = None
    provisional: bool = False
    missing_seq_nos: tuple[int, ...] = ()
    events: int = 0
    samples: tuple[Sample, ...] = ()
    recorded_at: datetime.datetime

    @property
    def key(self) -> LedgerKey:
        """Its place in the ledger's order."""
        return (utc_text(self.ended_at), self.identity, self.transaction_id)


def ledger_entry(transaction: Transaction, recorded_at: datetime.datetime) -> LedgerEntry:
    """The ledger entry of ``transaction``, which has ended.

    Raises:
        ValueError: the transaction has not ended.
    """
    ended_at = transaction.ended_at
    if ended_at is None:
        raise ValueError(f"transaction {transaction.transaction_id} has not ended")
    return LedgerEntry(
        identity=transaction.identity,
        transaction_id=transaction.transaction_id,
        version=transaction.version,
        evse_id=transaction.evse_id,
        connector_id=transaction.connector_id,
        id_token=transaction.id_token,
        stop_id_token=transaction.stop_id_token,
        started_at=transaction.started_at,
        ended_at=ended_at,
        stopped_reason=transaction.stopped_reason,
        meter_start_wh=transaction.meter_start_wh,
        meter_stop_wh=transaction.meter_stop_wh,
        energy_wh=transaction.energy_wh,
        remote_start_id=transaction.remote_start_id,
        provisional=closed_by_reboot(transaction),
        missing_seq_nos=transaction.missing_seq_nos,
        events=len(transaction.events),
        samples=transaction.samples,
        recorded_at=recorded_at,
    )


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"a ledger query time needs a timezone: {value!r}")
    return value


def _limit(_instance: object, _attribute: object, value: int) -> None:
    if not 1 <= value <= MAX_PAGE:
        raise ValueError(f"limit must be in 1..{MAX_PAGE}, not {value}")


@attrs.frozen(kw_only=True)
class LedgerQuery:
    """Which ledger entries to read, and how many at once.

    Attributes:
        station: only this station's.
        id_token: only those started with this idToken (exact match).
        since: only those that ended at or after this time.
        until: only those that ended before this time.
        after: the :attr:`LedgerPage.cursor` of the previous page.
        limit: the most entries in the page (1 to :data:`MAX_PAGE`).

    Raises:
        ValueError: a naive time, a limit out of range, or a cursor that is not one.
    """

    station: str | None = None
    id_token: str | None = None
    since: datetime.datetime | None = attrs.field(default=None, converter=_aware)
    until: datetime.datetime | None = attrs.field(default=None, converter=_aware)
    after: str | None = attrs.field(default=None)
    limit: int = attrs.field(default=100, validator=_limit)

    @after.validator
    def _check_after(self, _attribute: object, value: str | None) -> None:
        if value is not None:
            decode_cursor(value)

    @property
    def after_key(self) -> LedgerKey | None:
        """The key the page starts after (decoded :attr:`after`)."""
        return None if self.after is None else decode_cursor(self.after)

    @property
    def since_text(self) -> str | None:
        """:attr:`since` as :func:`utc_text`."""
        return None if self.since is None else utc_text(self.since)

    @property
    def until_text(self) -> str | None:
        """:attr:`until` as :func:`utc_text`."""
        return None if self.until is None else utc_text(self.until)

    def matches(self, entry: LedgerEntry) -> bool:
        """Whether ``entry`` is selected (the filters and the cursor; not the limit)."""
        key = entry.key
        since, until, after = self.since_text, self.until_text, self.after_key
        return (
            (self.station is None or entry.identity == self.station)
            and (self.id_token is None or entry.id_token == self.id_token)
            and (since is None or key[0] >= since)
            and (until is None or key[0] < until)
            and (after is None or key > after)
        )


@attrs.frozen(kw_only=True)
class LedgerPage:
    """One page of ledger entries, in ledger order.

    Attributes:
        entries: the entries.
        cursor: pass it as :attr:`LedgerQuery.after` for the next page; ``None`` when this
            page is the last.
    """

    entries: tuple[LedgerEntry, ...]
    cursor: str | None = None


def page_of(entries: list[LedgerEntry], limit: int) -> LedgerPage:
    """The page made of ``entries`` (sorted, selected, up to ``limit + 1`` of them: one more
    than the page holds tells that another page follows)."""
    more = len(entries) > limit
    kept = tuple(entries[:limit])
    return LedgerPage(entries=kept, cursor=encode_cursor(kept[-1].key) if more else None)


def encode_cursor(key: LedgerKey) -> str:
    """The opaque cursor text of a ledger key."""
    data = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> LedgerKey:
    """The ledger key of a cursor made by :func:`encode_cursor`.

    Raises:
        ValueError: ``text`` is not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{text!r} is not a ledger cursor") from None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{text!r} is not a ledger cursor")
    return (value[0], value[1], value[2])
