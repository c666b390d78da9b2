"""The transaction ledger of a CSMS: every finished transaction, kept in its store.

A CSMS with a store writes one :class:`~ocpp_trio.domain.ledger.LedgerEntry` per finished
transaction (all versions) in the same commit as the journal entry of the exchange that ended
it, so an entry is on disk before the station gets the answer to its last transaction message
(write-ahead, see docs/ledger.md).  An entry is replaced when the transaction changes after its
end: a late event, or the station's own account replacing the end the CSMS gave a transaction
when the station rebooted (:attr:`~ocpp_trio.domain.ledger.LedgerEntry.provisional`).

:class:`Ledger` reads it (``csms.ledger``, or ``Ledger(store)`` on a store of one's own) and
prunes it: with :attr:`LedgerConfig.retention`, :meth:`CSMS.run
<ocpp_trio.csms.core.CSMS.run>` runs :meth:`Ledger.keep_pruned` in its nursery.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator
from typing import Final

import attrs
import trio

from ocpp_trio.domain.ledger import MAX_PAGE, LedgerEntry, LedgerPage, LedgerQuery
from ocpp_trio.errors import StoreError
from ocpp_trio.store.base import Store

__all__ = ["FIELDS", "Ledger", "LedgerConfig", "entry_fields", "parse_time", "utc_text"]

log = logging.getLogger("ocpp_trio")


def _positive_duration(
    _instance: object, _attribute: object, value: datetime.timedelta | None
) -> None:
    if value is not None and value <= datetime.timedelta(0):
        raise ValueError(f"the retention must be positive, not {value}")


@attrs.frozen(kw_only=True)
class LedgerConfig:
    """How long the ledger keeps its entries.

    Attributes:
        retention: delete an entry this long after it was last written (``None``: keep
            every entry).
        prune_every: seconds between two prunings (the first runs when the CSMS starts).
    """

    retention: datetime.timedelta | None = attrs.field(default=None, validator=_positive_duration)
    prune_every: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))


class Ledger:
    """The transaction ledger in ``store`` (see the module docstring).

    Args:
        store: where the entries are.
        config: the retention.
    """

    def __init__(self, store: Store, config: LedgerConfig | None = None) -> None:
        self.store = store
        self.config = config or LedgerConfig()

    async def query(
        self,
        *,
        station: str | None = None,
        id_token: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> LedgerPage:
        """One page of finished transactions, ordered by end time (then station, then id).

        Args:
            station: only this station's.
            id_token: only those started with this idToken.
            since: only those that ended at or after this (timezone-aware) time.
            until: only those that ended before this time.
            after: the ``cursor`` of the previous page.
            limit: the most entries in the page (at most 1000).

        Waits for: the store.  Cancellation: safe.

        Raises:
            ValueError: a naive time, a bad cursor, or a limit out of range.
            StoreError: the store failed.
        """
        query = LedgerQuery(
            station=station, id_token=id_token, since=since, until=until, after=after, limit=limit
        )
        return await self.store.ledger(query)

    async def iterate(
        self,
        *,
        station: str | None = None,
        id_token: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        page_size: int = MAX_PAGE,
    ) -> AsyncIterator[LedgerEntry]:
        """Every finished transaction selected, in ledger order, read a page at a time.

        Use it in ``async for`` (inside ``contextlib.aclosing`` if the loop may stop early).

        Waits for: the store, once per page.  Cancellation: safe.

        Raises:
            ValueError: a naive time, or a page size out of range.
            StoreError: the store failed.
        """
        after: str | None = None
        while True:
            page = await self.query(
                station=station,
                id_token=id_token,
                since=since,
                until=until,
                after=after,
                limit=page_size,
            )
            for entry in page.entries:
                yield entry
            if page.cursor is None:
                return
            after = page.cursor

    async def prune(self, now: datetime.datetime | None = None) -> int:
        """Delete the entries older than the retention (nothing without one); returns how
        many were deleted.

        Waits for: the store.  Cancellation: safe (the deletion is atomic).

        Raises:
            StoreError: the store failed.
        """
        retention = self.config.retention
        if retention is None:
            return 0
        now = now or datetime.datetime.now(datetime.UTC)
        deleted = await self.store.prune_ledger(now - retention)
        if deleted:
            log.info("ledger: %d transaction(s) older than %s deleted", deleted, retention)
        return deleted

    async def keep_pruned(self) -> None:
        """Prune now and every ``prune_every`` seconds, until cancelled (a failure is logged
        and tried again next time).

        Waits for: cancellation.  Cancellation: stops.
        """
        while True:
            try:
                await self.prune()
            except StoreError as exc:
                log.error("ledger: pruning failed: %s", exc)  # noqa: TRY400
            await trio.sleep(self.config.prune_every)


# -- shared by the admin API and the CSV export --------------------------------------------------

#: the scalar fields of an entry, in the order the CSV export writes them
FIELDS: Final = (
    "station",
    "transaction_id",
    "version",
    "evse_id",
    "connector_id",
    "id_token",
    "stop_id_token",
    "started_at",
    "ended_at",
    "stopped_reason",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "remote_start_id",
    "provisional",
    "missing_seq_nos",
    "events",
    "samples",
    "recorded_at",
)


def utc_text(value: datetime.datetime | None) -> str | None:
    """A time as UTC RFC 3339 text (``...Z``), ``None`` as ``None``."""
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def entry_fields(entry: LedgerEntry) -> dict[str, str | int | float | bool | list[int] | None]:
    """The fields of :data:`FIELDS` for ``entry``, JSON-ready (times as UTC RFC 3339 text;
    ``samples`` is how many there are)."""
    return {
        "station": entry.identity,
        "transaction_id": entry.transaction_id,
        "version": entry.version.value,
        "evse_id": entry.evse_id,
        "connector_id": entry.connector_id,
        "id_token": entry.id_token,
        "stop_id_token": entry.stop_id_token,
        "started_at": utc_text(entry.started_at),
        "ended_at": utc_text(entry.ended_at),
        "stopped_reason": entry.stopped_reason,
        "meter_start_wh": entry.meter_start_wh,
        "meter_stop_wh": entry.meter_stop_wh,
        "energy_wh": entry.energy_wh,
        "remote_start_id": entry.remote_start_id,
        "provisional": entry.provisional,
        "missing_seq_nos": list(entry.missing_seq_nos),
        "events": entry.events,
        "samples": len(entry.samples),
        "recorded_at": utc_text(entry.recorded_at),
    }


def parse_time(text: str) -> datetime.datetime:
    """A time given as ISO 8601 text: a date (``2024-05-01``: its midnight) or a date and
    time, with an offset or ``Z``; without one it is taken as UTC.

    Raises:
        ValueError: ``text`` is not such a time.
    """
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (ISO 8601, e.g. 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
