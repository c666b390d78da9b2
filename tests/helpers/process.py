"""Running `ocpp-trio serve` (or a program) as a subprocess, and killing or interrupting it (crash,
ledger and security probes, Ctrl-C)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import trio
from interop.harness import ROOT, Lines, RunningProcess, run_process, serve_on_loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_command(port: int, db: Path) -> list[str]:
    return serve_on_loopback("--port", str(port), "--db", str(db), "--ping-interval", "0")


async def kill_9(server: RunningProcess) -> None:
    server.process.kill()  # SIGKILL: no shutdown, no final snapshot, no flush
    assert await server.wait() == -9


async def interrupted(
    command: list[str], ready: str, *, cwd: Path = ROOT, within: float = 30.0
) -> tuple[int, str, str]:
    """Run ``command`` until it prints a line holding ``ready`` (stdout or stderr; at most
    ``within / 2`` seconds), then Ctrl-C it (SIGINT); returns its exit status, its stdout and
    its stderr."""
    with trio.fail_after(within):
        async with run_process(command, cwd=cwd) as running:
            with trio.move_on_after(within / 2):
                async with trio.open_nursery() as nursery:

                    async def watch(lines: Lines) -> None:
                        await lines.wait_for(lambda line: ready in line)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(watch, running.stdout)
                    nursery.start_soon(watch, running.stderr)
            running.process.send_signal(signal.SIGINT)
            status = await running.wait()
    return status, "\n".join(running.stdout.lines), "\n".join(running.stderr.lines)
