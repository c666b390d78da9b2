"""Long-transaction benchmark: CPU per TransactionEvent as one transaction grows.

Run by hand (never in the tests); figures in docs/recovery.md ("Long transactions")::

    python scripts/bench_long_transaction.py                       # 6,000 events, each store
    python scripts/bench_long_transaction.py --events 3000 --stores none

One booted 2.0.1 station, served by a ``CSMS`` over a memory transport (no socket, no
WebSocket framing), sends one transaction's events one at a time: a Started event, then Updated
events with a rising seqNo, each with the server benchmark's ten sampled values, and reads each
answer.  The runtime's default answers, every default on.  For each thousand events the script
prints the CPU per event spent over that thousand: a flat line means an event costs the same
in a long transaction as in a short one.  Stores: ``none`` (in memory only), ``memory``
(``MemoryStore``), ``sqlite`` (a fresh file, ``synchronous=NORMAL``); each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ocpp_trio.store.base import Store

SCRIPT: Final = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(SCRIPT.parent))

from bench_server import BOOT_PAYLOAD, payloads, wire_now  # noqa: E402 - after the path is set

STORES: Final = ("none", "memory", "sqlite")
STEP: Final = 1000


def event(seq: int, sampled: list[Any]) -> str:
    """The CALL frame of the transaction's event ``seq`` (0: Started)."""
    payload = {
        "eventType": "Started" if seq == 0 else "Updated",
        "timestamp": wire_now(),
        "triggerReason": "CablePluggedIn" if seq == 0 else "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-LONG", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": wire_now(), "sampledValue": sampled}],
    }
    return f'[2,"{seq}","TransactionEvent",{json.dumps(payload, separators=(",", ":"))}]'


def measure(events: int, store_kind: str) -> list[float]:
    """CPU µs per event over each :data:`STEP` events, in this process."""
    import trio

    from ocpp_trio import CSMS, Router, memory_transport_pair
    from ocpp_trio.csms.core import CSMSConfig
    from ocpp_trio.runtime.station import StationConfig
    from ocpp_trio.store.memory import MemoryStore
    from ocpp_trio.store.sqlite import open_sqlite_store

    mix = payloads(0)
    sampled = json.loads(mix[0][1])["meterValue"][0]["sampledValue"]
    figures: list[float] = []

    async def run(store: Store | None) -> None:
        ours, theirs = memory_transport_pair()
        router = Router()
        router.set_default_boot("Accepted", 300)
        # the message rate off: the one station sends as fast as it is answered
        station = StationConfig(max_message_rate=None)
        csms = CSMS(router, config=CSMSConfig(store=store, station=station))
        async with trio.open_nursery() as nursery:
            await nursery.start(csms.run)
            await nursery.start(csms.serve_station, ours, "LONG", "2.0.1")
            await theirs.send_message(f'[2,"boot","BootNotification",{BOOT_PAYLOAD}]')
            await theirs.get_message()
            last = time.process_time()
            for seq in range(events):
                await theirs.send_message(event(seq, sampled))
                answer = await theirs.get_message()
                assert isinstance(answer, str), answer
                assert answer.startswith("[3,"), answer
                if (seq + 1) % STEP == 0:
                    now = time.process_time()
                    figures.append((now - last) / STEP * 1e6)
                    last = now
            nursery.cancel_scope.cancel()

    async def main() -> None:
        if store_kind == "none":
            await run(None)
        elif store_kind == "memory":
            await run(MemoryStore())
        else:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "long.db")
                async with open_sqlite_store(path, synchronous="NORMAL") as store:
                    await run(store)

    trio.run(main)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated")
    parser.add_argument("--child", metavar="STORE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.events, args.child)))
        return 0
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - set(STORES)
    if unknown:
        raise SystemExit(f"unknown store(s): {', '.join(sorted(unknown))}")
    rows: dict[str, list[float]] = {}
    for store in stores:
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "--child", store, "--events", str(args.events)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rows[store] = json.loads(out.stdout.splitlines()[-1])
    steps = max((len(r) for r in rows.values()), default=0)
    header = " | ".join(f"to {(i + 1) * STEP:,}" for i in range(steps))
    print(f"CPU µs per event, over each {STEP:,} events of one transaction\n")
    print(f"| store | {header} |")
    print("|---|" + "---:|" * steps)
    for store, figures in rows.items():
        print(f"| {store} | " + " | ".join(f"{f:,.0f}" for f in figures) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
