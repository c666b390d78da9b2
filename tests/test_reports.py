"""Multi-part reports: assembly by seqNo, gaps, expiry, and the ``get_base_report`` helper."""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
import trio
from helpers.station import FakeStation, boot_request, boot_router, running_station
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_trio import CallError
from ocpp_trio.domain.events import ReportCompleted
from ocpp_trio.domain.reports import (
    Report,
    ReportStatus,
    add_part,
    answer_report,
    expire_report,
    part_from_message,
)
from ocpp_trio.domain.sequence import MISSING_LISTED
from ocpp_trio.errors import ReportIncompleteError, ReportTimeoutError, RequestRejectedError
from ocpp_trio.messages import v2_0_1, v2_1
from ocpp_trio.protocol.rpc import IncomingCall
from ocpp_trio.runtime.machines import MachinesConfig
from ocpp_trio.runtime.station import Station, StationConfig

m = v2_0_1
T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def report_data(evse: int, name: str = "Enabled", value: str = "true") -> m.ReportDataType:
    return m.ReportDataType(
        component=m.ComponentType(name="EVSE", evse=m.EVSEType(id=evse)),
        variable=m.VariableType(name=name),
        variable_attribute=(m.VariableAttributeType(value=value),),
    )


def part(request_id: int, seq: int, tbc: bool, *data: m.ReportDataType) -> m.NotifyReportRequest:
    return m.NotifyReportRequest(
        request_id=request_id,
        generated_at=T0,
        seq_no=seq,
        tbc=tbc,
        report_data=tuple(data) or None,
    )


# -- the pure records --------------------------------------------------------------------------


def test_parts_assemble_by_seq_no_and_gaps_are_seen() -> None:
    report = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    report = answer_report(report, None, "Accepted", T0)
    for seq, tbc in ((1, True), (0, True), (1, True)):
        report = add_part(
            report, part_from_message(part(7, seq, tbc, report_data(seq + 1)), T0, arrival=0), T0
        )
    assert [p.seq_no for p in report.parts] == [0, 1]
    assert report.duplicates == 1
    assert not report.finished
    report = add_part(report, part_from_message(part(7, 3, False), T0, arrival=0), T0)
    assert report.status is ReportStatus.INCOMPLETE
    assert report.missing == (2,)
    assert report.last_seq_no == 3
    assert len(report.items) == 2


def test_a_huge_seq_no_ends_the_report_incomplete_at_once() -> None:
    """A last part numbered 10**12 (valid: seqNo is not bounded) finishes the report as
    incomplete, its gap listed in part (it used to be listed in full: minutes of CPU and all
    the memory for one message)."""
    report = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    report = answer_report(report, None, "Accepted", T0)
    report = add_part(report, part_from_message(part(7, 0, True), T0, arrival=0), T0)
    report = add_part(report, part_from_message(part(7, 10**12, False), T0, arrival=1), T0)
    assert report.status is ReportStatus.INCOMPLETE
    assert report.missing[:3] == (1, 2, 3)
    assert len(report.missing) == MISSING_LISTED


def test_answers_and_expiry() -> None:
    base = Report(identity="CS1", kind="NotifyReport", request_id=1, started_at=T0)
    assert answer_report(base, None, "EmptyResultSet", T0).status is ReportStatus.EMPTY
    assert answer_report(base, None, "NotSupported", T0).status is ReportStatus.REJECTED
    assert expire_report(base, T0).status is ReportStatus.EXPIRED
    done = expire_report(base, T0)
    assert expire_report(done, T0 + datetime.timedelta(1)) == done


def test_parts_without_seq_no_are_numbered_by_arrival() -> None:
    messages = [
        v2_1.NotifyDisplayMessagesRequest(request_id=3, tbc=True),
        v2_1.NotifyDisplayMessagesRequest(request_id=3, tbc=False),
    ]
    report = Report(identity="CS1", kind="NotifyDisplayMessages", request_id=3, started_at=T0)
    for i, message in enumerate(messages):
        report = add_part(report, part_from_message(message, T0, arrival=i), T0)
    assert report.status is ReportStatus.COMPLETE
    assert [p.seq_no for p in report.parts] == [0, 1]


def numbered(report: Report, *parts: tuple[int, bool, int], max_items: int | None = None) -> Report:
    """``report`` with NotifyReport parts (seqNo, tbc, data items) added in this order."""
    for seq, tbc, count in parts:
        data = [report_data(n + 1) for n in range(count)]
        message = part(report.request_id, seq, tbc, *data)
        report = add_part(
            report, part_from_message(message, T0, arrival=0), T0, max_items=max_items
        )
    return report


