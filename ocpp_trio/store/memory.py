"""An in-memory :class:`~ocpp_trio.store.base.Store`, for tests and for running without a disk.

It keeps the records themselves (they are immutable), so it does no serialization; with
``serialize=True`` every record makes a round trip through the JSON codec instead, as the
SQLite store's do.  Its state lives as long as the object: share one between two CSMS objects to
play a restart or a station moving to another process within one test.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
import trio

from ocpp_trio.domain.credentials import CredentialStore, InMemoryCredentialStore
from ocpp_trio.domain.ledger import LedgerEntry, LedgerPage, LedgerQuery, page_of
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.errors import StoreError
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

__all__ = ["MemoryStore"]

T = TypeVar("T")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define
class _Row:
    identity: str
    epoch: int = 0
    version: Version | None = None
    registration: Registration | None = None
    snapshot: StationSnapshot | None = None
    through: int = 0
    journal: dict[int, JournalEntry] = attrs.Factory(dict)
    local_list_version: int | None = None
    updated_at: datetime.datetime | None = None


class MemoryStore:
    """A store in dicts (see the module docstring).

    Args:
        serialize: round-trip every record through the JSON codec.
    """

    def __init__(self, *, serialize: bool = False) -> None:
        self._serialize = serialize
        self._rows: dict[str, _Row] = {}
        self._counters: dict[str, int] = {}
        self._ledger: dict[tuple[str, str], LedgerEntry] = {}
        self._credentials = InMemoryCredentialStore()
        self._closed = False
        #: transactions committed (for tests)
        self.commits = 0

    @property
    def credentials(self) -> CredentialStore:
        """The station credentials (an :class:`InMemoryCredentialStore`)."""
        return self._credentials

    def close(self) -> None:
        """Refuse every further call (as a closed SQLite store would)."""
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _copy(self, value: T, as_type: type[Any]) -> T:
        if not self._serialize:
            return value
        copied: T = decode(encode(value, as_type), as_type)
        return copied

    async def claim(self, identity: str, version: Version) -> StoredStation:
        """Bump the epoch of ``identity`` and return its record (see the protocol)."""
        self._check()
        row = self._rows.setdefault(identity, _Row(identity))
        row.epoch += 1
        row.version = Version(version)
        row.updated_at = _utc_now()
        await trio.lowlevel.checkpoint()
        return self._record(row)

    async def load(self, identity: str) -> StoredStation | None:
        """The record of ``identity``, or ``None``."""
        self._check()
        await trio.lowlevel.checkpoint()
        row = self._rows.get(identity)
        return None if row is None else self._record(row)

    def _record(self, row: _Row) -> StoredStation:
        return StoredStation(
            identity=row.identity,
            epoch=row.epoch,
            version=row.version,
            registration=row.registration,
            snapshot=row.snapshot,
            through=row.through,
            journal=tuple(row.journal[k] for k in sorted(row.journal)),
            local_list_version=row.local_list_version,
            updated_at=row.updated_at,
        )

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        """Apply ``ops`` (all before the first checkpoint: atomic for other tasks)."""
        self._check()
        now = _utc_now()
        stale: set[str] = set()
        for op in ops:
            if isinstance(op, PutCounter):
                self._counters[op.name] = max(self._counters.get(op.name, op.value), op.value)
                continue
            row = self._rows.get(op.identity)
            if op.epoch is None:
                row = self._rows.setdefault(op.identity, _Row(op.identity))
            elif row is None or row.epoch != op.epoch:
                stale.add(op.identity)
                continue
            if isinstance(op, PutLedgerEntry):
                entry = self._copy(op.entry, LedgerEntry)
                self._ledger[op.identity, entry.transaction_id] = entry
                continue
            row.updated_at = now
            if isinstance(op, Append):
                row.journal[op.entry.seq] = self._copy(op.entry, JournalEntry)
            elif isinstance(op, PutRegistration):
                row.registration = (
                    None if op.registration is None else self._copy(op.registration, Registration)
                )
            elif isinstance(op, PutSnapshot):
                row.snapshot = self._copy(op.snapshot, StationSnapshot)
                row.through = op.through
                row.journal = {k: v for k, v in row.journal.items() if k > op.through}
            elif isinstance(op, PutLocalListVersion):
                row.local_list_version = op.version
        self.commits += 1
        await trio.lowlevel.checkpoint()
        return frozenset(stale)

    async def counter(self, name: str) -> int | None:
        """A counter's value, or ``None``."""
        self._check()
        await trio.lowlevel.checkpoint()
        return self._counters.get(name)

    async def identities(self) -> list[str]:
        """The identities with a record."""
        self._check()
        await trio.lowlevel.checkpoint()
        return sorted(self._rows)

    async def forget(self, identity: str) -> None:
        """Delete the record of ``identity``."""
        self._check()
        self._rows.pop(identity, None)
        await trio.lowlevel.checkpoint()

    async def forget_unbooted(self, older_than: datetime.datetime) -> list[str]:
        """Forget the stations without a registration last written before ``older_than``."""
        self._check()
        gone = [
            identity
            for identity, row in self._rows.items()
            if row.registration is None
            and row.updated_at is not None
            and row.updated_at < older_than
        ]
        for identity in gone:
            del self._rows[identity]
        await trio.lowlevel.checkpoint()
        return gone

    async def ledger(self, query: LedgerQuery) -> LedgerPage:
        """One page of the ledger (see the protocol)."""
        self._check()
        await trio.lowlevel.checkpoint()
        found = sorted((e for e in self._ledger.values() if query.matches(e)), key=_key)
        return page_of(found[: query.limit + 1], query.limit)

    async def prune_ledger(self, before: datetime.datetime) -> int:
        """Delete the ledger entries written before ``before`` (see the protocol)."""
        self._check()
        old = [k for k, e in self._ledger.items() if e.recorded_at < before]
        for k in old:
            del self._ledger[k]
        await trio.lowlevel.checkpoint()
        return len(old)


def _key(entry: LedgerEntry) -> tuple[str, str, str]:
    return entry.key
