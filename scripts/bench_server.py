"""Server benchmark: ocpp-trio's CSMS against the ``ocpp`` package and two bare echo servers.

Run by hand (never in the tests); see docs/bench_server.md for results and how to read them::

    python scripts/bench_server.py                  # everything, a few minutes
    python scripts/bench_server.py --duration 5 --idle 500 --impls ours,echo

Servers (each in its own process, pinned to CPU 0):

* ``ours``: ``open_csms`` with typed handlers, full validation both ways (the defaults, but for
  the per-station message rate, which is off: each benchmark station sends far faster than
  one in service);
* ``ocpp``: the ``ocpp`` package (2.1.0) on ``websockets`` (asyncio), its default configuration
  (schema validation of requests and responses, run in a thread pool);
* ``ocpp-sync``: the same with ``ocpp.messages.ASYNC_VALIDATION = False`` (validation inline);
* ``echo``: a bare trio-websocket server echoing every message: one transport ceiling;
* ``wsproto-echo``: a bare wsproto-on-trio echo server (the layer ocpp-trio drives itself, with
  no timeouts, keepalive or locking): the other ceiling;
* ``transport-echo`` (diagnostic, not in the default set): ocpp-trio's own WebSocket server
  (``serve_ocpp_websocket``, every default on) with a handler that echoes: what our transport
  costs above bare wsproto, without the OCPP runtime.

The load generator is another process, pinned to CPU 1: ``websockets`` (asyncio, C-accelerated
framing) clients sending pre-serialised frames, reading replies with ``json.loads`` only.

Throughput: ``--stations`` (50) booted 2.0.1 stations, each with one CALL outstanding, loop over a
fixed mix (per 8 CALLs: 4 MeterValues of 10 sampled values, 2 TransactionEvent, 1
StatusNotification, 1 Heartbeat) for ``--warmup`` then ``--duration`` seconds; calls/s and
latencies are counted in the measured window only.  Server CPU comes from
``/proc/<pid>/stat`` (user + system, all threads) over the same window.

Memory: a fresh server, one warm-up station, then ``--idle`` (2,000) booted 2.0.1 stations
that stay idle; KB per station = server RSS delta / stations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import trio
    from websockets.asyncio.client import ClientConnection

    from ocpp_trio import Router

SCRIPT: Final = Path(__file__).resolve()
# run from a checkout without installing: the package is next to scripts/
sys.path.insert(0, str(SCRIPT.parent.parent))
IMPLS: Final = ("ours", "ocpp", "ocpp-sync", "echo", "wsproto-echo", "transport-echo")
#: the echo servers send the request back instead of answering it
ECHOES: Final = frozenset({"echo", "wsproto-echo", "transport-echo"})
SERVER_CPU: Final = 0
LOAD_CPU: Final = 1
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# -- helpers shared by every process -----------------------------------------------------------


def raise_nofile(wanted: int = 16384) -> None:
    """Raise the soft RLIMIT_NOFILE (as far as the hard limit allows) for many connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def pin(cpu: int | None) -> None:
    """Run this process on ``cpu`` only (when the machine has it); ``-1``: anywhere."""
    if cpu is None or cpu < 0 or not hasattr(os, "sched_setaffinity"):
        return
    # not the affinity this process inherited: the orchestrator pins itself to the load
    # generator's CPU before it starts the servers, and a server must still get its own
    if (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):  # e.g. a CPU outside this process's cpuset
            os.sched_setaffinity(0, {cpu})


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command: state is field 3, utime 14 and stime 15 (1-based in proc(5))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wire_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# -- the servers -------------------------------------------------------------------------------

#: set by ``server --gc-freeze``: freeze the garbage collector's view of the heap once listening
GC_FREEZE = False


def announce(port: int) -> None:
    """Tell the orchestrator the server listens on ``port`` (after ``gc.freeze()`` with
    ``--gc-freeze``: what ``ocpp-trio serve`` does once it is up)."""
    if GC_FREEZE:
        gc.freeze()
    print(f"PORT {port}", flush=True)


