"""Scale-out with real parts: a PostgreSQL server, three ``ocpp-trio serve`` nodes sharing it,
HAProxy in front of them with the repository's ``deploy/haproxy.cfg``, and the project's
simulator (``ocpp-trio simulate``) as the stations.

Everything runs on loopback ports of this machine, started and stopped by the fixtures; each test
is bounded in time and stops its processes by itself.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import attrs
import psycopg
import pytest
import trio
from _cluster import (
    free_port,
    haproxy_bin,
    haproxy_command,
    http_json,
    node_command,
    simulate_command,
)
from interop.harness import RunningProcess, run_process

pytestmark = pytest.mark.slow

#: the bound of every wait of these tests (seconds); never reached when all is well
PATIENCE = 60.0


@attrs.define
class Node:
    name: str
    port: int
    admin: int
    process: RunningProcess

    async def health(self) -> dict[str, object]:
        status, body = await http_json(self.admin, "GET", "/health", limit=2.0)
        assert status == 200
        assert isinstance(body, dict)
        return body


@attrs.define
class Cluster:
    dsn: str
    front: int
    nodes: dict[str, Node]
    haproxy: RunningProcess

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.front}/ocpp"

    def owners(self) -> dict[str, tuple[str | None, int]]:
        with psycopg.connect(self.dsn) as db:
            rows = db.execute("SELECT identity, owner, epoch FROM stations").fetchall()
        return {identity: (owner, epoch) for identity, owner, epoch in rows}

    async def connected(self, nodes: list[Node] | None = None) -> dict[str, int]:
        """Stations connected per node (the nodes that answer)."""
        counts: dict[str, int] = {}
        for node in nodes if nodes is not None else list(self.nodes.values()):
            try:
                health = await node.health()
            except (OSError, trio.TooSlowError):
                continue
            stations = health["stations"]
            assert isinstance(stations, int)
            counts[node.name] = stations
        return counts


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds (at most :data:`PATIENCE` seconds)."""
    with trio.move_on_after(PATIENCE):
        while not await check():  # noqa: ASYNC110 - polling other processes
            await trio.sleep(0.2)
        return
    raise AssertionError(f"not within {PATIENCE} s: {what}")


@pytest.fixture
async def cluster(postgres_dsn: str) -> AsyncIterator[Cluster]:
    if haproxy_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is missing (.ci/run installs it)")
        pytest.skip("haproxy is not installed")
    async with AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for n in (1, 2, 3):
            name = f"node{n}"
            port, admin = free_port(), free_port()
            command = node_command(name, port, admin, postgres_dsn, "--log-level", "WARNING")
            process = await stack.enter_async_context(run_process(command))
            nodes[name] = Node(name, port, admin, process)
        for node in nodes.values():

            async def up(node: Node = node) -> bool:
                try:
                    await node.health()
                except (OSError, trio.TooSlowError):
                    assert node.process.returncode is None, "\n".join(node.process.stderr.lines)
                    return False
                return True

            await eventually(up, f"{node.name} answers /health")
        front = free_port()
        haproxy = await stack.enter_async_context(
            run_process(
                haproxy_command(
                    front, [(node.port, node.admin) for node in nodes.values()], free_port()
                )
            )
        )

        async def front_open() -> bool:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", front)
            except OSError:
                assert haproxy.returncode is None, "\n".join(haproxy.stderr.lines)
                return False
            await stream.aclose()
            return True

        await eventually(front_open, "HAProxy listens")
        yield Cluster(postgres_dsn, front, nodes, haproxy)


def summary_of(process: RunningProcess) -> dict[str, int]:
    lines = [line for line in process.stdout.lines if line.startswith("{")]
    assert lines, "\n".join(process.stderr.lines[-20:])
    summary: dict[str, int] = json.loads(lines[-1])
    return summary


async def test_haproxy_spreads_stations_and_rehomes_those_of_a_killed_node(
    cluster: Cluster,
) -> None:
    stations = 30
    command = simulate_command(
        cluster.url,
        stations,
        20,
        "--session-every",
        "1",
        "--session-length",
        "2",
        "--meter-interval",
        "0.5",
    )
    async with run_process(command) as simulator:

        async def all_connected() -> bool:
            return sum((await cluster.connected()).values()) == stations

        await eventually(all_connected, "every station connected")
        spread = await cluster.connected()
        # consistent hashing on the station id: every node serves some, each station one node
        assert all(spread[name] > 0 for name in cluster.nodes), spread
        owners = cluster.owners()
        assert len(owners) == stations
        for name, count in spread.items():
            assert sum(1 for owner, _ in owners.values() if owner == name) == count

        victim = cluster.nodes[max(spread, key=lambda name: spread[name])]
        moved = {identity for identity, (owner, _) in owners.items() if owner == victim.name}
        victim.process.process.send_signal(signal.SIGKILL)
        survivors = [node for node in cluster.nodes.values() if node is not victim]

        async def rehomed() -> bool:
            return sum((await cluster.connected(survivors)).values()) == stations

        await eventually(rehomed, "the killed node's stations connected elsewhere")
        after = cluster.owners()
        for identity in moved:
            owner, epoch = after[identity]
            assert owner in {node.name for node in survivors}
            assert epoch > owners[identity][1]  # claimed again: the dead node is fenced
        assert await simulator.wait() == 0
    summary = summary_of(simulator)
    assert summary["boots"] == stations  # resumed elsewhere without a BootNotification
    assert summary["connects"] >= stations + len(moved)
    assert summary["errors"] == 0
