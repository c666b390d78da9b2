"""``ocpp-trio simulate``: many charge points on the station-side API, charging on a schedule.

:class:`Simulator` runs :class:`~ocpp_trio.client.simulator_station.SimulatedStation` objects (each
a :class:`~ocpp_trio.ChargePoint` with EVSEs, meters and answers to the CSMS's commands) against one
CSMS and sums their counters (:class:`SimulatorTotals`).  The command line, the live view and the
JSON summary are in :mod:`ocpp_trio._simulator_view`.
"""

from __future__ import annotations

import random

import attrs
import trio

from ocpp_trio.client.config import ChargePointState
from ocpp_trio.client.simulator_station import SimulatedStation, SimulatorConfig

__all__ = ["SimulatedStation", "Simulator", "SimulatorConfig", "SimulatorTotals"]


@attrs.frozen(kw_only=True)
class SimulatorTotals:
    """Counters summed over every simulated station (see :meth:`Simulator.totals`)."""

    stations: int
    connected: int
    accepted: int
    charging: int
    sessions_started: int
    sessions_completed: int
    sessions_refused: int
    calls_sent: int
    calls_received: int
    errors: int
    connects: int
    connect_failures: int
    boots: int
    queued: int

    def to_json(self) -> dict[str, int]:
        """The counters as a JSON object."""
        return attrs.asdict(self)


class Simulator:
    """Many simulated stations against one CSMS.

    Args:
        config: what to simulate.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        if config.stations < 1 or config.evses < 1:
            raise ValueError("simulate at least one station with at least one EVSE")
        self.config = config
        seed_source = random.Random(config.seed)
        self.stations = [
            SimulatedStation(config, n, random.Random(seed_source.random()))
            for n in range(config.stations)
        ]

    def totals(self) -> SimulatorTotals:
        """The counters summed over every station, now."""
        stats = [s.cp.statistics() for s in self.stations if s.cp is not None]
        return SimulatorTotals(
            stations=len(self.stations),
            connected=sum(
                1
                for s in stats
                if s.state not in (ChargePointState.OFFLINE, ChargePointState.CONNECTING)
            ),
            accepted=sum(1 for s in stats if s.state is ChargePointState.ACCEPTED),
            charging=sum(s.charging for s in self.stations),
            sessions_started=sum(s.sessions_started for s in self.stations),
            sessions_completed=sum(s.sessions_completed for s in self.stations),
            sessions_refused=sum(s.sessions_refused for s in self.stations),
            calls_sent=sum(s.calls_sent for s in stats),
            calls_received=sum(s.calls_received for s in stats),
            errors=sum(s.calls_failed + s.calls_timed_out + s.handler_errors for s in stats),
            connects=sum(s.connects for s in stats),
            connect_failures=sum(s.connect_failures for s in stats),
            boots=sum(s.boots_sent for s in stats),
            queued=sum(s.queued for s in stats),
        )

    async def run(
        self,
        *,
        duration: float | None = None,
        grace: float = 10.0,
        stop: trio.Event | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every station for ``duration`` seconds (``None``: until ``stop`` is set or the
        task is cancelled), then stop them gracefully.

        A graceful stop ends the running sessions and waits up to ``grace`` seconds for their
        last messages to be answered, then closes every connection.

        Waits for: the duration or ``stop``, then the graceful stop.  Cancellation: closes
        every connection at once.  Closes: every station.
        """
        stop = stop if stop is not None else trio.Event()
        async with trio.open_nursery() as nursery:
            spread = self.config.connect_spread / max(len(self.stations), 1)
            for n, station in enumerate(self.stations):
                if n and spread:
                    await trio.sleep(spread)
                await nursery.start(station.run)
            task_status.started()
            with trio.move_on_after(duration if duration is not None else float("inf")):
                await stop.wait()
            for station in self.stations:
                station.stop()
            # each station ends by itself once its sessions have ended and its queue is
            # delivered; whatever is left after the grace period is cancelled
            nursery.cancel_scope.deadline = trio.current_time() + grace
