"""``ocpp-trio simulate``: the command line, the live progress view and the JSON summary.

Output:

* on a terminal (stdout is a TTY) and without ``--quiet``: a live view drawn with ``rich``
  (stations connected / accepted / charging, sessions, calls per second, errors, and the first
  stations one per row), refreshed a few times a second;
* otherwise, without ``--quiet``: one plain progress line every few seconds;
* with ``--quiet``: nothing until the end, then one JSON object (the summary) on stdout.

SIGINT (Ctrl-C) or SIGTERM stops the simulation gracefully (running sessions end and their last
messages are delivered, for at most ``--grace`` seconds); a second one stops it at once.  Exit
status: 0 when at least one station got connected, 1 when none ever did, 2 for a command-line
error (one line: a URL that is not ``ws://`` or ``wss://``, a ``--ca-file`` that is not there
or is no PEM file).  ``--ca-file`` adds a private CA to the ones the system trusts.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol, TextIO

import trio

from ocpp_trio.cli.args import websocket_url
from ocpp_trio.client.config import RetryBackOff
from ocpp_trio.client.simulator import Simulator, SimulatorConfig, SimulatorTotals
from ocpp_trio.protocol.version import Version

__all__ = [
    "LiveView",
    "add_simulate_parser",
    "add_simulation_options",
    "build_simulator_config",
    "open_view",
    "run_simulation",
    "simulate",
    "summary",
    "watch",
]

log = logging.getLogger("ocpp_trio.simulator")

#: stations shown one per row in the live view
_ROWS = 10


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _version(text: str) -> Version:
    try:
        return Version(text)
    except ValueError:
        choices = ", ".join(v.value for v in Version)
        raise argparse.ArgumentTypeError(f"{text!r}: choose one of {choices}") from None


def add_simulation_options(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """Add the options that shape the simulated stations (shared by ``simulate`` and ``demo``);
    ``demo`` picks shorter defaults, so that a session shows within seconds."""
    parser.add_argument(
        "--stations",
        type=_count,
        default=3 if demo else 1,
        metavar="N",
        help="how many (default %(default)s)",
    )
    parser.add_argument(
        "--version",
        type=_version,
        default=Version.V201,
        metavar="V",
        help="OCPP version of every station: 1.6, 2.0.1 or 2.1 (default 2.0.1)",
    )
    parser.add_argument(
        "--evses",
        type=_count,
        default=2,
        metavar="N",
        help="EVSEs per station (default %(default)s)",
    )
    parser.add_argument(
        "--session-every",
        type=_positive,
        default=3.0 if demo else 30.0,
        metavar="SECONDS",
        help="pause between two sessions of an EVSE, 50-100%% of it (default %(default)s)",
    )
    parser.add_argument(
        "--session-length",
        type=_positive,
        default=6.0 if demo else 60.0,
        metavar="SECONDS",
        help="how long a session charges (default %(default)s)",
    )
    parser.add_argument(
        "--meter-interval",
        type=_positive,
        default=2.0 if demo else 10.0,
        metavar="SECONDS",
        help="seconds between meter values (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--id-prefix",
        default="SIM",
        metavar="PREFIX",
        help="identities are PREFIX-001, ... (default %(default)s)",
    )
    parser.add_argument(
        "--id-token",
        default="SIMTOKEN01",
        metavar="TOKEN",
        help="idToken the sessions use (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="seed the random schedule")
    parser.add_argument(
        "--grace",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="how long a graceful stop may take (default %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output; print a JSON summary at the end",
    )


def add_simulate_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to the subparsers ``commands``."""
    simulate: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="simulate charging stations against a CSMS",
        description=(
            "Simulate charging stations: each connects to URL/<identity>, boots, reports its "
            "EVSEs, heartbeats, runs charging sessions on a schedule and answers the CSMS's "
            "commands.  Ctrl-C stops it gracefully."
        ),
    )
    simulate.add_argument(
        "--url",
        type=websocket_url,
        default="ws://127.0.0.1:9000",
        help="the CSMS endpoint, ws:// or wss:// (default %(default)s)",
    )
    simulate.add_argument(
        "--ca-file",
        metavar="FILE",
        help="trust the CA certificate(s) in this PEM file too (a wss:// CSMS whose "
        "certificate a private CA signed)",
    )
    add_simulation_options(simulate)
    simulate.add_argument("--password", help="Basic-auth password of every station")
    simulate.add_argument(
        "--connect-spread",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="spread the stations' first connections over this long (default %(default)s)",
    )
    simulate.add_argument(
        "--reconnect-wait",
        type=_positive,
        default=1.0,
        metavar="SECONDS",
        help="a station's first wait before reconnecting (RetryBackOffWaitMinimum); up to twice "
        "as much is added at random, and it doubles with each failure (default %(default)s)",
    )
    simulate.add_argument(
        "--call-timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how long a station waits for the CSMS's answer (default %(default)s)",
    )
    simulate.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="logging level on stderr (default %(default)s)",
    )
    return simulate


