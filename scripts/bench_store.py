"""Store benchmark: the CSMS's throughput on a persisted message mix, per store, side by side.

Run by hand (never in the tests); see docs/recovery.md for results::

    python scripts/bench_store.py                          # memory, sqlite, sqlite-normal, none
    python scripts/bench_store.py --stores memory,sqlite --duration 5 --rounds 3

Servers (each in its own process, pinned to CPU 0): ``open_csms`` with the library's default
answers and ``CSMSConfig(store=...)``:

* ``none``: no store at all (the reference the store layer is measured against);
* ``memory``: :class:`~ocpp_trio.store.memory.MemoryStore` (the whole write-ahead path, group
  commit included, without a disk);
* ``sqlite``: the SQLite store, ``synchronous=FULL`` (every commit synced to disk: the default);
* ``sqlite-normal``: the SQLite store, ``synchronous=NORMAL`` (synced at checkpoints).

The load generator (another process, pinned to CPU 1) runs ``--stations`` (50) booted 2.0.1
stations, one CALL outstanding each, each with one transaction, looping over a mix in which 7 of
8 CALLs change stored state and so wait for a commit before their answer: per 8 CALLs,
5 TransactionEvent(Updated) with 10 sampled values and a rising seqNo, 2 StatusNotification,
1 Heartbeat.  Calls/s and latency count the ``--duration`` window after ``--warmup``; server CPU
is read from ``/proc``.  The stores are measured in interleaved rounds (``--rounds``), so a burst
of contention on a shared machine hits all of them; the table shows each store's best round and
the ratios to ``memory``.  The server's store-writer counters (commits, writes per commit) are
printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from ocpp_trio.store.base import Store

SCRIPT: Final = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(SCRIPT.parent))

from bench_server import pin, process_cpu_seconds  # noqa: E402 - after the path is set

STORES: Final = ("memory", "sqlite", "sqlite-normal", "none")


def wire_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# -- the server --------------------------------------------------------------------------------


@asynccontextmanager
async def open_store(kind: str, db: str) -> AsyncIterator[Store | None]:
    from ocpp_trio.store.memory import MemoryStore
    from ocpp_trio.store.sqlite import open_sqlite_store

    if kind == "none":
        yield None
    elif kind == "memory":
        yield MemoryStore()
    else:
        synchronous = "NORMAL" if kind == "sqlite-normal" else "FULL"
        async with open_sqlite_store(db, synchronous=synchronous) as store:
            yield store


def serve(kind: str, db: str) -> None:
    import attrs
    import trio

    from ocpp_trio import Router
    from ocpp_trio.csms.core import CSMSConfig, open_csms
    from ocpp_trio.runtime.station import StationConfig

    router = Router()
    router.set_default_boot("Accepted", 300)  # the rest: the library's default answers

    def config(store: Store | None) -> CSMSConfig:
        # the message rate off: each benchmark station sends far faster than one in service
        return CSMSConfig(store=store, station=StationConfig(max_message_rate=None))

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with (
                open_store(kind, db) as store,
                open_csms(router, "127.0.0.1", 0, config=config(store)) as csms,
            ):
                assert csms.server_info is not None
                print(f"PORT {csms.server_info.port}", flush=True)
                async for _ in signals:
                    stats = csms.statistics().store
                    print(json.dumps({} if stats is None else attrs.asdict(stats)), flush=True)
                    return

    trio.run(main)


# -- the load generator ------------------------------------------------------------------------

_MEASURANDS: Final = [
    ("Energy.Active.Import.Register", None, "Wh"),
    ("Power.Active.Import", None, "W"),
    ("Current.Import", "L1", "A"),
    ("Current.Import", "L2", "A"),
    ("Current.Import", "L3", "A"),
    ("Voltage", "L1-N", "V"),
    ("Voltage", "L2-N", "V"),
    ("Voltage", "L3-N", "V"),
    ("SoC", None, "Percent"),
    ("Frequency", None, None),
]


def sampled(offset: float) -> list[dict[str, Any]]:
    values = []
    for i, (measurand, phase, unit) in enumerate(_MEASURANDS):
        value: dict[str, Any] = {
            "value": offset + i,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
        }
        if phase is not None:
            value["phase"] = phase
        if unit is not None:
            value["unitOfMeasure"] = {"unit": unit}
        values.append(value)
    return values


def transaction_event(station: int, kind: str, seq: int) -> str:
    ts = wire_now()
    payload = {
        "eventType": kind,
        "timestamp": ts,
        "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": f"TX-{station}", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": ts, "sampledValue": sampled(1000.0 + seq)}],
    }
    return json.dumps(payload, separators=(",", ":"))


def status_notification() -> str:
    payload = {
        "timestamp": wire_now(),
        "connectorStatus": "Occupied",
        "evseId": 1,
        "connectorId": 1,
    }
    return json.dumps(payload, separators=(",", ":"))


BOOT: Final = json.dumps(
    {"reason": "PowerUp", "chargingStation": {"model": "Bench", "vendorName": "ocpp-trio"}},
    separators=(",", ":"),
)
#: the mix, per 8 CALLs (T: TransactionEvent, S: StatusNotification, H: Heartbeat)
MIX: Final = "TTSTHTST"


async def exchange(ws: ClientConnection, message_id: str, action: str, payload: str) -> bool:
    await ws.send(f'[2,"{message_id}","{action}",{payload}]')
    reply = json.loads(await ws.recv())
    if reply[1] != message_id:
        raise RuntimeError(f"reply to {reply[1]!r} while waiting for {message_id!r}")
    return bool(reply[0] == 3)


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    measuring = False
    stop = False
    calls = errors = 0
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def station(index: int) -> None:
        nonlocal ready, calls, errors
        identity = f"STORE{index:05d}-{os.getpid()}"
        async with connect(
            f"{args.url}/{identity}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
            max_size=None,
        ) as ws:
            if not await exchange(ws, "boot", "BootNotification", BOOT):
                raise RuntimeError(f"{identity}: BootNotification failed")
            if not await exchange(
                ws, "start", "TransactionEvent", transaction_event(index, "Started", 0)
            ):
                raise RuntimeError(f"{identity}: the transaction did not start")
            ready += 1
            if ready == args.stations:
                all_ready.set()
            await all_ready.wait()
            n = seq = 0
            while not stop:
                kind = MIX[n % len(MIX)]
                n += 1
                if kind == "T":
                    seq += 1
                    action, payload = "TransactionEvent", transaction_event(index, "Updated", seq)
                elif kind == "S":
                    action, payload = "StatusNotification", status_notification()
                else:
                    action, payload = "Heartbeat", "{}"
                started = time.perf_counter()
                ok = await exchange(ws, f"{index}.{n}", action, payload)
                if measuring:
                    latencies.append(time.perf_counter() - started)
                    calls += 1
                    errors += not ok

    async def clock() -> dict[str, float]:
        nonlocal measuring, stop
        await all_ready.wait()
        await asyncio.sleep(args.warmup)
        cpu0, t0 = process_cpu_seconds(args.server_pid), time.perf_counter()
        measuring = True
        await asyncio.sleep(args.duration)
        measuring = False
        cpu1, t1 = process_cpu_seconds(args.server_pid), time.perf_counter()
        stop = True
        return {"elapsed": t1 - t0, "server_cpu": cpu1 - cpu0}

    clock_task = asyncio.create_task(clock())
    await asyncio.gather(*(station(i) for i in range(args.stations)))
    window = await clock_task
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    return {
        **window,
        "calls": calls,
        "errors": errors,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
    }


# -- the orchestrator --------------------------------------------------------------------------


def measure(kind: str, args: argparse.Namespace, tmp: str, round_no: int) -> dict[str, Any]:
    db = os.path.join(tmp, f"{kind}-{round_no}.db")
    command = [
        sys.executable,
        str(SCRIPT),
        "server",
        kind,
        "--db",
        db,
        "--cpu",
        str(args.server_cpu),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        load = [sys.executable, str(SCRIPT), "load", "--url", f"ws://127.0.0.1:{line.split()[1]}"]
        load += ["--cpu", str(args.load_cpu), "--stations", str(args.stations)]
        load += ["--server-pid", str(server.pid), "--duration", str(args.duration)]
        load += ["--warmup", str(args.warmup)]
        done = subprocess.run(load, capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        server.send_signal(signal.SIGTERM)
        result["store"] = json.loads(server.stdout.readline() or "{}")
        server.wait(timeout=30)
        return result
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def rate(r: dict[str, Any]) -> float:
    return float(r["calls"] / r["elapsed"])


def cpu_us(r: dict[str, Any]) -> float:
    return float(r["server_cpu"] / r["calls"] * 1e6)


def orchestrate(args: argparse.Namespace) -> int:
    args.server_cpu, args.load_cpu = (-1, -1) if args.no_pin else (0, 1)
    pin(args.load_cpu)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - set(STORES)
    if unknown:
        raise SystemExit(f"unknown store(s): {', '.join(sorted(unknown))}")
    print(
        f"# {os.cpu_count()} CPUs; {args.stations} stations, mix {MIX} (7/8 persisted), "
        f"{args.warmup:g} s warm-up + {args.duration:g} s, best of {args.rounds} interleaved "
        f"round(s); Python {sys.version.split()[0]}; load average {loadavg()}",
        flush=True,
    )
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in stores}
    with tempfile.TemporaryDirectory(prefix="ocpp-trio-bench-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for kind in stores:
                result = measure(kind, args, tmp, round_no)
                rounds[kind].append(result)
                print(
                    f"# round {round_no} {kind}: {rate(result):,.0f} calls/s, "
                    f"{cpu_us(result):.0f} µs/call, {json.dumps(result)}",
                    flush=True,
                )
    best = {kind: max(runs, key=rate) for kind, runs in rounds.items()}
    print(f"# load average at the end {loadavg()}\n")
    print(
        "| store | calls/s | vs memory | server CPU µs/call | p50 ms | p99 ms | errors "
        "| writes/commit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    reference = best.get("memory")
    for kind, r in best.items():
        ratio = f"{rate(r) / rate(reference):.2f}x" if reference else "-"
        store = r.get("store") or {}
        per_commit = f"{store['writes'] / store['commits']:.1f}" if store.get("commits") else "-"
        print(
            f"| {kind} | {rate(r):,.0f} | {ratio} | {cpu_us(r):.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {per_commit} |"
        )
    if reference:
        print()
        for kind in stores:
            if kind != "memory":
                ratios = [
                    rate(a) / rate(b) for a, b in zip(rounds[kind], rounds["memory"], strict=True)
                ]
                print(
                    f"{kind} / memory per round: "
                    + ", ".join(f"{x:.2f}x" for x in ratios)
                    + f" (best rounds {rate(best[kind]) / rate(reference):.2f}x)"
                )
    return 0


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated stores")
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    server = modes.add_parser("server", help="(internal) run one server")
    server.add_argument("kind", choices=STORES)
    server.add_argument("--db", required=True)
    server.add_argument("--cpu", type=int)
    load = modes.add_parser("load", help="(internal) the load generator")
    load.add_argument("--url", required=True)
    load.add_argument("--cpu", type=int)
    load.add_argument("--stations", type=int, required=True)
    load.add_argument("--server-pid", type=int, required=True)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--warmup", type=float, default=2.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (hard == resource.RLIM_INFINITY and soft < 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    if args.mode is None:
        return orchestrate(args)
    pin(args.cpu)
    if args.mode == "server":
        serve(args.kind, args.db)
    else:
        print(json.dumps(asyncio.run(run_load(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
