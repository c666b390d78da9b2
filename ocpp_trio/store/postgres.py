"""A :class:`~ocpp_trio.store.base.Store` in PostgreSQL, shared by several CSMS processes (nodes).

Install with ``pip install 'ocpp-trio[postgres]'`` (psycopg 3 and its connection pool).

Threads: psycopg's connections block, so every database call runs off the trio thread with
:func:`trio.to_thread.run_sync`, on a connection borrowed from a
:class:`psycopg_pool.ConnectionPool` for that call, at most ``pool_size`` calls at a time (a
:class:`trio.CapacityLimiter` of the pool's size).  A call is never abandoned: once its thread
started, a cancelled caller waits for it, so a commit is either done or not done, never half
(the pool commits the call's transaction when it returns, and rolls it back when it raises).
As with SQLite, the journal writes of all stations reach the store through the one
group-commit writer of each CSMS (:class:`~ocpp_trio.store.writer.StoreWriter`): one
transaction per batch.

Nodes and ownership: each store is one **node** (``node=``, default host name, process id and a
random suffix).  While the store is open, a task of :func:`open_postgres_store` records the
node's heartbeat in the ``nodes`` table every ``heartbeat_interval`` seconds.  A claim makes the
claiming node the station's **owner** and raises its epoch; every station write is checked
against the epoch in the same transaction, with the station rows locked (``FOR SHARE``, in
identity order) so that a claim by another node waits for the commit or comes before it, never
in between.  A node that lost a station (its socket half-open while the station reconnected
elsewhere) thus has its writes refused as stale; the runtime then closes that connection.  No
advisory locks per station are taken; one transaction-scoped advisory lock serialises
migrations between nodes starting at once.

Schema: the ``schema_version`` table holds the version; :data:`MIGRATIONS` (lists of SQL
statements) are applied in order when the store opens, each in its own transaction.  Version 1
has the stations, their journal, counters, credentials and nodes; version 2 added the commands
routed between nodes (:mod:`ocpp_trio.store.postgres_cluster`).
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, LiteralString, TypeVar

import attrs
import trio

try:
    import psycopg
    import psycopg_pool
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs psycopg: pip install 'ocpp-trio[postgres]'"
    ) from exc

from ocpp_trio.domain.credentials import StationCredentials
from ocpp_trio.domain.ledger import LedgerEntry, LedgerPage, LedgerQuery, page_of, utc_text
from ocpp_trio.errors import StoreError
from ocpp_trio.protocol.version import Version
from ocpp_trio.store.base import (
    TRANSACTION_ID_COUNTER,
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
    "BlockTransactionIds",
    "NodeInfo",
    "PostgresCredentialStore",
    "PostgresStore",
    "StationOwner",
    "default_node_name",
    "open_postgres_store",
]

log = logging.getLogger("ocpp_trio")

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]


# -- schema ----------------------------------------------------------------------------------

#: the migrations, in order: ``MIGRATIONS[n]`` brings a database from version n to n + 1
MIGRATIONS: Final[tuple[tuple[LiteralString, ...], ...]] = (
    (
        # version 1: the SQLite layout (stations, journal, counters, credentials), plus the
        # owner of each station and the nodes' heartbeats
        "CREATE TABLE stations ("
        " identity text PRIMARY KEY,"
        " epoch bigint NOT NULL DEFAULT 0,"
        " version text,"
        " registration text,"
        " snapshot text,"
        " through bigint NOT NULL DEFAULT 0,"
        " local_list_version bigint,"
        " owner text,"
        " updated_at timestamptz)",
        "CREATE TABLE journal ("
        " identity text NOT NULL,"
        " seq bigint NOT NULL,"
        " entry text NOT NULL,"
        " PRIMARY KEY (identity, seq))",
        "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)",
        "CREATE TABLE credentials ("
        " identity text PRIMARY KEY,"
        " record text NOT NULL,"
        " updated_at timestamptz)",
        "CREATE TABLE nodes ("
        " node text PRIMARY KEY,"
        " started_at timestamptz NOT NULL,"
        " heartbeat_at timestamptz NOT NULL)",
        "CREATE INDEX stations_owner ON stations (owner)",
    ),
    (
        # version 2: CALLs routed to the node that serves the station (see postgres_cluster)
        "CREATE TABLE commands ("
        " id bigserial PRIMARY KEY,"
        " identity text NOT NULL,"
        " node text NOT NULL,"
        " origin text NOT NULL,"
        " version text NOT NULL,"
        " action text NOT NULL,"
        " payload text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " deadline timestamptz NOT NULL,"
        " taken_at timestamptz,"
        " outcome text,"
        " result text,"
        " finished_at timestamptz)",
        "CREATE INDEX commands_open ON commands (node) WHERE outcome IS NULL",
        "CREATE INDEX commands_finished ON commands (finished_at) WHERE outcome IS NOT NULL",
    ),
    (
        # version 3: the transaction ledger, as SQLite keeps it (times as utc_text, which
        # sorts as the times do, so both stores page the same way)
        "CREATE TABLE ledger ("
        " identity text NOT NULL,"
        " transaction_id text NOT NULL,"
        " ended_at text NOT NULL,"
        " id_token text,"
        " recorded_at text NOT NULL,"
        " entry text NOT NULL,"
        " PRIMARY KEY (identity, transaction_id))",
        "CREATE INDEX ledger_by_end ON ledger (ended_at, identity, transaction_id)",
        "CREATE INDEX ledger_by_station ON ledger (identity, ended_at, transaction_id)",
        "CREATE INDEX ledger_by_recorded ON ledger (recorded_at)",
    ),
)
#: the schema version this code writes
SCHEMA_VERSION: Final = len(MIGRATIONS)
# serialises migrations of nodes starting together (any constant unique to this purpose)
_MIGRATION_LOCK: Final = 0x6F637070  # "ocpp"


def schema_version(db: Connection) -> int:
    """The schema version of ``db`` (0: empty)."""
    found = db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if found is None or not found[0]:
        return 0
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def migrate(db: Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations that bring ``db`` to ``target``; returns the version before.

    Each migration runs in its own transaction with the version update, under a transaction
    advisory lock, so nodes starting together migrate once.

    Raises:
        StoreError: the database is newer than this code knows.
    """
    before: int | None = None
    version = 0
    while True:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = schema_version(db)
            if before is None:
                before = version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}; this ocpp-trio knows up to "
                    f"{SCHEMA_VERSION} (a newer release wrote it)"
                )
            if version >= target:
                return before
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            for statement in MIGRATIONS[version]:
                db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (%s)", (version + 1,))