def _back_off(wait: float) -> RetryBackOff:
    """The simulator's reconnection back-off for a first wait of ``wait`` seconds (the default,
    1 s, gives the library's simulator default: 1 s plus up to 2 s at random)."""
    return RetryBackOff(wait_minimum=wait, random_range=2.0 * wait, repeat_times=4)


def build_simulator_config(args: argparse.Namespace, url: str) -> SimulatorConfig:
    """The :class:`SimulatorConfig` the parsed options describe."""
    return SimulatorConfig(
        url=url,
        stations=args.stations,
        version=args.version,
        id_prefix=args.id_prefix,
        evses=args.evses,
        session_every=args.session_every,
        session_length=args.session_length,
        meter_interval=args.meter_interval,
        id_token=args.id_token,
        password=getattr(args, "password", None),
        call_timeout=getattr(args, "call_timeout", 30.0),
        back_off=_back_off(getattr(args, "reconnect_wait", 1.0)),
        connect_spread=max(getattr(args, "connect_spread", 0.0), 0.0),
        seed=args.seed,
        ssl_context=getattr(args, "ssl_context", None),
    )


# -- output ------------------------------------------------------------------------------------


def summary(simulator: Simulator, elapsed: float) -> dict[str, Any]:
    """The JSON summary of a run: the configuration, the totals, calls per second."""
    totals = simulator.totals()
    config = simulator.config
    return {
        "url": config.url,
        "version": config.version.value,
        "duration_s": round(elapsed, 3),
        **totals.to_json(),
        "calls_per_second": round(totals.calls_sent / elapsed, 2) if elapsed > 0 else 0.0,
    }


class LiveView(Protocol):
    """Where progress goes: :func:`open_view` picks one."""

    def update(self, simulator: Simulator, rate: float, elapsed: float) -> None:
        """Show the current state (``rate``: calls per second lately)."""

    def line(self, text: str) -> None:
        """Show one line of news (e.g. a transaction the CSMS saw)."""


class _Quiet:
    def update(self, simulator: Simulator, rate: float, elapsed: float) -> None:
        pass

    def line(self, text: str) -> None:
        pass


def _status_text(totals: SimulatorTotals, rate: float, elapsed: float) -> str:
    return (
        f"[{elapsed:6.1f} s] stations {totals.connected}/{totals.stations} connected, "
        f"{totals.accepted} accepted, {totals.charging} charging | sessions "
        f"{totals.sessions_completed} done of {totals.sessions_started} | "
        f"{rate:.1f} calls/s ({totals.calls_sent} in all) | errors {totals.errors} | "
        f"connection failures {totals.connect_failures}"
    )


class _Plain:
    """One progress line every ``every`` seconds on ``stream``."""

    def __init__(self, stream: TextIO, every: float = 5.0) -> None:
        self._stream = stream
        self._every = every
        self._last: float | None = None

    def update(self, simulator: Simulator, rate: float, elapsed: float) -> None:
        now = trio.current_time()
        if self._last is not None and now - self._last < self._every:
            return
        self._last = now
        self.line(_status_text(simulator.totals(), rate, elapsed))

    def line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


