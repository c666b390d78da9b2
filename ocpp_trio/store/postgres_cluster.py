"""The PostgreSQL side of routing between nodes: the command table and LISTEN/NOTIFY.

A CALL for a station that another node serves is a row of the ``commands`` table (the source of
truth) and a notification to the owner node's channel (only the wake-up: a node also looks at
the table now and then, so a lost notification delays a command, never loses it).  Every row
ends with one ``outcome`` (a conditional ``UPDATE ... WHERE outcome IS NULL``, so whoever comes
first decides, and nothing overwrites it):

* ``result`` / ``call_error``: the station answered (``result`` holds the payload or the error);
* ``timeout``: no answer by the deadline (also when the node running it died meanwhile);
* ``offline``: the station is not connected (no owner, the owner is dead, or not connected there);
* ``refused``: the station's registration state forbids the CALL now; ``invalid``: the
  request cannot be sent (e.g. it fails its schema for the station's version).

:func:`sweep` (run by every node) gives an outcome to the rows nobody will finish: ``offline``
for those waiting for a dead node, ``timeout`` past their deadline.  The node that made a row is
notified on its own channel when it ends.  Cluster events travel on one channel
(:data:`EVENTS_CHANNEL`) as JSON, best effort (a node that is not listening misses them).

This module only speaks SQL; :mod:`ocpp_trio.csms.cluster` runs it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any, Final

import attrs
import psycopg
import trio
from psycopg import sql

from ocpp_trio.errors import StoreError
from ocpp_trio.store.postgres import Connection, PostgresStore

__all__ = [
    "EVENTS_CHANNEL",
    "OUTCOMES",
    "Command",
    "Listener",
    "Submitted",
    "channel_of",
    "finish",
    "notify_events",
    "outcome_of",
    "submit",
    "sweep",
    "take",
]

log = logging.getLogger("ocpp_trio")

#: the channel of cluster-wide events
EVENTS_CHANNEL: Final = "ocpp_trio_events"
#: every outcome a command can end with
OUTCOMES: Final = frozenset({"result", "call_error", "timeout", "offline", "refused", "invalid"})
# a NOTIFY payload must stay under 8000 bytes
_NOTIFY_LIMIT: Final = 7900


def channel_of(node: str) -> str:
    """The notification channel of ``node`` (a digest: channel names are short)."""
    return "ocpp_trio_" + hashlib.sha256(node.encode()).hexdigest()[:24]


@attrs.frozen(kw_only=True)
class Command:
    """A command row, as the node that runs it takes it.

    Attributes:
        id: the row.
        identity: the station.
        version: the OCPP version the request was made for.
        action: the request's action.
        payload: the request's JSON payload.
        remaining: seconds left until its deadline when it was taken.
    """

    id: int
    identity: str
    version: str
    action: str
    payload: Any
    remaining: float


@attrs.frozen(kw_only=True)
class Submitted:
    """A command just written: its ``id``, and its ``outcome`` when it ended at once
    (``offline``: no live node serves the station)."""

    id: int
    outcome: str | None
    target: str | None


@attrs.frozen(kw_only=True)
class Outcome:
    """How a command ended (``outcome`` ``None``: not yet) and what it returned."""

    outcome: str | None
    result: Any


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


async def submit(
    store: PostgresStore,
    identity: str,
    version: str,
    action: str,
    payload: Any,
    deadline: float,
) -> Submitted:
    """Write a command for ``identity``, due within ``deadline`` seconds, addressed to the
    node that owns it, and wake that node; a station without a live owner gets ``offline`` at
    once."""
    origin = store.node
    alive_within = _seconds(store.node_timeout)
    text = json.dumps(payload, separators=(",", ":"))

    def write(db: Connection) -> Submitted:
        row = db.execute(
            "SELECT s.owner FROM stations s JOIN nodes n ON n.node = s.owner"
            " WHERE s.identity = %s AND n.heartbeat_at > now() - %s",
            (identity, alive_within),
        ).fetchone()
        target = None if row is None else str(row[0])
        outcome = None if target is not None else "offline"
        inserted = db.execute(
            "INSERT INTO commands (identity, node, origin, version, action, payload, deadline,"
            " outcome, finished_at) VALUES (%s, %s, %s, %s, %s, %s, now() + %s, %s,"
            " CASE WHEN %s::text IS NULL THEN NULL ELSE now() END) RETURNING id",
            (
                identity,
                target or "",
                origin,
                version,
                action,
                text,
                _seconds(deadline),
                outcome,
                outcome,
            ),
        ).fetchone()
        assert inserted is not None
        if target is not None:
            db.execute("SELECT pg_notify(%s, %s)", (channel_of(target), str(inserted[0])))
        return Submitted(id=int(inserted[0]), outcome=outcome, target=target)

    return await store.run_sync(write)


async def take(store: PostgresStore) -> list[Command]:
    """The commands addressed to this node that nobody took yet (they are now taken)."""
    node = store.node

    def take(db: Connection) -> list[Command]:
        rows = db.execute(
            "UPDATE commands SET taken_at = now() WHERE node = %s AND taken_at IS NULL"
            " AND outcome IS NULL RETURNING id, identity, version, action, payload,"
            " extract(epoch FROM deadline - now())",
            (node,),
        ).fetchall()
        return [
            Command(
                id=int(i),
                identity=str(identity),
                version=str(version),
                action=str(action),
                payload=json.loads(payload),
                remaining=float(remaining),
            )
            for i, identity, version, action, payload, remaining in sorted(rows)
        ]

    return await store.run_sync(take)


async def finish(store: PostgresStore, command: int, outcome: str, result: Any = None) -> bool:
    """Record how ``command`` ended (unless it already has an outcome) and wake the node that
    made it; returns whether this call decided it."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    text = None if result is None else json.dumps(result, separators=(",", ":"))

    def write(db: Connection) -> bool:
        row = db.execute(
            "UPDATE commands SET outcome = %s, result = %s, finished_at = now()"
            " WHERE id = %s AND outcome IS NULL RETURNING origin",
            (outcome, text, command),
        ).fetchone()
        if row is None:
            return False
        db.execute("SELECT pg_notify(%s, %s)", (channel_of(str(row[0])), str(command)))
        return True

    return await store.run_sync(write)


