"""Benchmark the message codec against the ``ocpp`` package's schema validation.

Run by hand (never in the test suite)::

    python scripts/bench_codec.py

For each payload it prints microseconds per message, best of several rounds:

* **decode**: what the runtime does with a payload: parse the text with ocpp_trio's own parser
  (``ocpp_trio.protocol.jsonio.loads``: orjson, see that module), then ``decode_request`` (check +
  build);
* **encode**: ``encode(message)`` (with the re-check against the schema), then the text as
  the runtime writes it (``ocpp_trio.protocol.jsonio.dumps``); ``encode*`` is the same without the
  re-check (``validate=False``);
* **ocpp in** / **ocpp out**: the ``ocpp`` package (2.1.0) on the same payload: ``json.loads``
  then its validation, and its validation then ``json.dumps``.  Its validation is timed through
  the synchronous ``ocpp.messages._validate_payload`` that ``validate_payload`` calls (by
  default in an executor thread, whose overhead is left out, to its advantage);
* **ratio**: ocpp in / decode.

It also times the import of each generated module in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocpp_trio.messages import Datatype, decode_request, encode
from ocpp_trio.protocol.jsonio import dumps, loads

TS = "2024-05-06T07:08:09.123Z"


def sampled_2x(i: int) -> dict[str, Any]:
    return {
        "value": 230.5 + i,
        "context": "Sample.Periodic",
        "measurand": "Voltage" if i % 2 else "Current.Import",
        "phase": ["L1-N", "L2-N", "L3-N"][i % 3],
        "location": "Outlet",
        "unitOfMeasure": {"unit": "V" if i % 2 else "A", "multiplier": 0},
    }


def sampled_16(i: int) -> dict[str, Any]:
    return {
        "value": f"{230.5 + i:.1f}",
        "context": "Sample.Periodic",
        "format": "Raw",
        "measurand": "Voltage" if i % 2 else "Current.Import",
        "phase": ["L1-N", "L2-N", "L3-N"][i % 3],
        "location": "Outlet",
        "unit": "V" if i % 2 else "A",
    }


#: (label, version, action, payload)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "2.0.1 MeterValues (10 sampled values)",
        "2.0.1",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [{"timestamp": TS, "sampledValue": [sampled_2x(i) for i in range(10)]}],
        },
    ),
    (
        "2.0.1 TransactionEvent (1 meter value, 4 samples)",
        "2.0.1",
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": TS,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 7,
            "transactionInfo": {"transactionId": "tx-0001", "chargingState": "Charging"},
            "idToken": {"idToken": "04A1B2C3D4", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": TS, "sampledValue": [sampled_2x(i) for i in range(4)]}],
        },
    ),
    (
        "1.6 MeterValues (10 sampled values)",
        "1.6",
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 42,
            "meterValue": [{"timestamp": TS, "sampledValue": [sampled_16(i) for i in range(10)]}],
        },
    ),
    ("2.0.1 Heartbeat", "2.0.1", "Heartbeat", {}),
    ("1.6 Heartbeat", "1.6", "Heartbeat", {}),
]


#: the timed columns, in table order
COLUMNS = ("decode", "encode", "encode*", "ocpp in", "ocpp out")


def best_us(fn: Callable[[], object], *, rounds: int, min_time: float) -> float:
    """Best microseconds per call over ``rounds`` rounds of at least ``min_time`` seconds."""
    n = 1
    while True:  # calibrate the loop count
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
        n *= 2
    best = elapsed / n
    for _ in range(rounds - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def measure(
    version: str, action: str, payload: dict[str, Any], *, rounds: int, min_time: float
) -> dict[str, float]:
    """Microseconds per message for one payload, ours and the ``ocpp`` package's."""
    from ocpp.messages import Call, _validate_payload

    text = json.dumps(payload, separators=(",", ":"))
    message: Datatype = decode_request(version, action, loads(text))
    assert encode(message) == payload, (version, action)

    def decode() -> object:
        return decode_request(version, action, loads(text))

    def encode_checked() -> object:
        return dumps(encode(message))

    def encode_unchecked() -> object:
        return dumps(encode(message, validate=False))

    def ocpp_in() -> object:
        call = Call("1", action, json.loads(text))
        _validate_payload(call, version)
        return call

    def ocpp_out() -> object:
        _validate_payload(Call("1", action, payload), version)
        return json.dumps(payload, separators=(",", ":"))

    cases: dict[str, Callable[[], object]] = {
        "decode": decode,
        "encode": encode_checked,
        "encode*": encode_unchecked,
        "ocpp in": ocpp_in,
        "ocpp out": ocpp_out,
    }
    out = {name: best_us(fn, rounds=rounds, min_time=min_time) for name, fn in cases.items()}
    out["bytes"] = len(text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per round")
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}, ocpp {importlib.metadata.version('ocpp')}")
    print()
    print("| payload | bytes | decode | encode | encode* | ocpp in | ocpp out | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, version, action, payload in CASES:
        t = measure(version, action, payload, rounds=args.rounds, min_time=args.min_time)
        cells = [f"{t[name]:.2f}" if t[name] < 10 else f"{t[name]:.1f}" for name in COLUMNS]
        ratio = t["ocpp in"] / t["decode"]
        print(f"| {label} | {t['bytes']:.0f} | {' | '.join(cells)} | {ratio:.0f}x |")
    print()
    print("(microseconds per message, best of", args.rounds, "rounds)")
    print()
    print("| module | import ms, from source | import ms, bytecode cached |")
    print("|---|---:|---:|")
    for module in ("v1_6", "v2_0_1", "v2_1"):
        cold, warm = import_ms(module)
        print(f"| ocpp_trio.messages.{module} | {cold:.0f} | {warm:.0f} |")
    print()
    print("(fresh interpreter each, after ocpp_trio.messages and its base; best of 3)")
    return 0


def import_ms(module: str) -> tuple[float, float]:
    """Milliseconds to import one generated module in a fresh interpreter: compiled from source,
    and from a bytecode cache (kept in a temporary PYTHONPYCACHEPREFIX, not in the tree)."""
    # ocpp_trio/__init__.py imports the runtime, which imports the message modules: stub the
    # package object (as tests/test_sansio_imports.py does) to time one module alone
    code = (
        "import importlib.util, sys, time, types\n"
        "package = types.ModuleType('ocpp_trio')\n"
        "spec = importlib.util.find_spec('ocpp_trio')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['ocpp_trio'] = package\n"
        "import ocpp_trio.messages\n"
        "t = time.perf_counter()\n"
        f"import ocpp_trio.messages.{module}\n"
        "print((time.perf_counter() - t) * 1000)\n"
    )
    root = Path(__file__).resolve().parent.parent

    def run(env: dict[str, str]) -> float:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return float(result.stdout)

    with tempfile.TemporaryDirectory() as cold_dir, tempfile.TemporaryDirectory() as warm_dir:
        cold_env = {"PYTHONPYCACHEPREFIX": cold_dir, "PYTHONDONTWRITEBYTECODE": "1"}
        warm_env = {"PYTHONPYCACHEPREFIX": warm_dir, "PYTHONDONTWRITEBYTECODE": ""}
        cold = min(run(cold_env) for _ in range(3))
        run(warm_env)  # writes the cache
        warm = min(run(warm_env) for _ in range(3))
    return cold, warm


if __name__ == "__main__":
    raise SystemExit(main())