def default_node_name() -> str:
    """A node name unique to this process: host name, process id and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


# -- records of the cluster ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NodeInfo:
    """A node that shares the store: ``alive`` when its heartbeat is recent."""

    node: str
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    alive: bool


@attrs.frozen(kw_only=True)
class StationOwner:
    """Who serves a station: ``node`` (``None``: nobody since its last release) under
    ``epoch``; ``alive`` says whether that node's heartbeat is recent; ``version`` is the OCPP
    version of the latest claim."""

    identity: str
    node: str | None
    epoch: int
    alive: bool
    version: str | None = None


# -- the store -------------------------------------------------------------------------------


class PostgresStore:
    """A store in a PostgreSQL database shared by several nodes (see the module docstring);
    open it with :func:`open_postgres_store`.

    Attributes:
        node: this node's name (the owner recorded by its claims).
        node_timeout: seconds without a heartbeat after which a node counts as dead.
        lock_timeout: seconds a claim waits for a station's row; then the transactions of
            other nodes older than that are taken for stuck (a frozen node) and ended.
    """

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool[Connection],
        *,
        dsn: str,
        node: str,
        pool_size: int,
        node_timeout: float,
        lock_timeout: float = 1.0,
    ) -> None:
        self._pool: psycopg_pool.ConnectionPool[Connection] | None = pool
        #: the database (a node opens a connection of its own to it for LISTEN)
        self.dsn = dsn
        self.node = node
        self.node_timeout = node_timeout
        self.lock_timeout = lock_timeout
        self._limiter = trio.CapacityLimiter(pool_size)
        self._credentials = PostgresCredentialStore(self)
        #: the 1.6 transaction ids of this node (give it to ``CSMSConfig(transaction_ids=)``)
        self.transaction_ids = BlockTransactionIds(self)
        #: transactions committed by :meth:`commit` (for tests and benchmarks)
        self.commits = 0

    @property
    def credentials(self) -> PostgresCredentialStore:
        """The station credentials, in this database."""
        return self._credentials

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction on a pooled connection, in a worker
        thread (committed when ``fn`` returns, rolled back when it raises).

        Waits for: a free worker and connection, then ``fn``.  Cancellation: only before the
        thread starts; then the call is seen through.

        Raises:
            StoreError: the database failed (or the store is closed).
        """
        pool = self._pool
        if pool is None:
            raise StoreError("the store is closed")

        def call() -> T:
            with pool.connection() as db:
                return fn(db)

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def aclose(self) -> None:
        """Close the pool (idempotent).

        Waits for: the calls in progress, then the close.  Cancellation: shielded.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(pool.close)

    # -- reading ---------------------------------------------------------------------------

    async def claim(self, identity: str, version: Version) -> StoredStation:
        """Bump the epoch of ``identity``, make this node its owner and return its record
        (see the protocol)."""
        version = Version(version)
        node = self.node

        lock_timeout = sql.Literal(f"{max(1, round(self.lock_timeout * 1000))}ms")

        def claim(db: Connection) -> RawStation:
            db.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(lock_timeout))
            db.execute(
                "INSERT INTO stations (identity, epoch, version, owner, updated_at)"
                " VALUES (%s, 1, %s, %s, now()) ON CONFLICT (identity) DO UPDATE SET"
                " epoch = stations.epoch + 1, version = excluded.version,"
                " owner = excluded.owner, updated_at = excluded.updated_at",
                (identity, version.value, node),
            )
            raw = _read(db, identity)
            assert raw is not None
            return raw

        try:
            raw = await self.run_sync(claim)
        except StoreError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                raise
            # another node holds the row in a transaction that does not end: it is frozen
            # (the only way a commit of ours lasts this long); end its stuck sessions
            ended = await self.run_sync(partial(_end_stuck_sessions, self.lock_timeout))
            log.warning(
                "store: station %r was locked by a stuck transaction of another node; "
                "%d session(s) ended",
                identity,
                ended,
            )
            raw = await self.run_sync(claim)
        return decode_station(raw)

    async def load(self, identity: str) -> StoredStation | None:
        """The record of ``identity``, or ``None``."""
        raw = await self.run_sync(lambda db: _read(db, identity))
        return None if raw is None else decode_station(raw)

    async def counter(self, name: str) -> int | None:
        """A counter's value, or ``None``."""

        def counter(db: Connection) -> int | None:
            row = db.execute("SELECT value FROM counters WHERE name = %s", (name,)).fetchone()
            return None if row is None else int(row[0])

        return await self.run_sync(counter)

    async def identities(self) -> list[str]:
        """The identities with a record."""

        def identities(db: Connection) -> list[str]:
            rows = db.execute("SELECT identity FROM stations ORDER BY identity").fetchall()
            return [str(r[0]) for r in rows]

        return await self.run_sync(identities)

    # -- writing ---------------------------------------------------------------------------

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        """Apply ``ops`` in one transaction (see the protocol)."""
        ops = list(ops)
        # encoded on the trio thread's behalf in the worker, before any row is locked
        stale = await self.run_sync(lambda db: _apply(db, ops, [encode_op(op) for op in ops]))
        self.commits += 1
        return stale

    async def forget(self, identity: str) -> None:
        """Delete the record and journal of ``identity``."""

        def forget(db: Connection) -> None:
            db.execute("DELETE FROM journal WHERE identity = %s", (identity,))
            db.execute("DELETE FROM stations WHERE identity = %s", (identity,))

        await self.run_sync(forget)

    async def forget_unbooted(self, older_than: datetime.datetime) -> list[str]:
        """Forget the stations without a registration last written before ``older_than``
        that no other live node owns (that node may be serving them right now)."""
        timeout = datetime.timedelta(seconds=self.node_timeout)
        unbooted: LiteralString = (
            "SELECT identity FROM stations WHERE registration IS NULL"
            " AND updated_at IS NOT NULL AND updated_at < %s AND (owner IS NULL OR owner NOT IN"
            " (SELECT node FROM nodes WHERE heartbeat_at > now() - %s AND node <> %s))"
        )

        def forget(db: Connection) -> list[str]:
            found = db.execute(unbooted, (older_than, timeout, self.node)).fetchall()
            gone = [str(row[0]) for row in found]
            if gone:
                db.execute("DELETE FROM journal WHERE identity = ANY(%s)", (gone,))
                db.execute("DELETE FROM stations WHERE identity = ANY(%s)", (gone,))
            return gone

        return await self.run_sync(forget)

    # -- the ledger --------------------------------------------------------------------------

    async def ledger(self, query: LedgerQuery) -> LedgerPage:
        """One page of the ledger (see the protocol)."""
        filters: tuple[tuple[LiteralString, str | None], ...] = (
            ("identity = %s", query.station),
            ("id_token = %s", query.id_token),
            ("ended_at >= %s", query.since_text),
            ("ended_at < %s", query.until_text),
        )
        where: list[LiteralString] = [clause for clause, value in filters if value is not None]
        params: list[object] = [value for _clause, value in filters if value is not None]
        after = query.after_key
        if after is not None:
            where.append("(ended_at, identity, transaction_id) > (%s, %s, %s)")
            params.extend(after)
        sql: LiteralString = "SELECT entry FROM ledger"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ended_at, identity, transaction_id LIMIT %s"
        params.append(query.limit + 1)

        def select(db: Connection) -> list[str]:
            return [str(row[0]) for row in db.execute(sql, params).fetchall()]

        texts = await self.run_sync(select)
        try:
            entries = [decode(text, LedgerEntry) for text in texts]
        except ValueError as exc:
            raise StoreError(f"an unreadable ledger entry: {exc}") from exc
        return page_of(entries, query.limit)

    async def prune_ledger(self, before: datetime.datetime) -> int:
        """Delete the ledger entries written before ``before`` (see the protocol)."""
        cutoff = utc_text(before)

        def prune(db: Connection) -> int:
            return db.execute("DELETE FROM ledger WHERE recorded_at < %s", (cutoff,)).rowcount

        return await self.run_sync(prune)

    # -- nodes and owners ------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Record that this node is alive (creating its row on the first call)."""
        node = self.node

        def beat(db: Connection) -> None:
            db.execute(
                "INSERT INTO nodes (node, started_at, heartbeat_at) VALUES (%s, now(), now())"
                " ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()",
                (node,),
            )

        await self.run_sync(beat)

    async def nodes(self) -> list[NodeInfo]:
        """Every node that recorded a heartbeat and did not leave, by name."""
        timeout = datetime.timedelta(seconds=self.node_timeout)

        def nodes(db: Connection) -> list[NodeInfo]:
            rows = db.execute(
                "SELECT node, started_at, heartbeat_at, heartbeat_at > now() - %s"
                " FROM nodes ORDER BY node",
                (timeout,),
            ).fetchall()
            return [
                NodeInfo(node=n, started_at=s, heartbeat_at=h, alive=bool(a)) for n, s, h, a in rows
            ]

        return await self.run_sync(nodes)

    async def owner(self, identity: str) -> StationOwner | None:
        """Who serves ``identity`` now (``None``: the station is unknown)."""
        timeout = datetime.timedelta(seconds=self.node_timeout)

        def owner(db: Connection) -> StationOwner | None:
            row = db.execute(
                "SELECT s.owner, s.epoch, coalesce(n.heartbeat_at > now() - %s, false),"
                " s.version"
                " FROM stations s LEFT JOIN nodes n ON n.node = s.owner"
                " WHERE s.identity = %s",
                (timeout, identity),
            ).fetchone()
            if row is None:
                return None
            return StationOwner(
                identity=identity, node=row[0], epoch=int(row[1]), alive=row[2], version=row[3]
            )

        return await self.run_sync(owner)

    async def release(self, identity: str, epoch: int) -> bool:
        """Clear the owner of ``identity`` if the claim ``epoch`` of this node is still the
        current one (its connection ended); returns whether it was."""
        node = self.node

        def release(db: Connection) -> bool:
            cursor = db.execute(
                "UPDATE stations SET owner = NULL"
                " WHERE identity = %s AND epoch = %s AND owner = %s",
                (identity, epoch, node),
            )
            return cursor.rowcount == 1

        return await self.run_sync(release)

    async def leave(self) -> None:
        """Take this node out of the cluster: release its stations and drop its heartbeat."""
        node = self.node

        def leave(db: Connection) -> None:
            db.execute("UPDATE stations SET owner = NULL WHERE owner = %s", (node,))
            db.execute("DELETE FROM nodes WHERE node = %s", (node,))

        await self.run_sync(leave)


