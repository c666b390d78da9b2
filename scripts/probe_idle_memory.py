"""Where the memory of an idle booted station goes: a tracemalloc diff and a gc census.

Run by hand (never in the tests)::

    python scripts/probe_idle_memory.py 1000

Runs the benchmark's CSMS (``open_csms`` with the bench handlers) in this process, lets the
idle load generator of ``scripts/bench_server.py`` connect and boot N 2.0.1 stations that stay
idle, and prints the allocation growth per station (``tracemalloc``, by source line) and the
growth in live objects per station (``gc``), by type.  ``tracemalloc`` counts Python
allocations only, so its total differs from the RSS figure of ``bench_server.py``.
"""

from __future__ import annotations

import collections
import gc
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "scripts"))

from bench_server import ours_router  # noqa: E402

from ocpp_trio import open_csms  # noqa: E402


def census() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def probe(stations: int, top: int) -> None:
    async with open_csms(ours_router(), "127.0.0.1", 0) as csms:
        assert csms.server_info is not None
        url = f"ws://127.0.0.1:{csms.server_info.port}"
        command = [sys.executable, str(ROOT / "scripts" / "bench_server.py"), "idle"]
        command += ["--url", url, "--stations", str(stations), "--server-pid", str(os.getpid())]
        load = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert load.stdin is not None
        assert load.stdout is not None
        stdout = load.stdout
        pending = b""

        async def line() -> str:
            nonlocal pending
            while b"\n" not in pending:
                chunk = await stdout.receive_some()
                if not chunk:
                    raise RuntimeError("the load generator ended early")
                pending += chunk
            text, _, pending = pending.partition(b"\n")
            return text.decode()

        if await line() != "WARM":
            raise RuntimeError("the load generator did not warm up")
        await trio.sleep(0.5)
        gc.collect()
        tracemalloc.start(8)
        before, objects_before = tracemalloc.take_snapshot(), census()
        await load.stdin.send_all(b"go\n")
        print(await line(), flush=True)
        await trio.sleep(1.5)
        gc.collect()
        after, objects_after = tracemalloc.take_snapshot(), census()
        tracemalloc.stop()
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"tracemalloc: {total / stations / 1024:.2f} KB per station")
        for stat in stats[:top]:
            size, count = stat.size_diff / stations, stat.count_diff / stations
            print(f"{size:8.0f} B {count:6.2f}  {stat.traceback[0]}")
        print("live objects per station:")
        for name, count in (objects_after - objects_before).most_common(top):
            print(f"{count / stations:6.2f}  {name}")
        await load.stdin.aclose()
        await load.wait()


def main() -> int:
    stations = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    trio.run(probe, stations, top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