def test_parts_beyond_max_items_are_dropped_and_the_report_ends_incomplete() -> None:
    report = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    report = numbered(report, (0, True, 2), (1, True, 2), (2, True, 2), (3, True, 0), max_items=4)
    # 0 and 1 hold 4 items; 2 (2 more) and 3 (no item counts as one) would pass 4
    assert [p.seq_no for p in report.parts] == [0, 1]
    assert (report.held_items, report.dropped, report.finished) == (4, 2, False)
    # the last part is kept whatever it holds: it finishes the report
    report = numbered(report, (4, False, 3), max_items=4)
    assert [p.seq_no for p in report.parts] == [0, 1, 4]
    assert report.status is ReportStatus.INCOMPLETE
    assert report.missing == (2, 3)
    assert (report.held_items, report.dropped) == (7, 2)
    assert "seqNo 2, 3 missing (2 part(s) not kept" in str(ReportIncompleteError(report))
    # a duplicate of a kept part is still seen as one
    again = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    again = numbered(again, (0, True, 1), (0, True, 1), max_items=1)
    assert (again.duplicates, again.dropped, len(again.parts)) == (1, 0, 1)


class Counted(int):
    """A seqNo that counts the comparisons made with it."""

    compared = 0

    def __lt__(self, other: object) -> bool:
        Counted.compared += 1
        return int(self) < int(other)  # type: ignore[call-overload]

    def __eq__(self, other: object) -> bool:
        Counted.compared += 1
        return int(self) == int(other)  # type: ignore[call-overload]

    __hash__ = int.__hash__


def test_a_part_costs_a_few_comparisons_however_many_parts_came() -> None:
    """Adding a part to a report of n parts compares O(log n) seqNos (it used to sort all the
    parts again and compare the seqNo with each for a duplicate: O(n log n) per part)."""
    report = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    for seq in range(2000):
        message = part(7, seq, True)
        counted = attrs.evolve(part_from_message(message, T0, arrival=0), seq_no=Counted(seq))
        report = add_part(report, counted, T0)
    Counted.compared = 0
    for seq in range(2000, 2100):
        counted = attrs.evolve(
            part_from_message(part(7, seq, True), T0, arrival=0), seq_no=Counted(seq)
        )
        report = add_part(report, counted, T0)
    assert len(report.parts) == 2100
    assert Counted.compared <= 100 * 15


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), max_size=14))
def test_parts_are_placed_as_sorting_them_all_would(steps: list[tuple[int, bool]]) -> None:
    """Without a limit, the parts held, the duplicates and the status are those of the plain
    algorithm: sort every part received so far by seqNo, finish at the first last part."""
    report = Report(identity="CS1", kind="NotifyReport", request_id=7, started_at=T0)
    received: list[int] = []
    duplicates = 0
    final: int | None = None
    for seq, tbc in steps:
        report = numbered(report, (seq, tbc, 1))
        if final is not None:
            continue
        if seq in received:
            duplicates += 1
            continue
        received = sorted([*received, seq])
        if not tbc:
            final = seq
    assert [p.seq_no for p in report.parts] == received
    assert report.duplicates == duplicates
    assert report.finished is (final is not None)
    if final is not None:
        missing = tuple(n for n in range(final + 1) if n not in received)
        assert report.missing == missing
        expected = ReportStatus.INCOMPLETE if missing else ReportStatus.COMPLETE
        assert report.status is expected


# -- get_base_report over a memory transport ------------------------------------------------------


async def serve_report(
    fake: FakeStation, answer: str, parts: list[tuple[int, bool, list[Any]]]
) -> IncomingCall:
    call = await fake.expect_call()
    assert call.action == "GetBaseReport"
    request_id = call.request.request_id  # type: ignore[attr-defined]
    status = m.GenericDeviceModelStatusEnumType(answer)
    await fake.answer(call, m.GetBaseReportResponse(status=status))
    for seq, tbc, data in parts:
        reply = await fake.exchange(part(request_id, seq, tbc, *data))
        assert isinstance(reply, m.NotifyReportResponse)
    return call


async def boot(fake: FakeStation) -> None:
    assert not isinstance(await fake.exchange(boot_request(fake.version)), CallError)


