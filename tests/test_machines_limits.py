"""What one station can make the CSMS keep is bounded: EVSEs, open transactions and reports in
progress beyond MachinesConfig's limits are answered but not tracked."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from helpers.station import boot_request, boot_router, running_station, status_notification

from ocpp_trio import Version
from ocpp_trio.errors import CallError
from ocpp_trio.messages import v2_0_1 as m
from ocpp_trio.runtime.machines import MachinesConfig
from ocpp_trio.runtime.station import StationConfig

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
V201 = Version.V201


def tx_event(kind: str, tx: str) -> m.TransactionEventRequest:
    """Event ``kind`` ("Started" or "Ended") of transaction ``tx`` on EVSE 1."""
    return m.TransactionEventRequest(
        event_type=m.TransactionEventEnumType(kind),
        timestamp=T0,
        trigger_reason=m.TriggerReasonEnumType.CABLE_PLUGGED_IN,
        seq_no=0 if kind == "Started" else 1,
        transaction_info=m.TransactionType(transaction_id=tx),
        evse=m.EVSEType(id=1, connector_id=1),
    )


def limited(**limits: int) -> StationConfig:
    return StationConfig(machines=MachinesConfig(late_event_window=1, **limits))


async def test_evses_beyond_the_limit_are_answered_not_tracked(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpp_trio")
    async with running_station(boot_router(), config=limited(max_evses=3)) as (station, fake):
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        for evse in range(1, 8):
            answer = await fake.exchange(status_notification(V201, evse, 1))
            assert isinstance(answer, m.StatusNotificationResponse)
        await station.settle()
        assert sorted(station.evses) == [0, 1, 2]  # 0: the station itself
        stats = station.statistics().machines
        assert stats is not None
        assert stats.over_limit == 5
        assert stats.evse_tasks <= 3
        # a known EVSE is still followed
        answer = await fake.exchange(status_notification(V201, 2, 1))
        assert isinstance(answer, m.StatusNotificationResponse)
    warnings = [r for r in caplog.records if "not tracked" in r.getMessage()]
    assert len(warnings) == 5
    assert [r.levelno for r in warnings] == [logging.WARNING] + [logging.DEBUG] * 4
    assert "max_evses" in warnings[0].getMessage()


async def test_transactions_beyond_the_limit_are_answered_not_tracked(
    autojump_clock: Any,
) -> None:
    config = limited(max_open_transactions=2)
    async with running_station(boot_router(), config=config) as (station, fake):
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        for tx in ("TX1", "TX2", "TX3"):
            answer = await fake.exchange(tx_event("Started", tx))
            assert isinstance(answer, m.TransactionEventResponse)
        await station.settle()
        assert sorted(station.transactions) == ["TX1", "TX2"]
        assert station.statistics().machines.over_limit == 1  # type: ignore[union-attr]
        # once one has ended, there is room again
        assert isinstance(await fake.exchange(tx_event("Ended", "TX1")), m.TransactionEventResponse)
        await station.settle()
        assert "TX1" not in station.transactions
        answer = await fake.exchange(tx_event("Started", "TX4"))
        assert isinstance(answer, m.TransactionEventResponse)
        await station.settle()
        assert sorted(station.transactions) == ["TX2", "TX4"]
        # a late event of a finished transaction is still taken (the history is bounded)
        assert station.machines.transaction("TX1") is not None
        assert station.statistics().machines.over_limit == 1  # type: ignore[union-attr]


async def test_reports_beyond_the_limit_are_answered_not_tracked(autojump_clock: Any) -> None:
    async with running_station(boot_router(), config=limited(max_open_reports=2)) as (
        station,
        fake,
    ):
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        for request_id in (1, 2, 3, 4):
            part = m.NotifyReportRequest(request_id=request_id, generated_at=T0, seq_no=0, tbc=True)
            assert isinstance(await fake.exchange(part), m.NotifyReportResponse)
        await station.settle()
        assert sorted(station.machines.reports) == [("NotifyReport", 1), ("NotifyReport", 2)]
        assert station.statistics().machines.over_limit == 2  # type: ignore[union-attr]


def test_limits_are_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_evses"):
        MachinesConfig(max_evses=0)