def ours_router() -> Router:
    """The handlers of ours: typed answers to the messages of the mix, Heartbeat built in."""
    from ocpp_trio import Router, Station
    from ocpp_trio.messages import v2_0_1

    router = Router()
    router.set_default_boot("Accepted", 300)  # Heartbeat: the runtime's built-in answer

    @router.on(v2_0_1.MeterValuesRequest)
    async def meter_values(
        station: Station, request: v2_0_1.MeterValuesRequest
    ) -> v2_0_1.MeterValuesResponse:
        return v2_0_1.MeterValuesResponse()

    @router.on(v2_0_1.StatusNotificationRequest)
    async def status_notification(
        station: Station, request: v2_0_1.StatusNotificationRequest
    ) -> v2_0_1.StatusNotificationResponse:
        return v2_0_1.StatusNotificationResponse()

    @router.on(v2_0_1.TransactionEventRequest)
    async def transaction_event(
        station: Station, request: v2_0_1.TransactionEventRequest
    ) -> v2_0_1.TransactionEventResponse:
        return v2_0_1.TransactionEventResponse()

    return router


def serve_ours(profile: str | None) -> None:
    import trio

    from ocpp_trio import open_csms
    from ocpp_trio.csms.core import CSMSConfig
    from ocpp_trio.runtime.station import StationConfig

    router = ours_router()
    config = CSMSConfig(station=StationConfig(max_message_rate=None))

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with open_csms(router, "127.0.0.1", 0, config=config) as csms:
                assert csms.server_info is not None
                announce(csms.server_info.port)
                async for _ in signals:
                    return

    if profile is None:
        trio.run(main)
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        trio.run(main)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


async def run_until_sigterm(start: Callable[[trio.Nursery], Awaitable[int]]) -> None:
    """Run a trio server started by ``start`` (which returns its port), print the port, and
    stop at SIGTERM."""
    import trio

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            announce(await start(nursery))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def serve_ocpp(sync_validation: bool) -> None:
    import ocpp.messages
    import websockets
    from ocpp.routing import on
    from ocpp.v201 import ChargePoint, call_result
    from websockets.asyncio.server import ServerConnection, serve

    if sync_validation:
        ocpp.messages.ASYNC_VALIDATION = False

    class BenchStation(ChargePoint):  # type: ignore[misc]
        @on("BootNotification")  # type: ignore[untyped-decorator]
        async def on_boot(self, **kwargs: object) -> object:
            return call_result.BootNotification(
                current_time=wire_now(), interval=300, status="Accepted"
            )

        @on("Heartbeat")  # type: ignore[untyped-decorator]
        async def on_heartbeat(self, **kwargs: object) -> object:
            return call_result.Heartbeat(current_time=wire_now())

        @on("StatusNotification")  # type: ignore[untyped-decorator]
        async def on_status(self, **kwargs: object) -> object:
            return call_result.StatusNotification()

        @on("MeterValues")  # type: ignore[untyped-decorator]
        async def on_meter_values(self, **kwargs: object) -> object:
            return call_result.MeterValues()

        @on("TransactionEvent")  # type: ignore[untyped-decorator]
        async def on_transaction_event(self, **kwargs: object) -> object:
            return call_result.TransactionEvent()

    async def handler(connection: ServerConnection) -> None:
        path = connection.request.path if connection.request is not None else "/unknown"
        station = BenchStation(path.rstrip("/").rpartition("/")[2], connection)
        with contextlib.suppress(websockets.ConnectionClosed):
            await station.start()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:  # type: ignore[list-item]
            port = next(iter(server.sockets)).getsockname()[1]
            announce(port)
            await stop.wait()

    asyncio.run(main())