#: the application name of every connection of a node (others find their sessions by it)
APPLICATION_NAME: Final = "ocpp-trio"


def _end_stuck_sessions(older_than: float, db: Connection) -> int:
    """End the sessions of other nodes whose transaction started ``older_than`` seconds ago
    (their locks are released and their transaction rolled back); returns how many."""
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = %s AND pid <> pg_backend_pid()"
        " AND xact_start < now() - %s",
        (APPLICATION_NAME, datetime.timedelta(seconds=older_than)),
    ).fetchall()
    return sum(1 for (ended,) in rows if ended)


def _read(db: Connection, identity: str) -> RawStation | None:
    row = db.execute(
        "SELECT epoch, version, registration, snapshot, through, local_list_version,"
        " updated_at FROM stations WHERE identity = %s",
        (identity,),
    ).fetchone()
    if row is None:
        return None
    epoch, version, registration, snapshot, through, local_list_version, updated_at = row
    journal = db.execute(
        "SELECT seq, entry FROM journal WHERE identity = %s AND seq > %s ORDER BY seq",
        (identity, through),
    ).fetchall()
    return RawStation(
        identity=identity,
        epoch=int(epoch),
        version=version,
        registration=registration,
        snapshot=snapshot,
        through=int(through),
        local_list_version=None if local_list_version is None else int(local_list_version),
        updated_at=None if updated_at is None else updated_at.isoformat(),
        journal=[(int(s), str(e)) for s, e in journal],
    )


