"""What the SQL stores (SQLite, PostgreSQL) share: a station's rows read back as a
:class:`~ocpp_trio.store.base.StoredStation`, the text each write stores, and the order in which
one commit's writes are applied.

Each store keeps its own SQL (placeholders, bulk statements, how the rows of a commit are
locked); :func:`apply_ops` decides, for both, which writes are fenced out by their epoch, which
go to the journal, the ledger or the station's row, and in what order, and calls the store's
:class:`OpWriter` for each.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from ocpp_trio.domain.ledger import LedgerEntry, utc_text
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.errors import UnreadableRecordError
from ocpp_trio.protocol.version import Version
from ocpp_trio.store.base import (
    Append,
    JournalEntry,
    PutCounter,
    PutLedgerEntry,
    PutLocalListVersion,
    PutRegistration,
    PutSnapshot,
    Registration,
    StoredStation,
    StoreOp,
    decode,
    encode,
)

__all__ = [
    "LedgerRow",
    "OpWriter",
    "RawStation",
    "apply_ops",
    "decode_station",
    "encode_op",
    "fenced_identities",
]

#: a ledger row: identity, transaction id, ended at, id token, recorded at, entry (JSON)
LedgerRow = tuple[str, str, str, str | None, str, str]


@attrs.frozen(kw_only=True)
class RawStation:
    """A station's row and its journal rows after the snapshot, as the database holds them."""

    identity: str
    epoch: int
    version: str | None
    registration: str | None
    snapshot: str | None
    through: int
    local_list_version: int | None
    updated_at: str | None
    journal: list[tuple[int, str]]


def _decode_entry(seq: int, text: str) -> JournalEntry:
    entry: JournalEntry = decode(text, JournalEntry)
    if entry.seq != seq:
        raise ValueError(f"journal row {seq} holds entry {entry.seq}")
    return entry


def decode_station(raw: RawStation) -> StoredStation:
    """The station ``raw`` holds.

    Raises:
        UnreadableRecordError: a row cannot be read back.
    """
    try:
        registration: Registration | None = (
            None if raw.registration is None else decode(raw.registration, Registration)
        )
        snapshot: StationSnapshot | None = (
            None if raw.snapshot is None else decode(raw.snapshot, StationSnapshot)
        )
        journal = [_decode_entry(seq, text) for seq, text in raw.journal]
        version = None if raw.version is None else Version(raw.version)
        updated = (
            None if raw.updated_at is None else datetime.datetime.fromisoformat(raw.updated_at)
        )
    except ValueError as exc:
        last_seq = max([raw.through, *(seq for seq, _ in raw.journal)])
        raise UnreadableRecordError(raw.identity, raw.epoch, last_seq, str(exc)) from exc
    return StoredStation(
        identity=raw.identity,
        epoch=raw.epoch,
        version=version,
        registration=registration,
        snapshot=snapshot,
        through=raw.through,
        journal=tuple(journal),
        local_list_version=raw.local_list_version,
        updated_at=updated,
    )


def encode_op(op: StoreOp) -> str | None:
    """The text ``op`` stores (``None``: it stores none, or clears it)."""
    if isinstance(op, Append):
        return encode(op.entry, JournalEntry)
    if isinstance(op, PutRegistration):
        return None if op.registration is None else encode(op.registration, Registration)
    if isinstance(op, PutSnapshot):
        return encode(op.snapshot, StationSnapshot)
    if isinstance(op, PutLedgerEntry):
        return encode(op.entry, LedgerEntry)
    return None


def fenced_identities(ops: Iterable[StoreOp]) -> list[str]:
    """The stations whose writes in ``ops`` carry an epoch to check, in identity order (the
    order their rows are locked in, so two commits never wait for each other in a cycle)."""
    return sorted(
        {op.identity for op in ops if not isinstance(op, PutCounter) and op.epoch is not None}
    )


class OpWriter(Protocol):
    """One store's SQL for the writes of one commit, called by :func:`apply_ops`."""

    def put_counter(self, name: str, value: int) -> None:
        """Raise counter ``name`` to ``value`` (never lower it)."""

    def add_station(self, identity: str) -> None:
        """Make the row of ``identity`` if it has none (an administrative write)."""

    def append(self, rows: Sequence[tuple[str, int, str]]) -> None:
        """Insert journal rows: identity, seq, entry."""

    def put_registration(self, identity: str, text: str | None) -> None: ...

    def put_snapshot(self, identity: str, text: str, through: int) -> None:
        """Store the snapshot and drop the journal rows it covers (``seq <= through``)."""

    def put_local_list_version(self, identity: str, version: int | None) -> None: ...

    def put_ledger(self, rows: Sequence[LedgerRow]) -> None:
        """Insert or replace ledger rows (their keys are unique)."""

    def touch(self, identities: Sequence[str]) -> None:
        """Set ``updated_at`` of these stations to now."""


def apply_ops(
    ops: Sequence[StoreOp],
    encoded: Sequence[str | None],
    epochs: Mapping[str, int],
    writer: OpWriter,
) -> frozenset[str]:
    """Apply ``ops`` (with their :func:`encode_op` texts) through ``writer``; returns the
    stations whose writes were skipped because ``epochs`` (their current epochs, read by the
    store) holds another epoch than the write's.

    Journal rows are written in bulk, but before any snapshot of the same commit (a snapshot
    drops the entries before it); ledger rows in bulk at the end, the last of each
    (station, transaction) winning; journal appends leave ``updated_at`` alone.
    """
    stale: set[str] = set()
    appends: list[tuple[str, int, str]] = []
    ledger: dict[tuple[str, str], LedgerRow] = {}
    touched: set[str] = set()

    def flush_appends() -> None:
        if appends:
            writer.append(appends)
            appends.clear()

    for op, text in zip(ops, encoded, strict=True):
        if isinstance(op, PutCounter):
            writer.put_counter(op.name, op.value)
            continue
        if op.epoch is None:
            writer.add_station(op.identity)
        elif epochs.get(op.identity) != op.epoch:
            stale.add(op.identity)
            continue
        if isinstance(op, Append):
            assert text is not None
            appends.append((op.identity, op.entry.seq, text))
            continue
        if isinstance(op, PutLedgerEntry):  # its own table: nothing to order
            assert text is not None
            entry = op.entry
            ledger[(op.identity, entry.transaction_id)] = (
                op.identity,
                entry.transaction_id,
                utc_text(entry.ended_at),
                entry.id_token,
                utc_text(entry.recorded_at),
                text,
            )
            continue
        touched.add(op.identity)
        flush_appends()  # keep the order: a snapshot drops the entries before it
        if isinstance(op, PutRegistration):
            writer.put_registration(op.identity, text)
        elif isinstance(op, PutSnapshot):
            assert text is not None
            writer.put_snapshot(op.identity, text, op.through)
        elif isinstance(op, PutLocalListVersion):
            writer.put_local_list_version(op.identity, op.version)
    flush_appends()
    if ledger:
        writer.put_ledger(list(ledger.values()))
    if touched:
        writer.touch(sorted(touched))
    return frozenset(stale)
