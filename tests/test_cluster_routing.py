"""Routing between nodes, in one process: two CSMS objects on one PostgreSQL database, each a
node of the cluster, stations on memory transports.  ``csms.call`` on one node reaches a
station served by the other, and every command ends with an outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import psycopg
import pytest
import trio
from helpers.csms import boot, connect, csms_on

from ocpp_trio.csms.cluster import ClusterConfig, ClusterNode, serve_cluster
from ocpp_trio.csms.core import CSMS
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ErrorCode,
    StateError,
    StationOfflineError,
)
from ocpp_trio.messages import v2_0_1
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.station import Station
from ocpp_trio.store.postgres import PostgresStore, open_postgres_store
from ocpp_trio.testing import FakeStation

FAST = ClusterConfig(poll_interval=0.2, sweep_interval=0.2, grace=0.5)
RESET = v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE)


@attrs.define
class Side:
    csms: CSMS
    node: ClusterNode
    nursery: trio.Nursery
    cluster_scope: trio.CancelScope


@asynccontextmanager
async def node(dsn: str, name: str) -> AsyncIterator[Side]:
    async with (
        open_postgres_store(dsn, node=name, node_timeout=2.0, heartbeat_interval=0.2) as store,
        csms_on(store, transaction_ids=store.transaction_ids) as (csms, nursery),
    ):
        # a scope of its own, so that a test can stop the node's cluster part alone
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[ClusterNode]) -> None:
            with scope:
                await serve_cluster(csms, store, config=FAST, task_status=task_status)

        member: ClusterNode = await nursery.start(run)
        yield Side(csms, member, nursery, scope)
        scope.cancel()


@asynccontextmanager
async def two_nodes(dsn: str) -> AsyncIterator[tuple[Side, Side, Station, FakeStation]]:
    async with node(dsn, "a") as a, node(dsn, "b") as b:
        station, fake = await connect(b.csms, b.nursery)
        await boot(fake)
        yield a, b, station, fake


def open_commands(dsn: str) -> list[tuple[int, str | None]]:
    with psycopg.connect(dsn) as db:
        return db.execute("SELECT id, outcome FROM commands ORDER BY id").fetchall()


async def test_a_call_reaches_a_station_of_another_node(postgres_dsn: str) -> None:
    async with two_nodes(postgres_dsn) as (a, _b, _station, fake):
        assert a.csms.get_station("CS1") is None
        assert await a.node.version_of("CS1") is Version.V201

        async def station_answers() -> None:
            incoming = await fake.expect_call()
            assert incoming.action == "Reset"
            await fake.answer(
                incoming, v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(station_answers)
            response = await a.csms.call("CS1", RESET)
        assert isinstance(response, v2_0_1.ResetResponse)
        assert response.status is v2_0_1.ResetStatusEnumType.ACCEPTED
        assert a.node.statistics().routed == {"result": 1}
    assert open_commands(postgres_dsn) == [(1, "result")]


async def test_call_errors_timeouts_and_offline_stations(postgres_dsn: str) -> None:
    async with two_nodes(postgres_dsn) as (a, b, _station, fake):

        async def station_refuses() -> None:
            incoming = await fake.expect_call()
            await fake.transport.send_message(
                fake.rpc.answer_error(incoming.message_id, ErrorCode.NOT_SUPPORTED, "no resets")
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(station_refuses)
            with pytest.raises(CallError) as caught:
                await a.csms.call("CS1", RESET)
        assert (caught.value.code, caught.value.description) == (
            ErrorCode.NOT_SUPPORTED,
            "no resets",
        )
        # the station says nothing: a timeout, decided by the node that serves it
        with pytest.raises(CallTimeoutError):
            await a.csms.call("CS1", RESET, call_timeout=0.5)
        # never connected anywhere: offline at once
        with pytest.raises(StationOfflineError):
            await a.csms.call("NOBODY", RESET)
        # not accepted yet: refused by its state, nothing sent
        await connect(b.csms, b.nursery, identity="NEW")
        with pytest.raises(StateError, match="BootNotification"):
            await a.csms.call("NEW", RESET)
        assert a.node.statistics().routed == {
            "call_error": 1,
            "timeout": 1,
            "offline": 1,
            "refused": 1,
        }
    outcomes = [outcome for _, outcome in open_commands(postgres_dsn)]
    assert outcomes == ["call_error", "timeout", "offline", "refused"]


async def test_a_command_ends_even_when_the_node_running_it_dies(postgres_dsn: str) -> None:
    async with two_nodes(postgres_dsn) as (a, b, _station, fake):

        async def node_b_dies_mid_call() -> None:
            await fake.expect_call()  # b sent the CALL to the station...
            b.cluster_scope.cancel()  # ...and stops before the answer could be written

        async with trio.open_nursery() as nursery:
            nursery.start_soon(node_b_dies_mid_call)
            with pytest.raises(CallTimeoutError):
                await a.csms.call("CS1", RESET, call_timeout=0.5)
        # a command for a station whose owner is dead (no heartbeat) ends offline at once
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            db.execute("UPDATE stations SET owner = 'gone' WHERE identity = 'CS1'")
        with pytest.raises(StationOfflineError):
            await a.csms.call("CS1", RESET)
    assert [outcome for _, outcome in open_commands(postgres_dsn)] == ["timeout", "offline"]


async def test_commands_addressed_to_a_dead_node_are_swept(postgres_dsn: str) -> None:
    async with node(postgres_dsn, "a") as a:
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            db.execute(
                "INSERT INTO commands (identity, node, origin, version, action, payload, deadline)"
                " VALUES ('CS9', 'gone', 'gone', '2.0.1', 'Reset', '{}', now() + interval '1 h'),"
                " ('CS9', 'a', 'gone', '2.0.1', 'Reset', '{}', now() - interval '1 h')"
            )
            db.execute(
                "UPDATE commands SET taken_at = now() WHERE node = 'a'"
            )  # taken by a, never finished

        async def swept() -> bool:
            return all(outcome is not None for _, outcome in open_commands(postgres_dsn))

        with trio.fail_after(10):
            while not await swept():  # noqa: ASYNC110 - the sweep runs in the node
                await trio.sleep(0.1)
        assert a.node.statistics().swept == 2
    assert [outcome for _, outcome in open_commands(postgres_dsn)] == ["offline", "timeout"]


async def test_events_are_seen_on_every_node(postgres_dsn: str) -> None:
    async with node(postgres_dsn, "a") as a, node(postgres_dsn, "b") as b:
        async with a.node.subscribe() as events:
            station, fake = await connect(b.csms, b.nursery, identity="EV1")
            await boot(fake)
            seen = []
            with trio.fail_after(10):
                async for event in events:
                    seen.append(event)
                    if event.kind == "Accepted":
                        break
        assert [(e.node, e.kind, e.identity) for e in seen] == [
            ("b", "Connected", "EV1"),
            ("b", "BootAnswered", "EV1"),
            ("b", "Accepted", "EV1"),
        ]
        assert seen[1].data["status"] == "Accepted"
        assert seen[0].data == {"version": "2.0.1", "resumed": False}
        assert station.identity == "EV1"


async def test_a_station_that_disconnects_is_released_and_offline_at_once(
    postgres_dsn: str,
) -> None:
    async with two_nodes(postgres_dsn) as (a, b, station, fake):
        store = b.csms.config.store
        assert isinstance(store, PostgresStore)
        before = await store.owner("CS1")
        assert before is not None
        assert before.node == "b"
        await fake.transport.aclose()
        await station.wait_closed()
        with trio.fail_after(5):
            while (after := await store.owner("CS1")) is not None and after.node:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert after is not None
        assert after.epoch == before.epoch  # released, not claimed again
        # nobody serves it: a call from the other node is answered offline without a hop
        with pytest.raises(StationOfflineError):
            await a.csms.call("CS1", RESET)
        assert a.node.statistics().served == 0
        assert b.node.statistics().served == 0
        # it comes back to the other node: claimed there, its owner again
        station, fake = await connect(a.csms, a.nursery)
        await boot(fake)
        again = await store.owner("CS1")
        assert again is not None
        assert (again.node, again.epoch) == ("a", before.epoch + 1)
