"""Test-side helpers: run a subprocess and follow its output line by line.

Used by the interop tests (the ``ocpp``-package station of ``ocpp_station.py``) and the CLI tests
(``python -m ocpp_trio serve``).  The process runs under ``trio.run_process`` in a nursery, so it
never outlives the test: leaving the ``async with`` kills it if it is still running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

STATION_SCRIPT = Path(__file__).with_name("ocpp_station.py")
#: the checkout; subprocesses run there so ``python -m ocpp_trio`` works without installing
ROOT = Path(__file__).resolve().parent.parent.parent


class Lines:
    """The lines a stream produced so far, and a way to wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._changed = trio.Event()

    def _add(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = trio.Event()

    def _end(self) -> None:
        self.ended = True
        self._changed.set()

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async with stream:
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    self._add(raw.decode("utf-8", "replace").rstrip("\r"))
        if buffer:
            self._add(buffer.decode("utf-8", "replace"))
        self._end()

    async def wait_for(self, predicate: Callable[[str], bool], count: int = 1) -> list[str]:
        """Wait until ``count`` lines match ``predicate``; returns the matching lines.

        Raises:
            AssertionError: the stream ended first.
        """
        while True:
            found = [line for line in self.lines if predicate(line)]
            if len(found) >= count:
                return found
            if self.ended:
                raise AssertionError(
                    f"stream ended with {len(found)} of {count} matching lines:\n"
                    + "\n".join(self.lines)
                )
            await self._changed.wait()


class StationOutput:
    """The JSON events printed by ``ocpp_station.py``."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._lines.lines if line.startswith("{")]

    def of(self, event: str, action: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == event and (action is None or e.get("action") == action)
        ]

    async def wait_for(
        self, event: str, action: str | None = None, count: int = 1
    ) -> list[dict[str, Any]]:
        def matches(line: str) -> bool:
            if not line.startswith("{"):
                return False
            e = json.loads(line)
            return bool(e["event"] == event and (action is None or e.get("action") == action))

        found = await self._lines.wait_for(matches, count)
        return [json.loads(line) for line in found]


class RunningProcess:
    def __init__(self, process: trio.Process, stdout: Lines, stderr: Lines) -> None:
        self.process = process
        self.stdout = stdout
        self.stderr = stderr
        self.done = trio.Event()
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Wait for the process to exit and its output to be read; returns the exit status."""
        await self.done.wait()
        assert self.returncode is not None
        return self.returncode


@asynccontextmanager
async def run_process(command: Sequence[str], *, cwd: Path = ROOT) -> AsyncIterator[RunningProcess]:
    """Run ``command`` (in ``cwd``, the repository by default) with stdout and stderr followed
    line by line.

    On leaving the block the process is killed if it still runs (its output is kept).
    """
    stdout, stderr = Lines(), Lines()
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                cwd=cwd,
            )
        )
        running = RunningProcess(process, stdout, stderr)

        async def follow() -> None:
            async with trio.open_nursery() as pumps:
                assert process.stdout is not None
                assert process.stderr is not None
                pumps.start_soon(stdout.pump, process.stdout)
                pumps.start_soon(stderr.pump, process.stderr)
            running.returncode = await process.wait()
            running.done.set()

        nursery.start_soon(follow)
        try:
            yield running
        finally:
            if process.returncode is None:
                process.kill()


def serve_on_loopback(*options: str) -> list[str]:
    """``python -m ocpp_trio serve`` on 127.0.0.1, with ``options``."""
    return [sys.executable, "-m", "ocpp_trio", "serve", "--host", "127.0.0.1", *options]


def serve_command(*options: str) -> list[str]:
    """``python -m ocpp_trio serve`` on 127.0.0.1 with an in-memory store, and ``options``."""
    return serve_on_loopback("--db", ":memory:", *options)


@asynccontextmanager
async def run_station(
    port: int,
    identity: str,
    version: str,
    *options: str,
    hold: float = 10.0,
) -> AsyncIterator[tuple[RunningProcess, StationOutput]]:
    """Run the ``ocpp``-package station against ``ws://127.0.0.1:<port>/<identity>``."""
    command = [
        sys.executable,
        str(STATION_SCRIPT),
        "--url",
        f"ws://127.0.0.1:{port}",
        "--id",
        identity,
        "--version",
        version,
        "--hold",
        str(hold),
        *options,
    ]
    async with run_process(command) as running:
        yield running, StationOutput(running.stdout)