class _Writer:
    """PostgreSQL's SQL for the writes of one commit (see
    :func:`~ocpp_trio.store.sql.apply_ops`).

    Bulk writes are one statement each (``unnest``), not ``executemany``, which pipelines: a
    node frozen in the middle of a pipeline is not "idle in transaction", and would keep its
    row locks.
    """

    def __init__(self, db: Connection) -> None:
        self.db = db

    def put_counter(self, name: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (%s, %s) ON CONFLICT (name)"
            " DO UPDATE SET value = greatest(counters.value, excluded.value)",
            (name, value),
        )

    def add_station(self, identity: str) -> None:
        self.db.execute(
            "INSERT INTO stations (identity, updated_at) VALUES (%s, now())"
            " ON CONFLICT (identity) DO NOTHING",
            (identity,),
        )

    def append(self, rows: Sequence[tuple[str, int, str]]) -> None:
        identities, seqs, entries = zip(*rows, strict=True)
        self.db.execute(
            "INSERT INTO journal (identity, seq, entry)"
            " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[])",
            (list(identities), list(seqs), list(entries)),
        )

    def put_registration(self, identity: str, text: str | None) -> None:
        self.db.execute(
            "UPDATE stations SET registration = %s WHERE identity = %s", (text, identity)
        )

    def put_snapshot(self, identity: str, text: str, through: int) -> None:
        self.db.execute(
            "UPDATE stations SET snapshot = %s, through = %s WHERE identity = %s",
            (text, through, identity),
        )
        self.db.execute(
            "DELETE FROM journal WHERE identity = %s AND seq <= %s", (identity, through)
        )

    def put_local_list_version(self, identity: str, version: int | None) -> None:
        self.db.execute(
            "UPDATE stations SET local_list_version = %s WHERE identity = %s",
            (version, identity),
        )

    def put_ledger(self, rows: Sequence[LedgerRow]) -> None:
        # keys are unique, as ON CONFLICT in one statement needs
        columns = [list(column) for column in zip(*rows, strict=True)]
        self.db.execute(
            "INSERT INTO ledger"
            " (identity, transaction_id, ended_at, id_token, recorded_at, entry)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[])"
            " ON CONFLICT (identity, transaction_id) DO UPDATE SET"
            " ended_at = excluded.ended_at, id_token = excluded.id_token,"
            " recorded_at = excluded.recorded_at, entry = excluded.entry",
            columns,
        )

    def touch(self, identities: Sequence[str]) -> None:
        self.db.execute(
            "UPDATE stations SET updated_at = now() WHERE identity = ANY(%s)", (list(identities),)
        )


