"""Several CSMS processes (nodes) sharing a PostgreSQL store, seen as one CSMS.

``csms.call(identity, request)`` works on any node: a station connected here is called
directly; one that another node serves gets a **command** (a row of the shared ``commands``
table, see :mod:`ocpp_trio.store.postgres_cluster`), and the owner node is woken with a
``NOTIFY`` on its channel.  That node runs the CALL on the station's connection and writes the
outcome; the calling node is woken the same way and returns it as :meth:`CSMS.call` would: the
typed response, :class:`~ocpp_trio.errors.CallError`, :class:`~ocpp_trio.errors.CallTimeoutError`,
:class:`~ocpp_trio.errors.StationOfflineError` (no live node serves the station) or
:class:`~ocpp_trio.errors.StateError`.  Every command ends with an outcome, even when a node dies:
every node sweeps the table, ending with ``offline`` the commands addressed to a dead node that it
never took, and with ``timeout`` those past their deadline.  The table is the truth; a lost
notification only delays a command until the next look at the table (every ``poll_interval``).

Events: each node sends its lifecycle events (Connected, Accepted, BootAnswered, Disconnected)
and transaction events (started, updated, ended) as JSON on one channel;
:meth:`ClusterNode.subscribe` receives those of every node, its own included, as
:class:`ClusterEvent`.  Delivery is best effort, as for local subscribers: a node that is not
listening at the time (down, or reconnecting to the database) misses them, and a slow subscriber
drops them (counted).

1.6 transaction ids: the node also reserves blocks of ids for ``store.transaction_ids`` (give it
to ``CSMSConfig(transaction_ids=...)``), so that no two nodes hand out the same id.

Entry: ``node: ClusterNode = await nursery.start(serve_cluster, csms, store)`` (``ocpp-trio serve``
does it when ``--db`` is a ``postgresql://`` URL).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn, TypeVar, cast

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.csms.core import CSMS
from ocpp_trio.domain.events import TransactionChanged
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    MessageValidationError,
    RemoteProtocolError,
    StateError,
    StationOfflineError,
    StoreError,
)
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import (
    Accepted,
    BootAnswered,
    Broadcast,
    BroadcastStatistics,
    Connected,
    StationEvent,
    Subscription,
)
from ocpp_trio.store.postgres import PostgresStore
from ocpp_trio.store.postgres_cluster import (
    EVENTS_CHANNEL,
    Command,
    Listener,
    Outcome,
    finish,
    notify_events,
    outcome_of,
    submit,
    sweep,
    take,
)

__all__ = ["ClusterConfig", "ClusterEvent", "ClusterNode", "ClusterStatistics", "serve_cluster"]

log = logging.getLogger("ocpp_trio")

R = TypeVar("R", bound=Response)

#: events gathered into one batch of notifications at most
_BATCH: Final = 500


@attrs.frozen(kw_only=True)
class ClusterConfig:
    """How a node takes part in the cluster.

    Attributes:
        poll_interval: seconds between two looks at the command table when no notification
            comes (the fallback for a lost one).
        sweep_interval: seconds between two sweeps (see the module docstring).
        grace: seconds past a command's deadline before a sweep ends it with ``timeout`` (the
            node running it normally does so first).
        max_commands: commands of other nodes this node runs at once.
        event_buffer: events waiting to be sent to the cluster (more are dropped, counted).
    """

    poll_interval: float = 1.0
    sweep_interval: float = 1.0
    grace: float = 2.0
    max_commands: int = 256
    event_buffer: int = 4096


@attrs.frozen(kw_only=True)
class ClusterEvent:
    """An event of some node of the cluster.

    Attributes:
        node: the node it happened on.
        kind: the event's class name: ``Connected``, ``Accepted``, ``BootAnswered``,
            ``Disconnected``, ``TransactionStarted``, ``TransactionUpdated``,
            ``TransactionEnded``.
        identity: the station.
        at: when (UTC).
        data: the rest, as JSON values (``version``; ``resumed``; ``status``; ``reason``;
            ``transaction_id``, ``evse_id``, ``energy_wh``, ``stopped_reason``, ``events``,
            ``missing_seq_nos``).
    """

    node: str
    kind: str
    identity: str
    at: datetime.datetime
    data: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class ClusterStatistics:
    """Counters of a :class:`ClusterNode`."""

    #: commands this node sent to others, and how they ended (outcome -> count)
    routed: Mapping[str, int]
    #: commands of other nodes this node ran
    served: int
    #: commands the sweeps of this node ended
    swept: int
    #: events sent to the cluster, and dropped before sending
    events_sent: int
    events_dropped: int
    events: BroadcastStatistics


class ClusterNode:
    """This node's part of the cluster (see the module docstring); run it with
    :func:`serve_cluster`.

    Args:
        csms: this node's CSMS (its :attr:`CSMS.remote` is set to this object while it runs).
        store: the shared store.
        config: see :class:`ClusterConfig`.
    """

    def __init__(
        self, csms: CSMS, store: PostgresStore, config: ClusterConfig | None = None
    ) -> None:
        self.csms = csms
        self.store = store
        self.config = config or ClusterConfig()
        self._waiting: dict[int, trio.Event] = {}
        self._wake = trio.Event()
        self._events: Broadcast[ClusterEvent] = Broadcast(name="cluster event")
        self._outgoing_send, self._outgoing = trio.open_memory_channel[dict[str, Any]](
            self.config.event_buffer
        )
        self._limiter = trio.CapacityLimiter(self.config.max_commands)
        self._routed: dict[str, int] = {}
        self._served = 0
        self._swept = 0
        self._sent = 0
        self._dropped = 0

    @property
    def node(self) -> str:
        """This node's name."""
        return self.store.node

    def statistics(self) -> ClusterStatistics:
        """A snapshot of the counters."""
        return ClusterStatistics(
            routed=dict(self._routed),
            served=self._served,
            swept=self._swept,
            events_sent=self._sent,
            events_dropped=self._dropped,
            events=self._events.statistics(),
        )

    # -- calling a station of another node -------------------------------------------------

    async def version_of(self, identity: str) -> Version | None:
        """The OCPP version ``identity`` last connected with, ``None`` when unknown."""
        record = await self.store.owner(identity)
        return None if record is None or record.version is None else Version(record.version)

    async def call(
        self, identity: str, request: Request[R], *, call_timeout: float | None = None
    ) -> R:
        """Run ``request`` on station ``identity`` through the node that serves it (see
        :meth:`CSMS.call`, which calls this for stations not connected here).

        Waits for: the command's outcome: at most ``call_timeout`` (default: the station
        configuration's) plus ``grace`` and a sweep.  Cancellation: the command stays and
        still ends with an outcome of its own.

        Raises:
            StationOfflineError: no live node serves the station.
            StateError: its registration state forbids the CALL now.
            CallError: it answered with a CALLERROR (or an invalid answer).
            CallTimeoutError: no answer in time, or the node serving it died meanwhile.
            LocalProtocolError: the request cannot be sent to it (e.g. another version).
            StoreError: the shared store failed (the command may still run).
        """
        limit = call_timeout if call_timeout is not None else self.csms.config.station.call_timeout
        submitted = await submit(
            self.store,
            identity,
            request.VERSION.value,
            request.ACTION,
            request.to_json(),
            limit,
        )
        if submitted.outcome is not None:
            got = Outcome(outcome=submitted.outcome, result=None)
        else:
            got = await self._wait(submitted.id, limit)
        self._routed[str(got.outcome)] = self._routed.get(str(got.outcome), 0) + 1
        return cast("R", _interpret(identity, request, got))

    async def _wait(self, command: int, limit: float) -> Outcome:
        give_up = trio.current_time() + limit + self.config.grace + self.config.sweep_interval
        try:
            while True:
                woken = self._waiting[command] = trio.Event()
                with trio.move_on_after(self.config.poll_interval):
                    await woken.wait()
                got = await outcome_of(self.store, command)
                if got.outcome is not None:
                    return got
                if trio.current_time() > give_up:
                    # nobody swept it (the sweeps failed?): decide ourselves, unless the
                    # outcome was written meanwhile
                    await finish(self.store, command, "timeout")
                    return await outcome_of(self.store, command)
        finally:
            self._waiting.pop(command, None)

    # -- running the commands of other nodes ---------------------------------------------

    async def _run_command(self, command: Command) -> None:
        async with self._limiter:
            outcome, result = await self._execute(command)
        self._served += 1
        try:
            await finish(self.store, command.id, outcome, result)
        except StoreError as exc:
            log.warning("cluster: the outcome of command %d is not stored: %s", command.id, exc)

    async def _execute(self, command: Command) -> tuple[str, Any]:
        station = self.csms.get_station(command.identity)
        if station is None:
            return "offline", None
        if command.version != station.version.value:
            return "invalid", f"the station now speaks OCPP {station.version.value}"
        try:
            request = messages.decode_request(command.version, command.action, command.payload)
        except (KeyError, MessageValidationError) as exc:
            return "invalid", str(exc)
        if not isinstance(request, Request):
            return "invalid", f"{command.action} is not a CALL"
        try:
            response = await station.call(request, call_timeout=max(command.remaining, 0.001))
        except StateError as exc:
            return "refused", str(exc)
        except LocalProtocolError as exc:
            return "invalid", str(exc)
        except CallError as exc:
            return "call_error", _call_error_json(exc.code, exc.description, exc.details, station)
        except RemoteProtocolError as exc:
            return "call_error", _call_error_json(exc.code, str(exc), {}, station)
        except CallTimeoutError:
            return "timeout", None
        except ConnectionLostError:
            return "offline", None
        return "result", response.to_json()

    # -- events ----------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *, buffer: int = 256) -> AsyncIterator[Subscription[ClusterEvent]]:
        """Subscribe to the events of every node: ``async with node.subscribe() as events:
        async for event in events: ...`` (see :class:`ClusterEvent`; best effort, see the
        module docstring).  Waits for: nothing.  Closes: the subscription on exit.
        """
        async with self._events.subscribe(buffer=buffer) as subscription:
            yield subscription

    def _queue_event(self, event: StationEvent | TransactionChanged) -> None:
        data = _event_json(event)
        data["node"] = self.node
        try:
            self._outgoing_send.send_nowait(data)
        except trio.WouldBlock:
            self._dropped += 1

    def _received_event(self, payload: str) -> None:
        try:
            self._events.publish(_parse_event(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cluster: an unreadable event was dropped: %s", exc)

    async def _forward_lifecycle(self, task_status: trio.TaskStatus[None]) -> None:
        async with self.csms.subscribe(buffer=self.config.event_buffer) as events:
            task_status.started()
            async for event in events:
                self._queue_event(event)

    async def _forward_transactions(self, task_status: trio.TaskStatus[None]) -> None:
        async with self.csms.subscribe_transactions(buffer=self.config.event_buffer) as events:
            task_status.started()
            async for event in events:
                self._queue_event(event)

    async def _send_events(self) -> None:
        async for first in self._outgoing:
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._outgoing.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await notify_events(self.store, batch)
            except StoreError as exc:
                self._dropped += len(batch)
                log.warning("cluster: %d event(s) not sent: %s", len(batch), exc)
            else:
                self._sent += len(batch)

    # -- the node's tasks ------------------------------------------------------------------

    async def _listen(self) -> None:
        listener = Listener(self.store.dsn, self.node)
        try:
            while True:
                try:
                    await listener.connect()
                    self._wake.set()  # look at the table for what was missed meanwhile
                    while True:
                        got = await listener.receive(self.config.poll_interval)
                        if not got:
                            self._wake.set()  # the fallback look at the table
                        for channel, payload in got:
                            self._notified(channel, payload)
                except StoreError as exc:
                    log.warning("cluster: listening failed (%s); again in 1 s", exc)
                    await trio.sleep(1.0)
        finally:
            await listener.aclose()

    def _notified(self, channel: str, payload: str) -> None:
        if channel == EVENTS_CHANNEL:
            self._received_event(payload)
            return
        try:
            command = int(payload)
        except ValueError:
            return
        waiting = self._waiting.get(command)
        if waiting is not None:
            waiting.set()
        else:
            self._wake.set()

    async def _take(self, nursery: trio.Nursery) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            try:
                commands = await take(self.store)
            except StoreError as exc:
                log.warning("cluster: cannot take commands: %s", exc)
                await trio.sleep(self.config.poll_interval)
                continue
            for command in commands:
                nursery.start_soon(self._run_command, command)

    async def _sweep(self) -> None:
        while True:
            try:
                self._swept += await sweep(self.store, grace=self.config.grace)
            except StoreError as exc:
                log.warning("cluster: sweep failed: %s", exc)
            await trio.sleep(self.config.sweep_interval)

    async def run(
        self, *, task_status: trio.TaskStatus[ClusterNode] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Take part in the cluster until cancelled (see :func:`serve_cluster`)."""
        if self.csms.remote is not None:
            raise RuntimeError("this CSMS already belongs to a cluster")
        self.csms.remote = self
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.store.transaction_ids.run)
                await nursery.start(self._forward_lifecycle)
                await nursery.start(self._forward_transactions)
                nursery.start_soon(self._send_events)
                nursery.start_soon(self._listen)
                nursery.start_soon(self._take, nursery)
                nursery.start_soon(self._sweep)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.csms.remote = None
            self._events.close()


async def serve_cluster(
    csms: CSMS,
    store: PostgresStore,
    *,
    config: ClusterConfig | None = None,
    task_status: trio.TaskStatus[ClusterNode] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Make ``csms`` a node of the cluster sharing ``store``, until cancelled.

    Use as ``node: ClusterNode = await nursery.start(serve_cluster, csms, store)``; reports once
    it sends its events.  ``csms`` must use ``store`` (``CSMSConfig(store=store)``).

    Waits for: cancellation; never returns.  Cancellation: stops routing (commands of other
    nodes still running here are cancelled; the sweeps of the others end them).
    Closes: the LISTEN connection, the event subscriptions.  Exceptions: bugs only.
    """
    if csms.config.store is not store:
        raise ValueError("the CSMS must keep its stations in the cluster's store")
    node = ClusterNode(csms, store, config)
    await node.run(task_status=task_status)


# -- JSON of outcomes and events -----------------------------------------------------------


def _call_error_json(
    code: ErrorCode | str, description: str, details: Mapping[str, Any], station: Any
) -> dict[str, Any]:
    wire = code.wire(station.version) if isinstance(code, ErrorCode) else code
    return {"code": wire, "description": description, "details": dict(details)}


def _interpret(identity: str, request: Request[Any], got: Outcome) -> Response:
    outcome, result = got.outcome, got.result
    if outcome == "result":
        return messages.decode_response(request.VERSION, request.ACTION, result)
    if outcome == "call_error":
        code = ErrorCode.parse(str(result["code"])) or str(result["code"])
        raise CallError(code, str(result.get("description", "")), result.get("details") or {})
    if outcome == "timeout":
        raise CallTimeoutError(f"station {identity!r} did not answer {request.ACTION} in time")
    if outcome == "offline":
        raise StationOfflineError(f"station {identity!r} is not connected")
    if outcome == "refused":
        raise StateError(str(result))
    raise LocalProtocolError(f"{request.ACTION} cannot be sent to {identity!r}: {result}")


def _event_json(event: StationEvent | TransactionChanged) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": type(event).__name__, "identity": event.identity}
    if isinstance(event, TransactionChanged):
        tx = event.transaction
        data.update(
            at=(tx.updated_at or datetime.datetime.now(datetime.UTC)).isoformat(),
            version=tx.version.value,
            transaction_id=tx.transaction_id,
            evse_id=tx.evse_id,
            energy_wh=tx.energy_wh,
            stopped_reason=tx.stopped_reason,
            events=len(tx.events),
            missing_seq_nos=list(tx.missing_seq_nos),
        )
        return data
    data.update(at=event.at.isoformat(), version=event.version.value)
    if isinstance(event, Connected | Accepted):
        data["resumed"] = event.resumed
    elif isinstance(event, BootAnswered):
        data["status"] = event.status.value
    else:
        data["reason"] = event.reason.value
    return data


def _parse_event(payload: str) -> ClusterEvent:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise TypeError("an event is a JSON object")
    node, kind, identity = str(data.pop("node")), str(data.pop("kind")), str(data.pop("identity"))
    at = datetime.datetime.fromisoformat(str(data.pop("at")))
    return ClusterEvent(node=node, kind=kind, identity=identity, at=at, data=data)
