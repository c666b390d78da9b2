"""A station sending faster than ``StationConfig.max_message_rate`` is slowed down, not cut off:
reading from it pauses (a token bucket of ``message_burst`` frames), every frame is still
answered, and the pause is counted and logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from helpers.station import boot_request, boot_router, heartbeat, running_station

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.csms.metrics import csms_registry, metrics_text
from ocpp_trio.errors import CallError
from ocpp_trio.messages import v2_0_1 as m
from ocpp_trio.runtime.station import StationConfig
from ocpp_trio.testing import open_fake_station

V201 = Version.V201


async def test_a_station_over_the_rate_is_paced_and_loses_nothing(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpp_trio")
    config = StationConfig(max_message_rate=10.0, message_burst=20)
    async with running_station(boot_router(), config=config) as (station, fake):
        started = trio.current_time()
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        for _ in range(19):  # the burst: 20 frames with the boot
            assert isinstance(await fake.exchange(heartbeat(V201)), m.HeartbeatResponse)
        assert trio.current_time() == started
        assert station.statistics().throttled == 0  # the bucket is empty, not overdrawn
        for _ in range(30):
            assert isinstance(await fake.exchange(heartbeat(V201)), m.HeartbeatResponse)
        # 30 more frames at 10 a second: each is answered, then the next read waits 0.1 s
        # (the 50th was read after 29 of those pauses; the 30th runs now)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() - started == pytest.approx(2.9)
        stats = station.statistics()
        assert stats.throttled == 30
        assert stats.throttled_seconds == pytest.approx(3.0)
        assert stats.calls_received == 50
        # a quiet spell fills the bucket again: 1.9 s after the last pause, 19 tokens
        await trio.sleep(2.0)
        before = trio.current_time()
        for _ in range(19):
            await fake.exchange(heartbeat(V201))
        assert trio.current_time() == before
        assert station.statistics().throttled == 30
    messages = [r for r in caplog.records if "reading paused" in r.getMessage()]
    assert messages[0].levelno == logging.WARNING
    assert "more than 10.0 frames/s (burst 20)" in messages[0].getMessage()
    assert {r.levelno for r in messages[1:]} == {logging.DEBUG}


async def test_other_stations_are_answered_while_one_is_paused(autojump_clock: Any) -> None:
    """The pause is in the flooding station's reader only: another station's CALL is answered
    at once meanwhile, and the CSMS counts the pauses of all its stations."""
    config = CSMSConfig(station=StationConfig(max_message_rate=1.0, message_burst=1))
    csms = CSMS(boot_router(), config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)
        async with (
            open_fake_station(csms, "FLOOD") as flood,
            open_fake_station(csms, "QUIET") as quiet,
        ):
            # the flood's boot takes its one token; its heartbeat is answered, then its
            # reader pauses 1 s
            await flood.exchange(boot_request(V201))
            await flood.exchange(heartbeat(V201))
            assert trio.current_time() == 0
            # meanwhile the quiet station is answered at once
            await quiet.exchange(boot_request(V201))
            answer = await quiet.exchange(heartbeat(V201))
            assert isinstance(answer, m.HeartbeatResponse)
            assert trio.current_time() == 0
            # the flood's next frame waits for the end of its pause
            await flood.exchange(heartbeat(V201))
            assert trio.current_time() == pytest.approx(1.0)
        calls = csms.statistics().calls
        assert calls is not None
        assert calls.throttled == 3  # the flood twice, the quiet station once
        assert calls.throttled_seconds == pytest.approx(3.0)
        text = metrics_text(csms_registry(csms)).decode()
        assert "ocpp_trio_station_reads_throttled_total 3.0" in text
        assert "ocpp_trio_station_reads_throttled_seconds_total 3.0" in text
        nursery.cancel_scope.cancel()


async def test_no_rate_no_pause(autojump_clock: Any) -> None:
    config = StationConfig(max_message_rate=None, message_burst=1)
    async with running_station(boot_router(), config=config) as (station, fake):
        started = trio.current_time()
        await fake.exchange(boot_request(V201))
        for _ in range(500):
            await fake.exchange(heartbeat(V201))
        assert trio.current_time() == started
        assert station.statistics().throttled == 0


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_the_rate_is_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="max_message_rate"):
        StationConfig(max_message_rate=rate)


def test_the_burst_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="message_burst"):
        StationConfig(message_burst=0)
