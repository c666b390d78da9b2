"""Cluster benchmark: ocpp-trio nodes on one PostgreSQL server behind HAProxy.

Run by hand (never in the tests); see docs/scale-out.md for results::

    python scripts/bench_cluster.py                      # about 3 minutes
    python scripts/bench_cluster.py --stations 100 --duration 10 --rounds 2

It starts a PostgreSQL server of its own (``tests/helpers/cluster.py``: initdb in a temporary
directory, a free loopback port, ``fsync`` on) and HAProxy with ``deploy/haproxy.cfg``, then
measures:

1. **calls/s and latency for 1, 2 and 3 nodes**, on the same load: the load generator of
   ``scripts/bench_store.py`` (``--stations`` booted 2.0.1 stations, one CALL outstanding each,
   7 of 8 CALLs waiting for a store commit) connects through HAProxy; the unused node slots of
   the HAProxy configuration point to closed ports, so their checks fail.  Each node count gets a
   fresh database; the node counts are measured in interleaved rounds (``--rounds``) and the best
   round of each is shown, with its ratio to one node.  **Store commits per second** are the
   nodes' group commits (``/health``) during the load, summed over the nodes.
2. **re-homing**: three nodes serve ``--rehome-stations`` simulated stations
   (``ocpp-trio simulate``, reconnecting after 1 to 3 s); the node with the most stations is
   killed (SIGKILL), and the time until each of its stations is claimed by another node (its
   owner in the database) is measured from the kill.

Every process runs on this machine; all of them share its CPUs (the figures say how many).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL and HAProxy launchers of the tests

import psycopg  # noqa: E402
from helpers.cluster import (  # type: ignore[import-not-found]  # noqa: E402
    PostgresCluster,
    free_port,
    haproxy_command,
    node_command,
    simulate_command,
)

LOAD: Final = ROOT / "scripts" / "bench_store.py"


def health(admin: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=5) as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def wait_for(check: Any, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {limit} s: {what}")
        time.sleep(0.1)


@contextmanager
def running(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(command, cwd=ROOT, text=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@contextmanager
def cluster(
    dsn: str, count: int
) -> Iterator[tuple[int, list[tuple[str, int, subprocess.Popen[str]]]]]:
    """``count`` nodes (of the three HAProxy slots) and HAProxy; yields the front port and
    ``(name, admin port, process)`` per node."""
    slots = [(free_port(), free_port()) for _ in range(3)]
    nodes: list[tuple[str, int, subprocess.Popen[str]]] = []
    processes: list[subprocess.Popen[str]] = []
    try:
        for n in range(count):
            name = f"node{n + 1}"
            port, admin = slots[n]
            # the message rate off: each load station sends far faster than one in service
            command = node_command(
                name, port, admin, dsn, "--log-level", "WARNING", "--max-message-rate", "0"
            )
            process = subprocess.Popen(command, cwd=ROOT, text=True, stderr=subprocess.DEVNULL)
            processes.append(process)
            nodes.append((name, admin, process))
        for _name, admin, _process in nodes:
            wait_for(lambda admin=admin: health(admin)["status"] == "ok", "a node answers")
        front = free_port()
        haproxy = subprocess.Popen(
            haproxy_command(front, slots, free_port()),
            cwd=ROOT,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(haproxy)
        time.sleep(3.0)  # the checks mark the empty slots down
        yield front, nodes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def measure(postgres: PostgresCluster, count: int, args: argparse.Namespace) -> dict[str, Any]:
    dsn = postgres.create_database()
    try:
        with cluster(dsn, count) as (front, nodes):
            before = sum(health(admin)["store"]["commits"] for _, admin, _ in nodes)
            started = time.monotonic()
            load = [sys.executable, str(LOAD), "load", "--url", f"ws://127.0.0.1:{front}/ocpp"]
            load += ["--cpu", "-1", "--stations", str(args.stations)]
            load += ["--server-pid", str(nodes[0][2].pid), "--duration", str(args.duration)]
            load += ["--warmup", str(args.warmup)]
            done = subprocess.run(load, capture_output=True, text=True, check=True, cwd=ROOT)
            elapsed = time.monotonic() - started
            after = sum(health(admin)["store"]["commits"] for _, admin, _ in nodes)
            result: dict[str, Any] = json.loads(done.stdout)
            result["commits_per_s"] = (after - before) / elapsed
            result["per_node"] = {name: health(admin)["stations"] for name, admin, _ in nodes}
            return result
    finally:
        postgres.drop_database(dsn)


def rehome(postgres: PostgresCluster, args: argparse.Namespace) -> dict[str, Any]:
    dsn = postgres.create_database()
    try:
        with cluster(dsn, 3) as (front, nodes):
            stations = args.rehome_stations
            command = simulate_command(
                f"ws://127.0.0.1:{front}/ocpp",
                stations,
                120,
                "--session-every",
                "5",
                "--session-length",
                "10",
                "--meter-interval",
                "2",
            )
            with running(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                wait_for(
                    lambda: sum(health(a)["stations"] for _, a, _ in nodes) == stations,
                    "every simulated station connected",
                )
                time.sleep(2.0)
                with psycopg.connect(dsn, autocommit=True) as db:
                    rows = db.execute("SELECT identity, owner FROM stations").fetchall()
                    owners: dict[str, str] = {str(i): str(o) for i, o in rows}
                    counts = {name: 0 for name, _, _ in nodes}
                    for owner in owners.values():
                        counts[owner] += 1
                    victim = max(counts, key=lambda name: counts[name])
                    moved = {i for i, owner in owners.items() if owner == victim}
                    process = next(p for name, _, p in nodes if name == victim)
                    killed = time.monotonic()
                    process.send_signal(signal.SIGKILL)
                    times: dict[str, float] = {}
                    while len(times) < len(moved) and time.monotonic() - killed < 60:
                        now = time.monotonic() - killed
                        for identity, owner in db.execute(
                            "SELECT identity, owner FROM stations"
                        ).fetchall():
                            if identity in moved and identity not in times and owner != victim:
                                times[identity] = now
                        time.sleep(0.05)
            ordered = sorted(times.values())
            return {
                "stations": stations,
                "moved": len(moved),
                "rehomed": len(ordered),
                "median_s": ordered[len(ordered) // 2] if ordered else None,
                "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                if ordered
                else None,
                "max_s": ordered[-1] if ordered else None,
            }
    finally:
        postgres.drop_database(dsn)


def rate(result: dict[str, Any]) -> float:
    return float(result["calls"] / result["elapsed"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=150, help="load stations (150)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before (3)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure (1,2,3)")
    parser.add_argument(
        "--rehome-stations", type=int, default=300, help="stations of the re-homing run (300)"
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",")]
    postgres = PostgresCluster(fsync=True)
    postgres.start()
    try:
        results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        for round_no in range(args.rounds):
            for n in counts:
                result = measure(postgres, n, args)
                results[n].append(result)
                print(
                    f"round {round_no + 1}, {n} node(s): {rate(result):,.0f} calls/s, p99 "
                    f"{result['p99_ms']:.1f} ms, {result['commits_per_s']:,.0f} commits/s, "
                    f"stations per node {result['per_node']}",
                    file=sys.stderr,
                )
        moved = rehome(postgres, args)
    finally:
        postgres.stop()
    best = {n: max(results[n], key=rate) for n in counts}
    base = rate(best[counts[0]])
    print(f"CPUs: {os.cpu_count()}, load average {os.getloadavg()}")
    print("| nodes | calls/s | vs 1 node | p50 ms | p99 ms | errors | store commits/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        r = best[n]
        print(
            f"| {n} | {rate(r):,.0f} | {rate(r) / base:.2f}x | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {r['commits_per_s']:,.0f} |"
        )
    print(f"re-homing after kill -9: {json.dumps(moved)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
