"""The documentation's promises: the README's commands and the code examples of the README, the
tutorial and the station-side how-to run as written.

Each example is the block between ``<!-- example:begin -->`` and ``<!-- example:end -->``; it is
executed as a module and driven by simulated stations (or an in-process CSMS).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.docs import example

from ocpp_trio import Router, TransactionEnded, open_csms
from ocpp_trio.client.simulator import Simulator, SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
TEST_COMMAND = "pip install -e '.[dev]' && python -m pytest"
DEMO_COMMAND = "pip install -e . && python -m ocpp_trio demo"


class Printed:
    """A stand-in for ``print`` that remembers the lines and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    def __call__(self, *args: object) -> None:
        self.lines.append(" ".join(str(a) for a in args))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        while True:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            await self._changed.wait()


def load(relative: str, printed: Printed) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_example", "print": printed}
    exec(compile(example(relative), relative, "exec"), namespace)
    return namespace


def simulator(port: int, **overrides: Any) -> Simulator:
    config: dict[str, Any] = {
        "url": f"ws://127.0.0.1:{port}",
        "stations": 2,
        "session_every": 0.3,
        "session_length": 0.8,
        "meter_interval": 0.3,
        "seed": 1,
    }
    config.update(overrides)
    return Simulator(SimulatorConfig(**config))


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```sh\n{TEST_COMMAND}\n```" in readme
    assert f"```sh\n{DEMO_COMMAND}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"\n{TEST_COMMAND}\n" in ci
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert TEST_COMMAND in index
    assert DEMO_COMMAND in index


def test_readme_example_is_short() -> None:
    code = [line for line in example("README.md").splitlines() if line.strip()]
    assert len(code) <= 24


async def test_readme_example_reports_the_sessions_of_simulated_stations() -> None:
    printed = Printed()
    namespace = load("README.md", printed)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["main"], 0)
            port = int((await printed.wait_for(r"listening on port (\d+)")).group(1))
            nursery.start_soon(lambda: simulator(port).run())
            found = await printed.wait_for(r"(SIM-00\d) charged (\d+) Wh \(([-0-9a-f]+)\)")
            assert int(found.group(2)) > 0
            nursery.cancel_scope.cancel()


async def test_readme_example_refuses_unknown_tokens() -> None:
    printed = Printed()
    namespace = load("README.md", printed)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["main"], 0)
            port = int((await printed.wait_for(r"listening on port (\d+)")).group(1))
            refused = simulator(port, stations=1, id_token="MALLORY")
            nursery.start_soon(lambda: refused.run())
            await trio.sleep(1.5)  # a few sessions' worth
            assert refused.totals().sessions_refused >= 1
            assert refused.totals().sessions_started == refused.totals().sessions_refused
            nursery.cancel_scope.cancel()


async def test_tutorial_program_greets_stations_and_reports_sessions() -> None:
    printed = Printed()
    namespace = load("docs/tutorial.md", printed)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["main"], 0)
            port = int((await printed.wait_for(r"ws://127\.0\.0\.1:(\d+)/")).group(1))
            nursery.start_soon(lambda: simulator(port).run())
            interval = await printed.wait_for(r"SIM-00\d: HeartbeatInterval = (\d+)")
            assert interval.group(1) == "60"  # what the tutorial's boot answer said
            await printed.wait_for(r"SIM-00\d: session [0-9a-f]{8} ended, \d+\.\d Wh")
            nursery.cancel_scope.cancel()


async def test_charge_point_howto_example_reports_its_session() -> None:
    printed = Printed()
    namespace = load("docs/howto-charge-point.md", printed)
    router = Router()
    router.set_default_boot("Accepted", interval=120)
    with trio.fail_after(TIMEOUT):
        async with open_csms(router, "127.0.0.1", 0) as csms:
            assert csms.server_info is not None
            url = f"ws://127.0.0.1:{csms.server_info.port}"
            async with csms.subscribe_events(TransactionEnded) as ended:
                await namespace["main"](url)
                event = await ended.receive()
    assert event.identity == "CS001"
    assert event.transaction.energy_wh == pytest.approx(3.1)
    assert printed.lines[0] == f"connecting to {url} as CS001"
    assert printed.lines[1] == "accepted over OCPP 2.0.1, heartbeat every 120.0 s"
    assert re.fullmatch(r"session [0-9a-f]{8} reported", printed.lines[2])
