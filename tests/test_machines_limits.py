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


def variables(request_id: int, seq: int, tbc: bool, *names: str) -> m.NotifyReportRequest:
    """A NotifyReport part with one variable of the station's own component per name."""
    data = tuple(
        m.ReportDataType(
            component=m.ComponentType(name="Custom"),
            variable=m.VariableType(name=name),
            variable_attribute=(m.VariableAttributeType(value="1"),),
        )
        for name in names
    )
    return m.NotifyReportRequest(
        request_id=request_id, generated_at=T0, seq_no=seq, tbc=tbc, report_data=data or None
    )


async def test_report_parts_beyond_the_limit_are_not_kept(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A report past ``max_report_items`` keeps no more parts, but its last part still ends it,
    INCOMPLETE: the parts left out are missing."""
    caplog.set_level(logging.DEBUG, logger="ocpp_trio")
    config = limited(max_report_items=4)
    async with running_station(boot_router(), config=config) as (station, fake):
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        parts = [
            variables(9, 0, True, "A", "B"),
            variables(9, 1, True, "C", "D"),
            variables(9, 2, True, "E"),
            variables(9, 3, True),
            variables(9, 4, False, "F"),
        ]
        for part in parts:
            assert isinstance(await fake.exchange(part), m.NotifyReportResponse)
        await station.settle()
        report = station.machines.report("NotifyReport", 9)
        assert report is not None
        assert report.status.value == "incomplete"
        assert [p.seq_no for p in report.parts] == [0, 1, 4]
        assert (report.dropped, report.missing) == (2, (2, 3))
        assert station.statistics().machines.over_limit == 2  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if "not tracked" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.DEBUG]
    assert "max_report_items" in warnings[0].getMessage()


async def test_device_model_variables_beyond_the_limit_are_left_out(autojump_clock: Any) -> None:
    """New variables past ``max_device_model_variables`` are left out; the ones the model has
    are still updated."""
    config = limited(max_device_model_variables=3)
    async with running_station(boot_router(), config=config) as (station, fake):
        assert not isinstance(await fake.exchange(boot_request(V201)), CallError)
        for part in (variables(5, 0, True, "A", "B"), variables(5, 1, False, "C", "D", "E")):
            assert isinstance(await fake.exchange(part), m.NotifyReportResponse)
        await station.settle()
        model = station.device_model
        assert [v.variable.name for v in model.variables] == ["A", "B", "C"]
        assert station.statistics().machines.over_limit == 1  # type: ignore[union-attr]
        # a variable it has is still updated, a new one is still left out
        update = m.NotifyReportRequest(
            request_id=6,
            generated_at=T0,
            seq_no=0,
            tbc=False,
            report_data=(
                m.ReportDataType(
                    component=m.ComponentType(name="Custom"),
                    variable=m.VariableType(name="B"),
                    variable_attribute=(m.VariableAttributeType(value="2"),),
                ),
                *(variables(6, 0, False, "Z").report_data or ()),
            ),
        )
        assert isinstance(await fake.exchange(update), m.NotifyReportResponse)
        await station.settle()
        assert station.device_model.get("Custom", "B") == "2"
        assert station.device_model.get("Custom", "Z") is None
        assert len(station.device_model) == 3
        assert station.statistics().machines.over_limit == 2  # type: ignore[union-attr]
