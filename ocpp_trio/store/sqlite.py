"""The embedded default :class:`~ocpp_trio.store.base.Store`: one SQLite file, in WAL mode.

Threads: the standard-library ``sqlite3`` blocks, so every database call runs off the trio
thread with :func:`trio.to_thread.run_sync`, on the store's one connection, one call at a time
(a :class:`trio.CapacityLimiter` of 1).  A call is never abandoned: once its thread started, a
cancelled caller waits for it, so a commit is either done or not done, never half (and its
transaction is rolled back on any error).  The connection belongs to :func:`open_sqlite_store`,
which closes it on exit.  Batching happens above (:class:`~ocpp_trio.store.writer.StoreWriter`
gathers the writes of every station into one :meth:`SQLiteStore.commit`), so one worker is
enough: a commit's cost is paid once per batch.

Durability: ``synchronous="FULL"`` (the default) syncs the WAL on every commit, so an
acknowledged message survives a power cut; ``"NORMAL"`` syncs only at checkpoints (a process
crash still loses nothing, a power cut may lose the last commits).

Several processes may share the file (WAL allows one writer at a time; ``busy_timeout``
seconds of waiting for the lock).  Station writes are fenced by the claim epoch (see
:mod:`ocpp_trio.store.base`).

Schema: the ``schema_version`` table holds the version; :data:`MIGRATIONS` are applied in order
when the store opens (each in its own transaction).  Version 1 had the stations, their journal
and the counters; version 2 added the local list version and the credentials table; version 3
the transaction ledger (one row per finished transaction, its entry as JSON, with the end time,
idToken and write time as indexed UTC text).
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeVar

import trio

from ocpp_trio.domain.credentials import StationCredentials
from ocpp_trio.domain.ledger import LedgerEntry, LedgerPage, LedgerQuery, page_of, utc_text
from ocpp_trio.errors import StoreError
from ocpp_trio.protocol.version import Version
from ocpp_trio.store.base import (
    StoredStation,
    StoreOp,
    decode,
    encode,
    structure_credentials,
)
from ocpp_trio.store.sql import (
    LedgerRow,
    RawStation,
    apply_ops,
    decode_station,
    encode_op,
    fenced_identities,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteCredentialStore",
    "SQLiteStore",
    "migrate",
    "open_sqlite_store",
    "schema_version",
]

T = TypeVar("T")


# -- schema ----------------------------------------------------------------------------------


def _v1(db: sqlite3.Connection) -> None:
    """The first layout: stations, their journal, counters."""
    db.execute(
        "CREATE TABLE stations ("
        " identity TEXT PRIMARY KEY,"
        " epoch INTEGER NOT NULL DEFAULT 0,"
        " version TEXT,"
        " registration TEXT,"
        " snapshot TEXT,"
        " through INTEGER NOT NULL DEFAULT 0,"
        " updated_at TEXT)"
    )
    db.execute(
        "CREATE TABLE journal ("
        " identity TEXT NOT NULL,"
        " seq INTEGER NOT NULL,"
        " entry TEXT NOT NULL,"
        " PRIMARY KEY (identity, seq))"
    )
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


def _v2(db: sqlite3.Connection) -> None:
    """The local authorization list version, and station credentials."""
    db.execute("ALTER TABLE stations ADD COLUMN local_list_version INTEGER")
    db.execute(
        "CREATE TABLE credentials ("
        " identity TEXT PRIMARY KEY,"
        " record TEXT NOT NULL,"
        " updated_at TEXT)"
    )


def _v3(db: sqlite3.Connection) -> None:
    """The transaction ledger."""
    db.execute(
        "CREATE TABLE ledger ("
        " identity TEXT NOT NULL,"
        " transaction_id TEXT NOT NULL,"
        " ended_at TEXT NOT NULL,"  # utc_text: sorts as the times do
        " id_token TEXT,"
        " recorded_at TEXT NOT NULL,"
        " entry TEXT NOT NULL,"
        " PRIMARY KEY (identity, transaction_id))"
    )
    db.execute("CREATE INDEX ledger_by_end ON ledger (ended_at, identity, transaction_id)")
    db.execute("CREATE INDEX ledger_by_station ON ledger (identity, ended_at, transaction_id)")
    db.execute("CREATE INDEX ledger_by_recorded ON ledger (recorded_at)")


#: the migrations, in order: ``MIGRATIONS[n]`` brings a database from version n to n + 1
MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_v1, _v2, _v3)
#: the schema version this code writes
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version of ``db`` (0: empty)."""
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations that bring ``db`` to ``target``; returns the version before.

    ``db`` must be in autocommit mode (``isolation_level=None``); each migration runs in its
    own transaction with the version update, so a failure leaves the last complete version.

    Raises:
        StoreError: the database is newer than this code knows.
    """
    before = schema_version(db)
    if before > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {before}; this ocpp-trio knows up to "
            f"{SCHEMA_VERSION} (a newer release wrote it)"
        )
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    for version in range(before + 1, target + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return before


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


# -- the store -------------------------------------------------------------------------------


class SQLiteStore:
    """A store in one SQLite file (see the module docstring); open it with
    :func:`open_sqlite_store`."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db: sqlite3.Connection | None = db
        self.path = path
        self._limiter = trio.CapacityLimiter(1)
        self._credentials = SQLiteCredentialStore(self)
        #: transactions committed (for tests)
        self.commits = 0

    @property
    def credentials(self) -> SQLiteCredentialStore:
        """The station credentials, in this database."""
        return self._credentials

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise StoreError("the store is closed")
        try:
            return await trio.to_thread.run_sync(fn, db, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    async def aclose(self) -> None:
        """Close the connection (idempotent).

        Waits for: the call in progress, then the close.  Cancellation: shielded.
        """
        db, self._db = self._db, None
        if db is None:
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(db.close, limiter=self._limiter)

    # -- reading ---------------------------------------------------------------------------

    async def claim(self, identity: str, version: Version) -> StoredStation:
        """Bump the epoch of ``identity`` and return its record (see the protocol)."""
        version = Version(version)

        def claim(db: sqlite3.Connection) -> StoredStation:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO stations (identity, epoch, version, updated_at)"
                    " VALUES (?, 1, ?, ?) ON CONFLICT (identity) DO UPDATE SET"
                    " epoch = epoch + 1, version = excluded.version,"
                    " updated_at = excluded.updated_at",
                    (identity, version.value, _now_text()),
                )
                raw = _read(db, identity)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            assert raw is not None
            return decode_station(raw)

        return await self._run(claim)

    async def load(self, identity: str) -> StoredStation | None:
        """The record of ``identity``, or ``None``."""

        def load(db: sqlite3.Connection) -> StoredStation | None:
            db.execute("BEGIN")
            try:
                raw = _read(db, identity)
            finally:
                db.execute("COMMIT")
            return None if raw is None else decode_station(raw)

        return await self._run(load)

    async def counter(self, name: str) -> int | None:
        """A counter's value, or ``None``."""

        def counter(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            return None if row is None else int(row[0])

        return await self._run(counter)

    async def identities(self) -> list[str]:
        """The identities with a record."""

        def identities(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT identity FROM stations ORDER BY identity").fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(identities)

    # -- writing ---------------------------------------------------------------------------

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        """Apply ``ops`` in one transaction (see the protocol)."""
        ops = list(ops)

        def commit(db: sqlite3.Connection) -> frozenset[str]:
            # encode before taking the write lock, so other processes wait less
            encoded = [encode_op(op) for op in ops]
            now = _now_text()
            db.execute("BEGIN IMMEDIATE")
            try:
                stale = _apply(db, ops, encoded, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return stale

        stale = await self._run(commit)
        self.commits += 1
        return stale

    async def forget(self, identity: str) -> None:
        """Delete the record and journal of ``identity``."""

        def forget(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM journal WHERE identity = ?", (identity,))
                db.execute("DELETE FROM stations WHERE identity = ?", (identity,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(forget)

    # -- the ledger --------------------------------------------------------------------------

    async def ledger(self, query: LedgerQuery) -> LedgerPage:
        """One page of the ledger (see the protocol)."""
        filters = (
            ("identity = ?", query.station),
            ("id_token = ?", query.id_token),
            ("ended_at >= ?", query.since_text),
            ("ended_at < ?", query.until_text),
        )
        where = [clause for clause, value in filters if value is not None]
        params: list[object] = [value for _clause, value in filters if value is not None]
        after = query.after_key
        if after is not None:
            where.append("(ended_at, identity, transaction_id) > (?, ?, ?)")
            params.extend(after)
        sql = "SELECT entry FROM ledger"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ended_at, identity, transaction_id LIMIT ?"
        params.append(query.limit + 1)

        def select(db: sqlite3.Connection) -> list[str]:
            return [str(row[0]) for row in db.execute(sql, params).fetchall()]

        texts = await self._run(select)
        try:
            entries = [decode(text, LedgerEntry) for text in texts]
        except ValueError as exc:
            raise StoreError(f"an unreadable ledger entry: {exc}") from exc
        return page_of(entries, query.limit)

    async def prune_ledger(self, before: datetime.datetime) -> int:
        """Delete the ledger entries written before ``before`` (see the protocol)."""
        cutoff = utc_text(before)

        def prune(db: sqlite3.Connection) -> int:
            cursor = db.execute("DELETE FROM ledger WHERE recorded_at < ?", (cutoff,))
            return int(cursor.rowcount)

        return await self._run(prune)

    async def forget_unbooted(self, older_than: datetime.datetime) -> list[str]:
        """Forget the stations without a registration last written before ``older_than``."""
        cutoff = older_than.astimezone(datetime.UTC).isoformat()

        unbooted = (
            "SELECT identity FROM stations WHERE registration IS NULL"
            " AND updated_at IS NOT NULL AND updated_at < ?"
        )

        def forget(db: sqlite3.Connection) -> list[str]:
            db.execute("BEGIN IMMEDIATE")
            try:
                gone = [str(r[0]) for r in db.execute(unbooted, (cutoff,)).fetchall()]
                db.execute(f"DELETE FROM journal WHERE identity IN ({unbooted})", (cutoff,))
                db.execute(f"DELETE FROM stations WHERE identity IN ({unbooted})", (cutoff,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return gone

        return await self._run(forget)

    async def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the store's worker (for tools and tests).

        Waits for: the calls queued before it, then ``fn``.  Cancellation: as every call.
        """
        return await self._run(fn)


def _read(db: sqlite3.Connection, identity: str) -> RawStation | None:
    row = db.execute(
        "SELECT epoch, version, registration, snapshot, through, local_list_version,"
        " updated_at FROM stations WHERE identity = ?",
        (identity,),
    ).fetchone()
    if row is None:
        return None
    journal = db.execute(
        "SELECT seq, entry FROM journal WHERE identity = ? AND seq > ? ORDER BY seq",
        (identity, row[4]),
    ).fetchall()
    epoch, version, registration, snapshot, through, local_list_version, updated_at = row
    return RawStation(
        identity=identity,
        epoch=int(epoch),
        version=version,
        registration=registration,
        snapshot=snapshot,
        through=int(through),
        local_list_version=local_list_version,
        updated_at=updated_at,
        journal=[(int(s), str(e)) for s, e in journal],
    )


class _Writer:
    """SQLite's SQL for the writes of one commit (see :func:`~ocpp_trio.store.sql.apply_ops`)."""

    def __init__(self, db: sqlite3.Connection, now: str) -> None:
        self.db = db
        self.now = now

    def put_counter(self, name: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
            " DO UPDATE SET value = max(value, excluded.value)",
            (name, value),
        )

    def add_station(self, identity: str) -> None:
        self.db.execute(
            "INSERT INTO stations (identity, updated_at) VALUES (?, ?)"
            " ON CONFLICT (identity) DO NOTHING",
            (identity, self.now),
        )

    def append(self, rows: Sequence[tuple[str, int, str]]) -> None:
        self.db.executemany("INSERT INTO journal (identity, seq, entry) VALUES (?, ?, ?)", rows)

    def put_registration(self, identity: str, text: str | None) -> None:
        self.db.execute("UPDATE stations SET registration = ? WHERE identity = ?", (text, identity))

    def put_snapshot(self, identity: str, text: str, through: int) -> None:
        self.db.execute(
            "UPDATE stations SET snapshot = ?, through = ? WHERE identity = ?",
            (text, through, identity),
        )
        self.db.execute("DELETE FROM journal WHERE identity = ? AND seq <= ?", (identity, through))

    def put_local_list_version(self, identity: str, version: int | None) -> None:
        self.db.execute(
            "UPDATE stations SET local_list_version = ? WHERE identity = ?", (version, identity)
        )

    def put_ledger(self, rows: Sequence[LedgerRow]) -> None:
        self.db.executemany(
            "INSERT INTO ledger (identity, transaction_id, ended_at, id_token, recorded_at, entry)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (identity, transaction_id) DO UPDATE SET"
            " ended_at = excluded.ended_at, id_token = excluded.id_token,"
            " recorded_at = excluded.recorded_at, entry = excluded.entry",
            rows,
        )

    def touch(self, identities: Sequence[str]) -> None:
        self.db.executemany(
            "UPDATE stations SET updated_at = ? WHERE identity = ?",
            [(self.now, identity) for identity in identities],
        )


def _apply(
    db: sqlite3.Connection, ops: list[StoreOp], encoded: list[str | None], now: str
) -> frozenset[str]:
    fenced = fenced_identities(ops)
    epochs: dict[str, int] = {}
    for start in range(0, len(fenced), 500):  # within SQLite's bound-parameter limit
        chunk = fenced[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT identity, epoch FROM stations WHERE identity IN ({marks})",
            chunk,
        ).fetchall()
        epochs.update((str(identity), int(epoch)) for identity, epoch in rows)
    return apply_ops(ops, encoded, epochs, _Writer(db, now))


# -- credentials -----------------------------------------------------------------------------


class SQLiteCredentialStore:
    """A :class:`~ocpp_trio.domain.credentials.CredentialStore` in the store's database
    (records as JSON; the password hashes are salted, see ``hash_password``)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def get(self, identity: str) -> StationCredentials | None:
        """The record of ``identity``, or ``None``.

        Raises:
            StoreError: the store failed, or the record is unreadable.
        """

        def get(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT record FROM credentials WHERE identity = ?", (identity,)
            ).fetchone()
            return None if row is None else str(row[0])

        text = await self._store.run_sync(get)
        if text is None:
            return None
        try:
            return structure_credentials(text)
        except ValueError as exc:
            raise StoreError(f"station {identity!r}: unreadable credentials: {exc}") from exc

    async def put(self, credentials: StationCredentials) -> None:
        """Create or replace a record."""
        text = encode(credentials, StationCredentials)

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO credentials (identity, record, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (identity) DO UPDATE SET record = excluded.record,"
                " updated_at = excluded.updated_at",
                (credentials.identity, text, _now_text()),
            )

        await self._store.run_sync(put)

    async def delete(self, identity: str) -> None:
        """Forget ``identity``."""

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM credentials WHERE identity = ?", (identity,))

        await self._store.run_sync(delete)


# -- opening ---------------------------------------------------------------------------------

_SYNCHRONOUS: Final = ("FULL", "NORMAL", "EXTRA")


def _check_wal(path: str, mode: object) -> None:
    if path == ":memory:":
        return
    if not isinstance(mode, tuple) or str(mode[0]).lower() != "wal":
        raise StoreError(f"{path}: cannot use WAL mode (got {mode!r})")


def _connect(path: str, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        _check_wal(path, mode)
        db.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


@asynccontextmanager
async def open_sqlite_store(
    path: str | os.PathLike[str],
    *,
    synchronous: str = "FULL",
    busy_timeout: float = 5.0,
) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating as needed) the SQLite store at ``path``.

    Args:
        path: the database file (``":memory:"`` for a private in-memory database).
        synchronous: ``"FULL"`` (default: every commit survives a power cut), ``"NORMAL"``
            (survives a process crash; faster) or ``"EXTRA"``.
        busy_timeout: seconds to wait for another process's write lock.

    Waits for: the file to open and migrate (in a worker thread); on exit, the close.
    Cancellation: the close is shielded.  Closes: the connection, on exit.

    Raises:
        StoreError: the file cannot be opened or migrated (e.g. written by a newer release).
    """
    synchronous = synchronous.upper()
    if synchronous not in _SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    text = os.fspath(path)
    try:
        db = await trio.to_thread.run_sync(_connect, text, synchronous, busy_timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"{text}: {exc}") from exc
    store = SQLiteStore(db, text)
    try:
        yield store
    finally:
        await store.aclose()