def serve_echo() -> None:
    import trio
    import trio_websocket

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp2.0.1")
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                await ws.send_message(await ws.get_message())

    async def start(nursery: trio.Nursery) -> int:
        server: Any = await nursery.start(
            trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
        )
        return int(server.port)

    trio.run(run_until_sigterm, start)


def serve_wsproto_echo() -> None:
    """Echo every message with wsproto driven over trio streams, nothing else: one task per
    connection, one read and one write per message, no timeouts, keepalive or send lock."""
    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

    async def handle(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        parts: list[str] = []
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            text = "".join(parts)
                            parts.clear()
                            await stream.send_all(ws.send(TextMessage(data=text)))
                    elif isinstance(event, Ping):
                        await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, Request):
                        accept = AcceptConnection(subprotocol="ocpp2.0.1")
                        await stream.send_all(ws.send(accept))
                    elif isinstance(event, CloseConnection):
                        with contextlib.suppress(Exception):
                            await stream.send_all(ws.send(event.response()))
                        return

    async def start(nursery: trio.Nursery) -> int:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        return int(listeners[0].socket.getsockname()[1])

    trio.run(run_until_sigterm, start)


def serve_transport_echo() -> None:
    """ocpp-trio's WebSocket server (every default on) with a handler that echoes."""
    import trio

    from ocpp_trio import StationConnection, serve_ocpp_websocket
    from ocpp_trio.transport.server import ServerInfo

    async def echo(station: StationConnection) -> None:
        transport = station.transport
        while True:
            message = await transport.get_message()
            assert isinstance(message, str)
            await transport.send_message(message)

    async def start(nursery: trio.Nursery) -> int:
        info: ServerInfo = await nursery.start(serve_ocpp_websocket, echo, "127.0.0.1", 0)
        return info.port

    trio.run(run_until_sigterm, start)


# -- the load generator ------------------------------------------------------------------------