async def test_get_base_report_complete(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        completed: list[ReportCompleted] = []
        async with trio.open_nursery() as nursery:

            async def listen(task_status: trio.TaskStatus[None]) -> None:
                async with station.machines.subscribe(ReportCompleted) as events:
                    task_status.started()
                    async for event in events:
                        completed.append(event)

            await nursery.start(listen)
            parts = [
                (0, True, [report_data(1), report_data(2)]),
                (1, True, [report_data(3, "Power", "11000")]),
                (2, False, [report_data(3)]),
            ]
            nursery.start_soon(serve_report, fake, "Accepted", parts)
            report = await station.get_base_report("FullInventory")
            await station.settle()
            nursery.cancel_scope.cancel()
        assert report.status is ReportStatus.COMPLETE
        assert [p.seq_no for p in report.parts] == [0, 1, 2]
        assert len(report.items) == 4
        assert report.request is not None
        assert report.answer == "Accepted"
        assert [e.report for e in completed] == [report]
        # the device model, and the EVSEs it names
        assert station.device_model.get("evse", "power", evse_id=3) == "11000"
        assert sorted(station.evses) == [0, 1, 2, 3]
        stats = station.statistics().machines
        assert stats is not None
        assert stats.report_tasks == 0


async def test_get_base_report_with_a_gap(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:
            parts = [(0, True, [report_data(1)]), (2, True, []), (3, False, [report_data(2)])]
            nursery.start_soon(serve_report, fake, "Accepted", parts)
            with pytest.raises(ReportIncompleteError, match="seqNo 1 missing") as info:
                await station.get_base_report()
        assert info.value.missing == (1,)
        assert info.value.report.status is ReportStatus.INCOMPLETE
        assert [p.seq_no for p in info.value.report.parts] == [0, 2, 3]
        # the parts that came still updated the device model
        assert station.device_model.get("EVSE", "Enabled", evse_id=2) == "true"
        # a part arriving after the report finished is acknowledged and counted
        late = await fake.exchange(part(info.value.report.request_id, 1, True))
        assert isinstance(late, m.NotifyReportResponse)
        await station.settle()
        stats = station.statistics().machines
        assert stats is not None
        assert stats.late_report_parts == 1


async def test_empty_and_rejected_answers(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_report, fake, "EmptyResultSet", [])
            report = await station.get_base_report("SummaryInventory")
        assert report.status is ReportStatus.EMPTY
        assert report.parts == ()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_report, fake, "NotSupported", [])
            with pytest.raises(RequestRejectedError, match="NotSupported") as info:
                await station.get_base_report("SummaryInventory")
        assert info.value.status == "NotSupported"
        await station.settle()
        stats = station.statistics().machines
        assert stats is not None
        assert stats.report_tasks == 0


async def test_abandoned_report_expires(autojump_clock: Any) -> None:
    config = StationConfig(machines=MachinesConfig(report_timeout=50))
    async with running_station(boot_router(), config=config) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_report, fake, "Accepted", [(0, True, [report_data(1)])])
            start = trio.current_time()
            with pytest.raises(ReportTimeoutError, match="no part for 50") as info:
                await station.get_base_report()
            assert trio.current_time() - start == 50
        assert info.value.report.status is ReportStatus.EXPIRED
        assert isinstance(info.value, trio.TooSlowError)
        stats = station.statistics().machines
        assert stats is not None
        assert stats.report_tasks == 0


async def test_report_request_on_16_is_refused_locally(autojump_clock: Any) -> None:
    from ocpp_trio import LocalProtocolError, Version

    async with running_station(boot_router(), Version.V16) as (station, fake):
        await boot(fake)
        with pytest.raises(LocalProtocolError, match=r"does not exist in OCPP 1\.6"):
            await station.get_base_report()


async def test_call_error_answer_is_raised(autojump_clock: Any) -> None:
    from ocpp_trio import ErrorCode

    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:

            async def refuse() -> None:
                call = await fake.expect_call()
                await fake.transport.send_message(
                    fake.rpc.answer_error(call.message_id, ErrorCode.NOT_SUPPORTED, "no")
                )

            nursery.start_soon(refuse)
            with pytest.raises(CallError):
                await station.get_base_report()
        assert station.machines.reports == {}


async def test_other_report_kinds(autojump_clock: Any) -> None:
    """GetMonitoringReport through the generic helper; parts are NotifyMonitoringReport."""
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        request_id = station.machines.allocate_request_id()
        request = m.GetMonitoringReportRequest(request_id=request_id)

        async def serve() -> None:
            call = await fake.expect_call()
            status = m.GenericDeviceModelStatusEnumType.ACCEPTED
            await fake.answer(call, m.GetMonitoringReportResponse(status=status))
            for seq in (0, 1):
                parts = m.NotifyMonitoringReportRequest(
                    request_id=request_id, seq_no=seq, tbc=seq == 0, generated_at=T0
                )
                assert isinstance(await fake.exchange(parts), m.NotifyMonitoringReportResponse)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            report = await station.request_report(request)
        assert report.kind == "NotifyMonitoringReport"
        assert report.status is ReportStatus.COMPLETE
        assert station.machines.report("NotifyMonitoringReport", request_id) == report


async def test_helpers_need_a_connection(autojump_clock: Any) -> None:
    from ocpp_trio import ConnectionLostError

    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:

            async def vanish() -> None:
                call = await fake.expect_call()
                status = m.GenericDeviceModelStatusEnumType.ACCEPTED
                await fake.answer(call, m.GetBaseReportResponse(status=status))
                await trio.sleep(1)
                await fake.transport.aclose()

            nursery.start_soon(vanish)
            with pytest.raises(ConnectionLostError):
                await station.get_base_report()
    assert isinstance(station, Station)
