"""Running `ocpp-trio serve` as a subprocess and killing it (crash, ledger and security probes)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from interop.harness import RunningProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_command(port: int, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ocpp_trio",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        "--ping-interval",
        "0",
    ]


async def kill_9(server: RunningProcess) -> None:
    server.process.kill()  # SIGKILL: no shutdown, no final snapshot, no flush
    assert await server.wait() == -9