def payloads(station: int) -> list[tuple[str, str]]:
    """The CALL mix of one station: (action, payload JSON) pairs, in order."""
    ts = wire_now()
    measurands = [
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
    sampled = []
    for i, (measurand, phase, unit) in enumerate(measurands):
        value: dict[str, Any] = {
            "value": 1000.5 + i,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
        }
        if phase is not None:
            value["phase"] = phase
        if unit is not None:
            value["unitOfMeasure"] = {"unit": unit}
        sampled.append(value)
    meter_values = {"evseId": 1, "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}
    transaction_event = {
        "eventType": "Updated",
        "timestamp": ts,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": f"TX-{station}", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": ts, "sampledValue": sampled[:2]}],
    }
    status = {"timestamp": ts, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
    mv = ("MeterValues", json.dumps(meter_values, separators=(",", ":")))
    te = ("TransactionEvent", json.dumps(transaction_event, separators=(",", ":")))
    sn = ("StatusNotification", json.dumps(status, separators=(",", ":")))
    hb = ("Heartbeat", "{}")
    return [mv, te, mv, hb, mv, te, mv, sn]


BOOT_PAYLOAD: Final = json.dumps(
    {"reason": "PowerUp", "chargingStation": {"model": "Bench", "vendorName": "ocpp-trio"}},
    separators=(",", ":"),
)


class LoadState:
    def __init__(self) -> None:
        self.measuring = False
        self.stop = False
        self.calls = 0
        self.errors = 0
        self.latencies: list[float] = []


async def exchange(
    ws: ClientConnection, message_id: str, action: str, payload: str, echo: bool
) -> bool:
    """One CALL and its reply; ``False`` when the reply is not a CALLRESULT (or the echo)."""
    await ws.send(f'[2,"{message_id}","{action}",{payload}]')
    reply = json.loads(await ws.recv())
    if reply[1] != message_id:
        raise RuntimeError(f"reply to {reply[1]!r} while waiting for {message_id!r}")
    return bool(reply[0] == (2 if echo else 3))


async def boot(ws: ClientConnection, identity: str, echo: bool) -> None:
    if not await exchange(ws, f"{identity}-boot", "BootNotification", BOOT_PAYLOAD, echo):
        raise RuntimeError(f"{identity}: BootNotification failed")


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    state = LoadState()
    mix = [payloads(i) for i in range(args.stations)]
    booted = 0
    all_booted = asyncio.Event()

    async def station(index: int) -> None:
        nonlocal booted
        identity = f"LOAD{index:05d}"
        async with connect(
            f"{args.url}/{identity}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            compression="deflate" if args.deflate else None,
            ping_interval=None,
            max_size=None,
        ) as ws:
            await boot(ws, identity, args.echo)
            booted += 1
            if booted == args.stations:
                all_booted.set()
            await all_booted.wait()
            calls = mix[index]
            n = 0
            while not state.stop:
                action, payload = calls[n % len(calls)]
                n += 1
                started = time.perf_counter()
                ok = await exchange(ws, f"{index}.{n}", action, payload, args.echo)
                if state.measuring:
                    state.latencies.append(time.perf_counter() - started)
                    state.calls += 1
                    state.errors += not ok

    async def clock() -> dict[str, float]:
        await all_booted.wait()
        await asyncio.sleep(args.warmup)
        cpu0, own0, t0 = process_cpu_seconds(args.server_pid), os.times(), time.perf_counter()
        state.measuring = True
        await asyncio.sleep(args.duration)
        state.measuring = False
        cpu1, own1, t1 = process_cpu_seconds(args.server_pid), os.times(), time.perf_counter()
        state.stop = True
        return {
            "elapsed": t1 - t0,
            "server_cpu": cpu1 - cpu0,
            "loadgen_cpu": (own1.user + own1.system) - (own0.user + own0.system),
        }

    clock_task = asyncio.create_task(clock())
    await asyncio.gather(*(station(i) for i in range(args.stations)))
    window = await clock_task
    latencies = sorted(state.latencies)

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    return {
        **window,
        "calls": state.calls,
        "errors": state.errors,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
    }


async def run_idle(args: argparse.Namespace) -> None:
    """Warm up with one station, wait for "go", connect and boot the idle stations, report
    READY, and hold them until stdin closes."""
    from websockets.asyncio.client import connect

    async with contextlib.AsyncExitStack() as stack:

        async def open_station(identity: str) -> ClientConnection:
            ws = await stack.enter_async_context(
                connect(
                    f"{args.url}/{identity}",
                    subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                    compression="deflate" if args.deflate else None,
                    ping_interval=None,
                    open_timeout=60,
                )
            )
            await boot(ws, identity, args.echo)
            return ws

        warm = await open_station("WARM00000")
        for n, (action, payload) in enumerate(payloads(0)):
            await exchange(warm, f"warm.{n}", action, payload, args.echo)
        print("WARM", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        gate = asyncio.Semaphore(64)  # stay well inside the servers' listen backlogs

        async def one(index: int) -> None:
            async with gate:
                await open_station(f"IDLE{index:05d}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.stations)))
        print(f"READY {time.perf_counter() - started:.2f}", flush=True)
        await asyncio.to_thread(sys.stdin.read)


# -- the orchestrator --------------------------------------------------------------------------


class Server:
    """A server subprocess, pinned to ``cpu``."""

    def __init__(
        self, impl: str, cpu: int, profile: str | None = None, gc_freeze: bool = False
    ) -> None:
        command = [sys.executable, str(SCRIPT), "server", impl, "--cpu", str(cpu)]
        if gc_freeze:
            command.append("--gc-freeze")
        if profile is not None:
            command += ["--profile", profile]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"{impl} server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def load_command(
    mode: str, server: Server, stations: int, echo: bool, cpu: int, deflate: bool = False
) -> list[str]:
    command = [sys.executable, str(SCRIPT), mode, "--url", server.url, "--cpu", str(cpu)]
    command += ["--stations", str(stations), "--server-pid", str(server.pid)]
    return command + (["--echo"] if echo else []) + (["--deflate"] if deflate else [])


def measure_throughput(
    impl: str, args: argparse.Namespace, profile: str | None = None
) -> dict[str, Any]:
    server = Server(impl, args.server_cpu, profile, args.gc_freeze)
    try:
        command = load_command(
            "load", server, args.stations, impl in ECHOES, args.load_cpu, args.deflate
        )
        command += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result
    finally:
        server.stop()


def measure_idle(impl: str, args: argparse.Namespace) -> dict[str, float]:
    server = Server(impl, args.server_cpu, gc_freeze=args.gc_freeze)
    try:
        command = load_command(
            "idle", server, args.idle, impl in ECHOES, args.load_cpu, args.deflate
        )
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as load:
            assert load.stdin is not None
            assert load.stdout is not None
            if load.stdout.readline().strip() != "WARM":
                raise RuntimeError(f"{impl}: idle load generator failed to warm up")
            time.sleep(1.0)
            before = process_rss_kb(server.pid)
            load.stdin.write("go\n")
            load.stdin.flush()
            ready = load.stdout.readline().split()
            if not ready or ready[0] != "READY":
                raise RuntimeError(f"{impl}: idle stations did not connect")
            time.sleep(2.0)
            after = process_rss_kb(server.pid)
            load.stdin.close()
            load.wait(timeout=60)
        return {
            "rss_before_kb": before,
            "rss_after_kb": after,
            "kb_per_station": (after - before) / args.idle,
            "connect_s": float(ready[1]),
        }
    finally:
        server.stop()


def _component(file: str, function: str) -> str:
    """The part of the stack a profiled function belongs to (for the breakdown)."""
    if file == "~":
        if "socket" in function and ("send" in function or "recv" in function):
            return "kernel: socket send/recv"
        return "kernel: epoll" if "epoll" in function else "C builtins (other)"
    parts = file.replace("\\", "/").split("/")
    if "ocpp_trio" in parts:
        if "messages" in parts:
            return "ocpp_trio.messages (validation, structuring, encoding)"
        return f"ocpp_trio.{parts[-1].removesuffix('.py')}"
    for package in ("trio_websocket", "wsproto", "h11", "outcome", "json", "contextlib.py"):
        if package in parts:
            return package.removesuffix(".py")
    if "trio" in parts:
        return "trio core (scheduling, cancel scopes)" if "_core" in parts else "trio (io, sync)"
    return "other"


def print_profile(path: str, limit: int = 25) -> None:
    import pstats

    stats = pstats.Stats(path)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    components: dict[str, float] = {}
    for (file, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        key = _component(file, function)
        components[key] = components.get(key, 0.0) + tottime
    total = sum(components.values())
    print("own time by component:")
    for key, seconds in sorted(components.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / total:6.1%}  {key}")
    stats.sort_stats("tottime").print_stats(limit)


def orchestrate(args: argparse.Namespace) -> int:
    if args.no_pin:
        args.server_cpu = args.load_cpu = -1
    else:
        args.server_cpu, args.load_cpu = SERVER_CPU, LOAD_CPU
    pin(args.load_cpu)
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        raise SystemExit(f"unknown implementation(s): {', '.join(sorted(unknown))}")
    placement = (
        "no CPU pinning"
        if args.no_pin
        else f"servers pinned to CPU {SERVER_CPU}, load generator to CPU {LOAD_CPU}"
    )
    freeze = "on" if args.gc_freeze else "off"
    print(
        f"# {os.cpu_count()} CPUs; {placement}; {args.stations} stations, {args.warmup:g} s "
        f"warm-up + {args.duration:g} s, best of {args.rounds} round(s); {args.idle} idle "
        f"stations; Python {sys.version.split()[0]}; gc.freeze() {freeze}; "
        f"load average {_loadavg()}",
        flush=True,
    )
    rounds: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for round_no in range(1, args.rounds + 1):
        for impl in impls:  # interleaved, so that a burst of contention hits every server
            result = measure_throughput(impl, args)
            rounds[impl].append(result)
            print(
                f"# round {round_no} {impl}: {_rate(result):,.0f} calls/s, "
                f"{_cpu_us(result):.0f} µs/call, {json.dumps(result)}",
                flush=True,
            )
    results = {impl: max(runs, key=_rate) for impl, runs in rounds.items()}
    for impl in impls:
        if args.idle:
            idle = measure_idle(impl, args)
            print(f"# idle {impl}: {json.dumps(idle)}", flush=True)
            results[impl] = {**results[impl], **idle}
    print(f"# load average at the end {_loadavg()}")
    print()
    print(
        "| server | calls/s | server CPU µs/call | server CPU use | load-gen CPU use "
        "| p50 ms | p99 ms | errors | KB/idle station |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for impl, r in results.items():
        kb = f"{r['kb_per_station']:.1f}" if "kb_per_station" in r else "-"
        print(
            f"| {impl} | {_rate(r):,.0f} | {_cpu_us(r):.0f} "
            f"| {r['server_cpu'] / r['elapsed']:.0%} | {r['loadgen_cpu'] / r['elapsed']:.0%} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {kb} |"
        )
    if "ours" in results:
        ours = results["ours"]
        print()
        for other, r in results.items():
            if other != "ours":
                print(
                    f"ours / {other}: throughput {_rate(ours) / _rate(r):.2f}x, "
                    f"server CPU per call {_cpu_us(ours) / _cpu_us(r):.2f}x"
                )
    if args.profile:
        path = args.profile
        measure_throughput("ours", args, profile=path)
        print(f"\n# cProfile of the ours server under the same load ({path})")
        print_profile(path)
    return 0


def _rate(result: dict[str, Any]) -> float:
    return float(result["calls"] / result["elapsed"])


def _cpu_us(result: dict[str, Any]) -> float:
    return float(result["server_cpu"] / result["calls"] * 1e6)


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode")
    parser.add_argument(
        "--impls", default=",".join(IMPLS[:-1]), help=f"comma-separated, of {', '.join(IMPLS)}"
    )
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--idle", type=int, default=2000, help="idle stations (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="best of N interleaved runs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--profile", metavar="FILE", help="also profile ours under load")
    parser.add_argument(
        "--deflate", action="store_true", help="stations offer permessage-deflate (default: not)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="every server calls gc.freeze() once listening (as ocpp-trio serve does)",
    )

    server = modes.add_parser("server", help="(internal) run one server")
    server.add_argument("impl", choices=IMPLS)
    server.add_argument("--cpu", type=int)
    server.add_argument("--profile")
    server.add_argument("--gc-freeze", action="store_true")

    for mode in ("load", "idle"):
        sub = modes.add_parser(mode, help=f"(internal) the {mode} generator")
        sub.add_argument("--url", required=True)
        sub.add_argument("--cpu", type=int)
        sub.add_argument("--stations", type=int, required=True)
        sub.add_argument("--server-pid", type=int, required=True)
        sub.add_argument("--duration", type=float, default=10.0)
        sub.add_argument("--warmup", type=float, default=2.0)
        sub.add_argument("--echo", action="store_true")
        sub.add_argument("--deflate", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_nofile()
    if args.mode is None:
        return orchestrate(args)
    pin(args.cpu)
    if args.mode == "server":
        global GC_FREEZE
        GC_FREEZE = args.gc_freeze
        if args.impl == "ours":
            serve_ours(args.profile)
        elif args.impl in ("ocpp", "ocpp-sync"):
            serve_ocpp(sync_validation=args.impl == "ocpp-sync")
        elif args.impl == "echo":
            serve_echo()
        elif args.impl == "wsproto-echo":
            serve_wsproto_echo()
        else:
            serve_transport_echo()
    elif args.mode == "load":
        print(json.dumps(asyncio.run(run_load(args))))
    else:
        asyncio.run(run_idle(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
