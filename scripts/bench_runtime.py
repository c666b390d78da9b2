"""Runtime benchmark: CPU per station CALL through a CSMS's ``Station`` over a memory transport.

Run by hand (never in the tests)::

    python scripts/bench_runtime.py                     # this checkout
    python scripts/bench_runtime.py --tree A --tree B   # two checkouts, back to back

No socket and no WebSocket framing: a raw station end, served by a ``CSMS`` with the server
benchmark's typed handlers (``bench_server.ours_router``, every default on), sends
pre-serialised CALL frames of the server benchmark's mix (per 8 CALLs: 4 MeterValues of 10
sampled values, 2 TransactionEvent, 1 StatusNotification, 1 Heartbeat) one at a time and reads
each answer, so the figure is the cost of the CSMS per-call path (reader, supervisor, handler
runner, machines, call tally, answer, codec) plus two memory-channel hops.  Each measurement
runs in a fresh process; with several ``--tree`` the trees alternate ``--rounds`` times and the
median of each is reported, with the ratio of each tree to the first.  Run it with the
checkout's environment active (the trees are only put on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

SCRIPT: Final = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))


def measure(calls: int, warmup: int) -> float:
    """CPU µs per CALL in this process (the package is imported from ``sys.path``)."""
    import trio

    # the measured package first: bench_server puts its own checkout on sys.path
    import ocpp_trio
    from ocpp_trio import CSMS, Station, memory_transport_pair
    from ocpp_trio.csms.core import CSMSConfig
    from ocpp_trio.runtime.station import StationConfig

    assert Path(ocpp_trio.__file__).resolve().is_relative_to(Path.cwd()), ocpp_trio.__file__

    from bench_server import BOOT_PAYLOAD, ours_router, payloads

    mix = payloads(0)
    frames = [
        f'[2,"{n}","{action}",{payload}]'
        for n, (action, payload) in enumerate(mix * ((calls + warmup) // len(mix) + 1))
    ][: calls + warmup]
    result: list[float] = []

    async def main() -> None:
        ours, theirs = memory_transport_pair()
        # the message rate off: the one station sends as fast as it is answered
        config = CSMSConfig(station=StationConfig(max_message_rate=None))
        csms = CSMS(ours_router(), config=config)
        async with trio.open_nursery() as nursery:
            await nursery.start(csms.run)
            station: Station | None = await nursery.start(
                csms.serve_station, ours, "BENCH", "2.0.1"
            )
            assert station is not None
            await theirs.send_message(f'[2,"boot","BootNotification",{BOOT_PAYLOAD}]')
            reply = json.loads(await theirs.get_message())
            assert reply[2]["status"] == "Accepted", reply
            for n, frame in enumerate(frames):
                if n == warmup:
                    started = time.process_time()
                await theirs.send_message(frame)
                answer = await theirs.get_message()
                assert answer[1] == "3", answer
            result.append(time.process_time() - started)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result[0] / calls * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(f"{measure(args.calls, args.warmup):.2f}")
        return 0
    trees = [Path(t).resolve() for t in args.tree or [SCRIPT.parent.parent]]
    figures: dict[Path, list[float]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
            out = subprocess.run(
                [sys.executable, str(SCRIPT), "--child", "--calls", str(args.calls),
                 "--warmup", str(args.warmup)],
                env=env, check=False, capture_output=True, text=True, cwd=tree,
            )  # fmt: skip
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"{tree}: the measurement failed (exit {out.returncode})")
            figures[tree].append(float(out.stdout.split()[-1]))
    base = statistics.median(figures[trees[0]])
    for tree in trees:
        median = statistics.median(figures[tree])
        runs = " ".join(f"{f:.1f}" for f in figures[tree])
        print(f"{tree.name}: median {median:.1f} µs/call  ratio {median / base:.3f}  ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
