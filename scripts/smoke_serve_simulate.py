"""Smoke test of an installed ``ocpp-trio`` command: serve, simulate, stop, export.

Starts ``ocpp-trio serve`` on a free port with a database in a temporary directory, runs
``ocpp-trio simulate`` with a few stations for a few seconds against it, stops the server with
SIGINT, and exports the transactions it kept.  It checks that every station connected and
booted, that sessions completed without errors, that every command exited cleanly (status 0,
no traceback), and that the finished transactions are in the export.

    python scripts/smoke_serve_simulate.py --command /path/to/venv/bin/ocpp-trio

It imports nothing of ocpp-trio itself (it runs in any Python 3.11), and runs the commands in
the temporary directory, so what it tests is the installed command, not a checkout.  Exit
status 0 when every check passed, 1 otherwise (the failed check and the commands' output are
printed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class SmokeError(Exception):
    """A check failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until the file ``path`` (a process's stderr) holds ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(encoding="utf-8", errors="replace"):
            return
        if process.poll() is not None:
            raise SmokeError(f"the server exited with status {process.returncode} before {text!r}")
        time.sleep(0.1)
    raise SmokeError(f"no {text!r} within {timeout} s")


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeError(what)


def smoke(command: str, stations: int, seconds: float, work: Path) -> dict[str, Any]:
    """The checks (see the module docstring); returns what was measured."""
    version = run([command, "--version"], work, 30)
    check(version.returncode == 0, f"--version exited {version.returncode}: {version.stderr}")
    check(version.stdout.startswith("ocpp-trio "), f"--version printed {version.stdout!r}")
    port = free_port()
    db = work / "smoke.db"
    log = work / "serve.log"
    serve = [command, "serve", "--port", str(port), "--db", str(db), "--no-admin"]
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [*serve, "--ping-interval", "0"],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for_line(log, "listening on ws://", server, 30)
            simulated = run(
                [
                    command,
                    "simulate",
                    "--url",
                    f"ws://127.0.0.1:{port}",
                    "--stations",
                    str(stations),
                    "--duration",
                    str(seconds),
                    "--session-every",
                    "0.5",
                    "--session-length",
                    "1",
                    "--meter-interval",
                    "0.5",
                    "--quiet",
                ],
                work,
                seconds + 60,
            )
            server.send_signal(signal.SIGINT)
            served = server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    server_log = log.read_text(encoding="utf-8", errors="replace")
    check(served == 0, f"serve exited {served}:\n{server_log}")
    check("Traceback" not in server_log, f"serve printed a traceback:\n{server_log}")
    check(
        simulated.returncode == 0,
        f"simulate exited {simulated.returncode}:\n{simulated.stderr}",
    )
    check("Traceback" not in simulated.stderr, f"simulate printed a traceback:\n{simulated.stderr}")
    summary = json.loads(simulated.stdout.strip().splitlines()[-1])
    check(summary["connects"] >= stations, f"not every station connected: {summary}")
    check(summary["boots"] >= stations, f"not every station booted: {summary}")
    check(summary["errors"] == 0, f"the simulation had errors: {summary}")
    check(summary["sessions_completed"] >= 1, f"no session completed: {summary}")
    exported = run(
        [command, "export", "transactions", "--since", "2000-01-01", "--db", str(db)], work, 60
    )
    check(exported.returncode == 0, f"export exited {exported.returncode}: {exported.stderr}")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    check(len(rows) >= summary["sessions_completed"], f"{len(rows)} transaction(s) exported")
    return {
        "version": version.stdout.strip(),
        "stations_booted": summary["boots"],
        "sessions_completed": summary["sessions_completed"],
        "calls": summary["calls_sent"],
        "transactions_exported": len(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", default="ocpp-trio", help="the ocpp-trio executable")
    parser.add_argument("--stations", type=int, default=3, help="stations to simulate")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to simulate")
    args = parser.parse_args()
    command = shutil.which(args.command) or args.command
    with tempfile.TemporaryDirectory(prefix="ocpp-trio-smoke-") as work:
        try:
            measured = smoke(command, args.stations, args.seconds, Path(work))
        except (SmokeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            print(f"smoke test FAILED: {exc}", file=sys.stderr)
            return 1
    print("smoke test passed: " + json.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