async def outcome_of(store: PostgresStore, command: int) -> Outcome:
    """How ``command`` ended so far."""

    def read(db: Connection) -> Outcome:
        row = db.execute(
            "SELECT outcome, result FROM commands WHERE id = %s", (command,)
        ).fetchone()
        if row is None:
            raise StoreError(f"command {command} does not exist")
        outcome, result = row
        return Outcome(outcome=outcome, result=None if result is None else json.loads(result))

    return await store.run_sync(read)


async def sweep(store: PostgresStore, *, grace: float = 2.0, keep: float = 3600.0) -> int:
    """End the commands nobody will finish: ``offline`` when they wait for a node that is dead,
    ``timeout`` when their deadline passed ``grace`` seconds ago; delete rows that ended more
    than ``keep`` seconds ago.  Returns how many were ended."""
    alive_within = _seconds(store.node_timeout)

    def write(db: Connection) -> int:
        ended = db.execute(
            "UPDATE commands c SET outcome = 'offline', finished_at = now()"
            " WHERE outcome IS NULL AND taken_at IS NULL AND NOT EXISTS (SELECT 1 FROM nodes n"
            " WHERE n.node = c.node AND n.heartbeat_at > now() - %s) RETURNING id, origin",
            (alive_within,),
        ).fetchall()
        ended += db.execute(
            "UPDATE commands SET outcome = 'timeout', finished_at = now()"
            " WHERE outcome IS NULL AND deadline < now() - %s RETURNING id, origin",
            (_seconds(grace),),
        ).fetchall()
        for command, origin in ended:
            db.execute("SELECT pg_notify(%s, %s)", (channel_of(str(origin)), str(command)))
        db.execute(
            "DELETE FROM commands WHERE outcome IS NOT NULL AND finished_at < now() - %s",
            (_seconds(keep),),
        )
        return len(ended)

    return await store.run_sync(write)


async def notify_events(store: PostgresStore, events: Sequence[dict[str, Any]]) -> None:
    """Send ``events`` (JSON objects) on :data:`EVENTS_CHANNEL`, in one transaction."""
    texts = []
    for event in events:
        text = json.dumps(event, separators=(",", ":"), default=str)
        if len(text.encode()) > _NOTIFY_LIMIT:
            log.warning("cluster event too large to send (%d bytes): dropped", len(text))
            continue
        texts.append(text)
    if not texts:
        return

    def send(db: Connection) -> None:
        db.execute(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) WITH ORDINALITY"
            " AS e(payload, n) ORDER BY n",
            (EVENTS_CHANNEL, texts),
        )

    await store.run_sync(send)


class Listener:
    """One connection of its own that LISTENs to this node's channel and the events channel.

    :meth:`receive` returns the notifications that arrived (waiting at most ``wait`` seconds
    for the first), from a worker thread that is never abandoned: a cancelled caller waits for
    it, at most ``wait`` seconds.

    Args:
        dsn: the database.
        node: this node's name.
    """

    def __init__(self, dsn: str, node: str) -> None:
        self._dsn = dsn
        self._channels = (channel_of(node), EVENTS_CHANNEL)
        self._db: Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def connect(self) -> None:
        """(Re)open the connection and LISTEN.

        Raises:
            StoreError: the database cannot be reached.
        """

        def connect() -> Connection:
            db: Connection = psycopg.connect(self._dsn, autocommit=True)
            for channel in self._channels:
                db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            return db

        await self.aclose()
        try:
            self._db = await trio.to_thread.run_sync(connect, limiter=self._limiter)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def receive(self, wait: float) -> list[tuple[str, str]]:
        """The ``(channel, payload)`` notifications that arrived; empty after ``wait`` seconds
        without any.

        Raises:
            StoreError: the connection broke (call :meth:`connect` again).
        """
        db = self._db
        if db is None:
            raise StoreError("the listener is not connected")

        def receive() -> list[tuple[str, str]]:
            got = [(n.channel, n.payload) for n in db.notifies(timeout=wait, stop_after=1)]
            # and whatever else is already there, without waiting again
            got += [(n.channel, n.payload) for n in db.notifies(timeout=0)]
            return got

        try:
            return await trio.to_thread.run_sync(receive, limiter=self._limiter)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    @property
    def events_channel(self) -> str:
        """The channel of cluster events."""
        return EVENTS_CHANNEL

    async def aclose(self) -> None:
        """Close the connection (idempotent).  Cancellation: shielded."""
        db, self._db = self._db, None
        if db is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(db.close, limiter=self._limiter)