def _apply(db: Connection, ops: list[StoreOp], encoded: list[str | None]) -> frozenset[str]:
    fenced = fenced_identities(ops)
    epochs: dict[str, int] = {}
    if fenced:
        # the rows stay locked until the commit: a claim of another node (an UPDATE) waits,
        # so no write of an epoch that is no longer current gets through; locked in identity
        # order, so two commits never wait for each other in a cycle
        rows = db.execute(
            "SELECT identity, epoch FROM stations WHERE identity = ANY(%s)"
            " ORDER BY identity FOR SHARE",
            (fenced,),
        ).fetchall()
        epochs.update((str(identity), int(epoch)) for identity, epoch in rows)
    return apply_ops(ops, encoded, epochs, _Writer(db))


# -- 1.6 transaction ids across nodes ---------------------------------------------------------


class BlockTransactionIds:
    """The 1.6 transaction id allocator of a cluster: each node reserves blocks of ids in the
    shared counter (one atomic ``UPDATE ... RETURNING``), and hands them out one by one.

    No id is handed out twice in the cluster, also across restarts; a node that dies loses the
    rest of its block (a gap, never a reuse).  The stored counter is the next id not reserved,
    as :class:`~ocpp_trio.store.writer.StoredTransactionIds` keeps it, so a single process on
    the same database continues after it.  :meth:`run` reserves the first block, and the next
    one whenever half of the current one is used: the node's cluster part
    (:func:`ocpp_trio.csms.cluster.serve_cluster`) runs it.

    Args:
        store: the shared store.
        block: ids reserved at a time.
    """

    _LIMIT: Final = 2**31 - 1

    def __init__(self, store: PostgresStore, block: int = 1000) -> None:
        if block < 2:
            raise ValueError("block must be >= 2")
        self._store = store
        self._block = block
        self._next = 0
        self._end = 0
        self._spare: tuple[int, int] | None = None
        self._wanted = trio.Event()

    def allocate(self, identity: str) -> int:
        """The next id of this node's block.

        Raises:
            StoreError: no id is reserved (the store cannot be reached, or ids are asked for
                faster than blocks can be reserved).
        """
        if self._next >= self._end:
            if self._spare is None:
                self._wanted.set()
                raise StoreError("no 1.6 transaction id reserved (is the store reachable?)")
            (self._next, self._end), self._spare = self._spare, None
        value = self._next
        self._next += 1
        if self._spare is None and self._end - self._next < self._block // 2:
            self._wanted.set()
        return value

    async def reserve(self) -> tuple[int, int]:
        """Reserve the next block in the store: ``(first, end)`` (``end`` excluded)."""
        block = self._block
        limit = self._LIMIT

        def reserve(db: Connection) -> tuple[int, int]:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (%s, 1) ON CONFLICT DO NOTHING",
                (TRANSACTION_ID_COUNTER,),
            )
            # wraps to 1 like the single-process counter, when the 32-bit range is used up
            row = db.execute(
                "UPDATE counters SET value = CASE WHEN value + %s > %s THEN 1 + %s"
                " ELSE value + %s END WHERE name = %s RETURNING value",
                (block, limit, block, block, TRANSACTION_ID_COUNTER),
            ).fetchone()
            assert row is not None
            return int(row[0]) - block, int(row[0])

        return await self._store.run_sync(reserve)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reserve a first block, then a next one whenever half of the current one is used.

        Waits for: cancellation.  Cancellation: a reservation in progress completes.
        Exceptions: none (a failed reservation is logged and tried again).
        """
        started = False
        while True:
            try:
                first, end = await self.reserve()
            except StoreError as exc:
                log.warning("store: cannot reserve 1.6 transaction ids: %s", exc)
                await trio.sleep(1.0)
                continue
            if self._next >= self._end:
                self._next, self._end = first, end
            else:
                self._spare = (first, end)
            self._wanted = trio.Event()
            if not started:
                started = True
                task_status.started()
            await self._wanted.wait()


# -- credentials -----------------------------------------------------------------------------


class PostgresCredentialStore:
    """A :class:`~ocpp_trio.domain.credentials.CredentialStore` in the store's database
    (records as JSON; the password hashes are salted, see ``hash_password``)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def get(self, identity: str) -> StationCredentials | None:
        """The record of ``identity``, or ``None``.

        Raises:
            StoreError: the store failed, or the record is unreadable.
        """

        def get(db: Connection) -> str | None:
            row = db.execute(
                "SELECT record FROM credentials WHERE identity = %s", (identity,)
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

        def put(db: Connection) -> None:
            db.execute(
                "INSERT INTO credentials (identity, record, updated_at) VALUES (%s, %s, now())"
                " ON CONFLICT (identity) DO UPDATE SET record = excluded.record,"
                " updated_at = excluded.updated_at",
                (credentials.identity, text),
            )

        await self._store.run_sync(put)

    async def update(
        self,
        identity: str,
        change: Callable[[StationCredentials], StationCredentials | None],
        *,
        create: Callable[[], StationCredentials] | None = None,
    ) -> StationCredentials | None:
        """Apply ``change`` to the record of ``identity`` in one transaction that holds the
        row's lock (``SELECT ... FOR UPDATE``), so the read-modify-writes of every node that
        shares the database follow one another; without a row, insert what ``create`` makes
        unless another node inserts one first (``change`` then applies to that one). See
        :class:`~ocpp_trio.domain.credentials.AtomicCredentialStore`.

        Raises:
            StoreError: the store failed, or the record is unreadable.
            Exception: what ``change`` or ``create`` raises (nothing is written).
        """

        def locked(db: Connection) -> str | None:
            row = db.execute(
                "SELECT record FROM credentials WHERE identity = %s FOR UPDATE", (identity,)
            ).fetchone()
            return None if row is None else str(row[0])

        def checked(new: StationCredentials) -> str:
            if new.identity != identity:
                raise ValueError("a change must keep the station's identity")
            return encode(new, StationCredentials)

        def update(db: Connection) -> StationCredentials | None:
            with db.transaction():
                text = locked(db)
                if text is None:
                    if create is None:
                        return None
                    first = create()
                    inserted = db.execute(
                        "INSERT INTO credentials (identity, record, updated_at)"
                        " VALUES (%s, %s, now()) ON CONFLICT (identity) DO NOTHING",
                        (identity, checked(first)),
                    )
                    if inserted.rowcount == 1:
                        return first
                    text = locked(db)  # another node made it meanwhile: change that one
                    if text is None:
                        return None  # and deleted it again at once
                try:
                    record = structure_credentials(text)
                except ValueError as exc:
                    raise StoreError(
                        f"station {identity!r}: unreadable credentials: {exc}"
                    ) from exc
                new = change(record)
                if new is None or new == record:
                    return record
                db.execute(
                    "UPDATE credentials SET record = %s, updated_at = now() WHERE identity = %s",
                    (checked(new), identity),
                )
                return new

        return await self._store.run_sync(update)

    async def delete(self, identity: str) -> None:
        """Forget ``identity``."""

        def delete(db: Connection) -> None:
            db.execute("DELETE FROM credentials WHERE identity = %s", (identity,))

        await self._store.run_sync(delete)


# -- opening ---------------------------------------------------------------------------------


def _open_pool(
    dsn: str, pool_size: int, connect_timeout: float, idle_in_transaction_timeout: float
) -> psycopg_pool.ConnectionPool[Connection]:
    idle_ms = max(1, round(idle_in_transaction_timeout * 1000))

    def configure(db: Connection) -> None:
        # a node frozen in the middle of a transaction (SIGSTOP, a long pause) would keep its
        # stations' rows locked, and the claims of the nodes taking them over would wait for
        # it: PostgreSQL ends such a session after this long, which releases the locks
        db.autocommit = True
        db.execute(sql.SQL("SET idle_in_transaction_session_timeout = {}").format(idle_ms))
        db.autocommit = False

    pool: psycopg_pool.ConnectionPool[Connection] = psycopg_pool.ConnectionPool(
        dsn,
        min_size=1,
        max_size=pool_size,
        open=False,
        timeout=connect_timeout,
        configure=configure,
        kwargs={"application_name": APPLICATION_NAME},
        name="ocpp-trio",
    )
    try:
        pool.open(wait=True, timeout=connect_timeout)
        with pool.connection() as db:
            db.autocommit = True  # migrate() opens its own transactions
            try:
                migrate(db)
            finally:
                db.autocommit = False
    except BaseException:
        pool.close()
        raise
    return pool


async def _heartbeats(store: PostgresStore, interval: float) -> None:
    """Beat every ``interval`` seconds (the first beat is the opener's, before serving)."""
    while True:
        await trio.sleep(interval)
        try:
            await store.heartbeat()
        except StoreError as exc:
            log.warning("store: node %s: heartbeat failed: %s", store.node, exc)


@asynccontextmanager
async def open_postgres_store(
    dsn: str,
    *,
    node: str | None = None,
    pool_size: int = 8,
    heartbeat_interval: float = 2.0,
    node_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    idle_in_transaction_timeout: float = 1.0,
) -> AsyncIterator[PostgresStore]:
    """Open (migrating as needed) the PostgreSQL store at ``dsn`` as node ``node``.

    Args:
        dsn: a libpq connection string or URL (``postgresql://user@host:5432/db``).
        node: this process's name in the cluster (default :func:`default_node_name`); two
            processes open at the same time must not share one.
        pool_size: connections (and worker threads) at most.
        heartbeat_interval: seconds between two heartbeats of this node.
        node_timeout: seconds without a heartbeat after which a node counts as dead.
        connect_timeout: seconds to wait for the database when opening.
        idle_in_transaction_timeout: seconds after which PostgreSQL ends a session of this
            node that stopped in the middle of a transaction (a frozen node must not keep
            the rows of its stations locked against the claims of other nodes).

    Waits for: the first connection and the migrations (in a worker thread), the first
    heartbeat; on exit, the node's departure (its stations released) and the pool's close.
    Cancellation: the exit is shielded.  Closes: the pool, on exit.

    Raises:
        StoreError: the database cannot be reached or migrated (e.g. written by a newer
            release).
    """
    if pool_size < 1:
        raise ValueError("pool_size must be >= 1")
    name = node or default_node_name()
    try:
        pool = await trio.to_thread.run_sync(
            _open_pool, dsn, pool_size, connect_timeout, idle_in_transaction_timeout
        )
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL: {exc}") from exc
    store = PostgresStore(pool, dsn=dsn, node=name, pool_size=pool_size, node_timeout=node_timeout)
    own: BaseException | None = None
    to_raise: BaseException | None = None
    try:
        await store.heartbeat()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_heartbeats, store, heartbeat_interval)
            try:
                yield store
            except BaseException as exc:
                own = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # the heartbeat task raises nothing: what the group holds is the body's own
        others = [e for e in _leaves(group) if e is not own and not isinstance(e, trio.Cancelled)]
        if others or own is None or isinstance(own, trio.Cancelled):
            raise
        to_raise = own
    finally:
        with trio.CancelScope(shield=True):
            try:
                await store.leave()
            except StoreError as exc:
                log.warning("store: node %s could not leave the cluster: %s", name, exc)
            await store.aclose()
    if to_raise is not None:
        raise to_raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