class _Rich:
    """The live view on a terminal."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def update(self, simulator: Simulator, rate: float, elapsed: float) -> None:
        self._live.update(_render(simulator, rate, elapsed))

    def line(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)


def _render(simulator: Simulator, rate: float, elapsed: float) -> Any:
    from rich.console import Group
    from rich.table import Table

    totals = simulator.totals()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    version = simulator.config.version.value
    head.add_row("CSMS", f"{simulator.config.url}  (OCPP {version}, {elapsed:.0f} s)")
    head.add_row(
        "stations",
        f"{totals.connected}/{totals.stations} connected, {totals.accepted} booted, "
        f"{totals.charging} charging",
    )
    head.add_row(
        "sessions",
        f"{totals.sessions_completed} completed, {totals.sessions_started} started, "
        f"{totals.sessions_refused} refused",
    )
    head.add_row(
        "calls", f"{rate:.1f}/s, {totals.calls_sent} sent, {totals.calls_received} received"
    )
    head.add_row(
        "errors",
        f"{totals.errors} (CALLERRORs, timeouts, handler errors); "
        f"{totals.connect_failures} connection failures; {totals.queued} queued offline",
    )
    rows = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("station", "state", "charging", "sessions", "calls", "errors"):
        rows.add_column(column, justify="left" if column in ("station", "state") else "right")
    for station in simulator.stations[:_ROWS]:
        cp = station.cp
        if cp is None:
            continue
        stats = cp.statistics()
        errors = stats.calls_failed + stats.calls_timed_out + stats.handler_errors
        rows.add_row(
            station.identity,
            stats.state.value,
            str(station.charging),
            f"{station.sessions_completed}/{station.sessions_started}",
            str(stats.calls_sent),
            str(errors),
        )
    more = len(simulator.stations) - _ROWS
    parts: list[Any] = [head, rows]
    if more > 0:
        parts.append(f"... and {more} more")
    return Group(*parts)


@contextmanager
def open_view(quiet: bool, stream: TextIO | None = None) -> Iterator[LiveView]:
    """The view for this run: quiet, a rich live view when ``stream`` (stdout) is a terminal,
    else plain lines."""
    stream = stream or sys.stdout
    if quiet:
        yield _Quiet()
        return
    if not stream.isatty():
        yield _Plain(stream)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.logging import RichHandler

    console = Console(file=stream)
    root = logging.getLogger()
    # log lines go above the live view instead of tearing it
    saved = root.handlers[:]
    root.handlers = [RichHandler(console=console, show_path=False)]
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            yield _Rich(live)
    finally:
        root.handlers = saved


async def watch(
    simulator: Simulator,
    view: LiveView,
    *,
    started: float,
    every: float = 0.5,
) -> None:
    """Update ``view`` every ``every`` seconds until cancelled."""
    last_calls, last_time = 0, trio.current_time()
    rate = 0.0
    while True:
        now = trio.current_time()
        calls = simulator.totals().calls_sent
        if now > last_time:
            rate = (calls - last_calls) / (now - last_time)
        last_calls, last_time = calls, now
        view.update(simulator, rate, now - started)
        await trio.sleep(every)


async def run_simulation(
    simulator: Simulator,
    view: LiveView,
    *,
    duration: float | None,
    grace: float,
    on_stop: Callable[[], None] | None = None,
) -> float:
    """Run ``simulator`` with ``view`` until ``duration`` passed or SIGINT/SIGTERM; returns
    the seconds it ran.  A second signal stops at once (``on_stop`` is called on the first)."""
    stop = trio.Event()
    started = trio.current_time()
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    with trio.open_signal_receiver(*stop_signals) as signals:
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                async for signum in signals:
                    if stop.is_set():
                        log.warning("%s again: stopping now", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return
                    view.line(f"{signal.Signals(signum).name}: stopping (again to stop now)")
                    if on_stop is not None:
                        on_stop()
                    stop.set()

            nursery.start_soon(listen)
            nursery.start_soon(partial(watch, simulator, view, started=started))
            await simulator.run(duration=duration, grace=grace, stop=stop)
            view.update(simulator, 0.0, trio.current_time() - started)
            nursery.cancel_scope.cancel()
    return trio.current_time() - started


async def simulate(args: argparse.Namespace) -> int:
    """Run ``ocpp-trio simulate``; returns the exit status."""
    simulator = Simulator(build_simulator_config(args, args.url))
    with open_view(args.quiet) as view:
        elapsed = await run_simulation(simulator, view, duration=args.duration, grace=args.grace)
    result = summary(simulator, elapsed)
    if args.quiet:
        print(json.dumps(result), flush=True)
    else:
        print(_status_text(simulator.totals(), result["calls_per_second"], elapsed), flush=True)
    return 0 if result["connects"] else 1
