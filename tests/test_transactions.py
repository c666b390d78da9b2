"""Transactions: the pure records (order independence, gaps, units) and the transaction tasks
over memory transports with exact virtual times."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from helpers.station import (
    FakeStation,
    boot_request,
    boot_router,
    running_station,
    status_notification,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.domain import wire
from ocpp_trio.domain.events import (
    MachineEvent,
    TransactionChanged,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from ocpp_trio.domain.sequence import MISSING_LISTED
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import (
    Transaction,
    TransactionEventKind,
    TransactionEventRecord,
    TransactionIdCounter,
    TransactionNotice,
    apply_record,
    in_order,
    record_from_transaction_event,
    samples_from_meter_values,
)
from ocpp_trio.errors import CallError, TransactionTimeoutError
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.machines import MachinesConfig, StationMachines
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.transport.base import memory_transport_pair

V16, V201 = Version.V16, Version.V201
T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
m = v2_0_1


def event(
    kind: str,
    seq: int,
    wh: float | None = None,
    *,
    tx: str = "TX1",
    context: str | None = None,
    offline: bool | None = None,
    evse: int = 1,
    unit: str | None = None,
    multiplier: int | None = None,
    id_token: str | None = None,
    remote_start_id: int | None = None,
    reservation_id: int | None = None,
    stopped_reason: str | None = None,
) -> v2_0_1.TransactionEventRequest:
    """A 2.0.1 TransactionEvent; ``seq`` also sets the time (minutes after T0)."""
    at = T0 + datetime.timedelta(minutes=seq)
    meter = None
    if wh is not None:
        uom = (
            m.UnitOfMeasureType(unit=unit, multiplier=multiplier)
            if unit is not None or multiplier is not None
            else None
        )
        sample = m.SampledValueType(
            value=wh,
            context=m.ReadingContextEnumType(context) if context else None,
            unit_of_measure=uom,
        )
        meter = (m.MeterValueType(timestamp=at, sampled_value=(sample,)),)
    return m.TransactionEventRequest(
        event_type=m.TransactionEventEnumType(kind),
        timestamp=at,
        trigger_reason=m.TriggerReasonEnumType.METER_VALUE_PERIODIC,
        seq_no=seq,
        offline=offline,
        transaction_info=m.TransactionType(
            transaction_id=tx,
            remote_start_id=remote_start_id,
            stopped_reason=m.ReasonEnumType(stopped_reason) if stopped_reason else None,
        ),
        evse=m.EVSEType(id=evse, connector_id=1),
        meter_value=meter,
        id_token=m.IdTokenType(id_token=id_token, type=m.IdTokenEnumType.ISO14443)
        if id_token
        else None,
        reservation_id=reservation_id,
    )


def session(tx: str = "TX1", evse: int = 1, base: float = 1000.0) -> list[Any]:
    """Started, three updates, Ended: energy 3000 Wh."""
    return [
        event("Started", 0, base, tx=tx, evse=evse, context="Transaction.Begin", id_token="T1"),
        event("Updated", 1, base + 1000, tx=tx, evse=evse),
        event("Updated", 2, (base + 1500) / 1000, tx=tx, evse=evse, unit="kWh", offline=True),
        event("Updated", 3, (base + 2500) / 1000, tx=tx, evse=evse, multiplier=3),
        event("Ended", 4, base + 3000, tx=tx, evse=evse, context="Transaction.End"),
    ]


def record(request: v2_0_1.TransactionEventRequest) -> tuple[str, TransactionEventRecord]:
    return record_from_transaction_event(request.to_json(), T0, version=V201)


def fold(requests: list[Any]) -> tuple[Transaction, list[TransactionNotice]]:
    tx: Transaction | None = None
    notices: list[TransactionNotice] = []
    for request in requests:
        tx_id, rec = record(request)
        tx, got = apply_record(tx, rec, identity="CS1", transaction_id=tx_id, version=V201)
        notices += got
    assert tx is not None
    return tx, notices


# -- the pure records --------------------------------------------------------------------------


def test_session_energy_units_and_order() -> None:
    tx, notices = fold(session())
    assert notices == [TransactionNotice.STARTED] + [TransactionNotice.UPDATED] * 3 + [
        TransactionNotice.ENDED
    ]
    assert tx.started
    assert tx.ended
    assert tx.complete
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.energy_wh) == (1000, 4000, 3000)
    assert [s.value for s in tx.samples] == [1000, 2000, 2500, 3500, 4000]
    assert tx.offline_events == 1
    assert tx.id_token == "T1"
    assert (tx.evse_id, tx.connector_id) == (1, 1)
    assert tx.started_at == T0
    assert tx.ended_at == T0 + datetime.timedelta(minutes=4)


@settings(max_examples=200, deadline=None)
@given(order=st.permutations(range(5)), repeats=st.lists(st.integers(0, 4), max_size=4))
def test_any_permutation_gives_the_same_transaction(order: list[int], repeats: list[int]) -> None:
    """Late, out-of-order and repeated events: the final transaction is always the same."""
    events = session()
    reference, _ = fold(events)
    shuffled = [events[i] for i in order] + [events[i] for i in repeats]
    tx, notices = fold(shuffled)
    assert tx.duplicates == len(repeats)
    assert attrs.evolve(tx, duplicates=0) == reference
    assert tx.energy_wh == 3000
    # one STARTED (the first event, whatever it was) and one ENDED
    assert notices[0] is TransactionNotice.STARTED
    assert notices.count(TransactionNotice.STARTED) == 1
    assert notices.count(TransactionNotice.ENDED) == 1
    assert notices.count(TransactionNotice.DUPLICATE) == len(repeats)


def _reference_apply(
    events: list[TransactionEventRecord], record: TransactionEventRecord
) -> list[TransactionEventRecord] | None:
    """What apply_record keeps, the plain way: compare with every event, sort them all
    (``None``: a duplicate)."""
    if any(e.same_slot(record) for e in events):
        return None
    return sorted([*events, record], key=lambda e: e.order)


KINDS = list(TransactionEventKind)


@st.composite
def records(draw: st.DrawFn) -> TransactionEventRecord:
    """1.6-like (no seqNo) or 2.x-like events with few distinct values, so that slots clash."""
    return TransactionEventRecord(
        kind=draw(st.sampled_from(KINDS)),
        timestamp=T0 + datetime.timedelta(seconds=draw(st.integers(0, 3))),
        seq_no=draw(st.none() | st.integers(0, 4)),
        charging_state=draw(st.sampled_from([None, "Charging", "EVConnected"])),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=25))
def test_apply_record_keeps_what_comparing_with_every_event_keeps(
    stream: list[TransactionEventRecord],
) -> None:
    """The bisection apply_record uses finds the same duplicates and the same order as
    comparing each new event with every event held and sorting them all."""
    tx: Transaction | None = None
    expected: list[TransactionEventRecord] = []
    for rec in stream:
        tx, notices = apply_record(tx, rec, identity="CS", transaction_id="T", version=V201)
        kept = _reference_apply(expected, rec)
        if kept is None:
            assert notices == (TransactionNotice.DUPLICATE,)
        else:
            assert TransactionNotice.DUPLICATE not in notices
            expected = kept
        assert list(tx.events) == expected
        # the kinds apply_record keeps agree with those of a transaction built from scratch
        fresh = Transaction(identity="CS", transaction_id="T", version=V201, events=tx.events)
        assert (tx.started, tx.ended) == (fresh.started, fresh.ended)
        assert tx.started == any(e.kind is TransactionEventKind.STARTED for e in expected)
        assert tx.ended == any(e.kind is TransactionEventKind.ENDED for e in expected)
        assert tx == attrs.evolve(fresh, duplicates=tx.duplicates)


def test_a_long_transaction_compares_few_events_per_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction holding 2,000 events takes the next one by bisection: a few dozen sort
    keys read and no event compared in full (it used to compare and sort all of them, so the
    cost of an event grew with the length of the transaction)."""
    tx: Transaction | None = None
    for seq in range(2000):
        kind = "Started" if seq == 0 else "Updated"
        tx, _ = apply_record(
            tx, record(event(kind, seq, 1000.0 + seq))[1], identity="CS", transaction_id="TX1",
            version=V201,
        )  # fmt: skip
    assert tx is not None
    assert tx.started
    assert not tx.ended
    reads = {"order": 0, "same_slot": 0}
    order, same_slot = TransactionEventRecord.order, TransactionEventRecord.same_slot

    def counted_order(self: TransactionEventRecord) -> tuple[int, int, datetime.datetime]:
        reads["order"] += 1
        return order.fget(self)  # type: ignore[no-any-return]

    def counted_same_slot(self: TransactionEventRecord, other: TransactionEventRecord) -> bool:
        reads["same_slot"] += 1
        return same_slot(self, other)

    monkeypatch.setattr(TransactionEventRecord, "order", property(counted_order))
    monkeypatch.setattr(TransactionEventRecord, "same_slot", counted_same_slot)
    new, notices = apply_record(
        tx, record(event("Updated", 2000, 3000.0))[1], identity="CS", transaction_id="TX1",
        version=V201,
    )  # fmt: skip
    assert notices == (TransactionNotice.UPDATED,)
    assert len(new.events) == 2001
    assert new.events[-1].seq_no == 2000
    assert reads["order"] <= 60  # none: the next seqNo goes last, nothing is searched
    assert reads["same_slot"] == 0
    again, notices = apply_record(
        new, record(event("Updated", 1500, 2500.0))[1], identity="CS", transaction_id="TX1",
        version=V201,
    )  # fmt: skip
    assert notices == (TransactionNotice.DUPLICATE,)
    assert again.events == new.events
    assert reads["same_slot"] == 1
    assert 0 < reads["order"] <= 60  # the repeat was searched for, by bisection


def test_gaps_are_reported_never_rejected() -> None:
    events = session()
    tx, _ = fold([events[0], events[1], events[4]])
    assert tx.missing_seq_nos == (2, 3)
    assert tx.ended
    assert not tx.complete
    assert tx.energy_wh == 3000
    alone, notices = fold([events[3]])
    assert notices == [TransactionNotice.STARTED]
    assert not alone.started
    assert alone.missing_seq_nos == ()
    ended_only, notices = fold([events[4]])
    assert notices == [TransactionNotice.STARTED, TransactionNotice.ENDED]
    assert ended_only.complete  # nothing says more is coming


def test_a_transaction_made_elsewhere_is_put_in_order() -> None:
    """A transaction whose events are not sorted (made by the application for a snapshot) is
    sorted when the machines load it, so that apply_record still finds repeated events."""
    records = [record(event("Started" if seq == 0 else "Updated", seq))[1] for seq in range(5)]
    shuffled = Transaction(
        identity="CS1", transaction_id="TX1", version=V201, events=tuple(reversed(records))
    )
    assert in_order(shuffled).events == tuple(records)
    ordered = in_order(shuffled)
    assert in_order(ordered) is ordered
    machines = StationMachines(
        "CS1", initial=StationSnapshot(identity="CS1", transactions=(shuffled,))
    )
    (loaded,) = machines.snapshot().transactions
    assert loaded.events == tuple(records)
    _, notices = apply_record(
        loaded, records[3], identity="CS1", transaction_id="TX1", version=V201
    )
    assert notices == (TransactionNotice.DUPLICATE,)


def test_samples_share_their_words() -> None:
    """Two events read from separate texts keep one copy of each enumerated word (measurand,
    unit, context, phase, location, trigger reason, charging state): a long transaction holds
    thousands of samples."""
    text = (
        '{"eventType":"Updated","timestamp":"2024-01-01T00:00:00Z","triggerReason":"Meter'
        'ValuePeriodic","seqNo":%d,"transactionInfo":{"transactionId":"TX1","chargingState":'
        '"Charging"},"meterValue":[{"timestamp":"2024-01-01T00:00:00Z","sampledValue":[{"value":'
        '1.5,"context":"Sample.Periodic","measurand":"Current.Import","phase":"L1","location":'
        '"Outlet","unitOfMeasure":{"unit":"A"}}]}]}'
    )
    first = record_from_transaction_event(json.loads(text % 1), version=V201)[1]
    second = record_from_transaction_event(json.loads(text % 2), version=V201)[1]
    a, b = first.samples[0], second.samples[0]
    assert (a.measurand, a.unit, a.context, a.phase, a.location) == (
        "Current.Import", "A", "Sample.Periodic", "L1", "Outlet",
    )  # fmt: skip
    for name in ("measurand", "unit", "context", "phase", "location"):
        assert getattr(a, name) is getattr(b, name), name
    assert first.trigger_reason is second.trigger_reason
    assert first.charging_state is second.charging_state


def test_shared_words_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A station sending words of its own (a 2.x unit is free text) cannot make the shared
    copies grow without bound: past the limit, a new word is kept as it came."""
    monkeypatch.setattr(wire, "_WORDS", {})
    monkeypatch.setattr(wire, "_WORDS_KEPT", 2)
    first, second = "".join(["k", "Wh"]), "".join(["k", "Wh"])
    assert first is not second
    assert wire.as_word(first) is first
    assert wire.as_word(second) is first  # shared
    assert wire.as_word("".join(["V", "A"])) is not None
    third = "".join(["v", "ar"])
    assert wire.as_word(third) is third
    assert len(wire._WORDS) == 2
    assert wire.as_word(1) is None


def test_units_and_phases() -> None:
    entry = {
        "timestamp": "2024-01-01T00:00:00Z",
        "sampledValue": [
            {"value": 1.5, "unitOfMeasure": {"unit": "kWh"}},
            {"value": 2, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
            {"value": 7, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
            {"value": 5, "phase": "L1"},
            {"value": 9, "location": "EV"},
        ],
    }
    samples = samples_from_meter_values([entry], V201)
    assert [(s.value, s.unit, s.is_energy_register) for s in samples] == [
        (1500, "Wh", True),
        (2000, "Wh", True),
        (7000, "W", False),
        (5, "Wh", False),
        (9, "Wh", False),
    ]
    v16 = {
        "timestamp": "2024-01-01T00:00:00Z",
        "sampledValue": [{"value": "2.5", "unit": "kWh"}, {"value": "abc", "format": "SignedData"}],
    }
    assert [s.value for s in samples_from_meter_values([v16], V16)] == [2500]


def test_samples_beyond_a_float_are_skipped() -> None:
    """The schema bounds neither a value nor its multiplier: what no float can hold once in
    base units is skipped, not raised (and never stored as an infinity)."""
    entry = {
        "timestamp": "2024-01-01T00:00:00Z",
        "sampledValue": [
            {"value": 1, "unitOfMeasure": {"multiplier": 400}},
            {"value": 10**400},
            {"value": 1e306, "unitOfMeasure": {"unit": "kWh"}},
            {"value": 2, "unitOfMeasure": {"multiplier": -400}},
            {"value": 3},
        ],
    }
    assert [s.value for s in samples_from_meter_values([entry], V201)] == [0.0, 3]


def test_transaction_id_counter() -> None:
    counter = TransactionIdCounter(next_id=2**31 - 1)
    assert [counter.allocate("A"), counter.allocate("B")] == [2**31 - 1, 1]
    assert counter.next_id == 2
    with pytest.raises(ValueError, match="next_id"):
        TransactionIdCounter(next_id=0)


# -- transaction tasks over a memory transport ---------------------------------------------------


@asynccontextmanager
async def collecting(station: Station) -> AsyncIterator[list[MachineEvent]]:
    seen: list[MachineEvent] = []

    async def listen(task_status: trio.TaskStatus[None]) -> None:
        async with station.machines.subscribe(MachineEvent) as events:
            task_status.started()
            async for e in events:
                seen.append(e)

    async with trio.open_nursery() as nursery:
        await nursery.start(listen)
        yield seen
        nursery.cancel_scope.cancel()


async def boot(fake: FakeStation) -> None:
    assert not isinstance(await fake.exchange(boot_request(fake.version)), CallError)


async def test_out_of_order_and_offline_events_always_answered(autojump_clock: Any) -> None:
    config = StationConfig(machines=MachinesConfig(late_event_window=30))
    async with running_station(boot_router(), config=config) as (station, fake):
        async with collecting(station) as seen:
            await boot(fake)
            events = session()
            # Ended first, then the rest late (offline) and one twice
            for request in [events[4], events[0], events[2], events[2], events[1]]:
                assert isinstance(await fake.exchange(request), m.TransactionEventResponse)
            await station.settle()
            tx = station.transactions["TX1"]
            assert tx.missing_seq_nos == (3,)
            assert tx.duplicates == 1
            assert station.statistics().machines is not None
            assert station.statistics().machines.transaction_tasks == 1  # waiting for seqNo 3
            start = trio.current_time()
            await trio.sleep(29)
            assert station.statistics().machines.transaction_tasks == 1  # type: ignore[union-attr]
            await trio.sleep(2)
            # the window after the Ended event passed: the task ended, the record is kept
            assert station.statistics().machines.transaction_tasks == 0  # type: ignore[union-attr]
            assert trio.current_time() - start == 31
            assert "TX1" not in station.transactions
            finished = station.machines.transaction("TX1")
            assert finished is not None
            assert finished.missing_seq_nos == (3,)
            # the missing event arrives even later: applied, and the transaction completes
            assert isinstance(await fake.exchange(events[3]), m.TransactionEventResponse)
            await station.settle()
            done = station.machines.transaction("TX1")
            assert done is not None
            assert done.complete
            assert done.energy_wh == 3000
            assert station.statistics().machines.transaction_tasks == 0  # type: ignore[union-attr]
        kinds = [type(e) for e in seen if isinstance(e, TransactionChanged)]
        assert kinds == [
            TransactionStarted,
            TransactionEnded,
            TransactionUpdated,
            TransactionUpdated,
            TransactionUpdated,
            TransactionUpdated,
        ]


async def test_a_huge_seqno_is_answered_and_costs_nothing_special(autojump_clock: Any) -> None:
    """seqNo is not bounded by the schema: an Ended event numbered 10**12 after a Started
    numbered 0 leaves a gap that is counted, and listed only in part (it used to be listed in
    full, on every look at the transaction: minutes of CPU and all the memory for one
    message)."""
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        assert isinstance(
            await fake.exchange(event("Started", 0, 1000)), m.TransactionEventResponse
        )
        ended = attrs.evolve(event("Ended", 1, 2000), seq_no=10**12)
        assert isinstance(await fake.exchange(ended), m.TransactionEventResponse)
        await station.settle()
        tx = station.transactions["TX1"]
        assert tx.ended
        assert not tx.complete
        assert tx.missing_count == 10**12 - 1
        assert tx.missing_seq_nos[:3] == (1, 2, 3)
        assert len(tx.missing_seq_nos) == MISSING_LISTED
        # still served
        answer = await fake.exchange(status_notification(V201, 1, 1))
        assert isinstance(answer, m.StatusNotificationResponse)


async def test_unknown_transaction_still_answered_and_recorded(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        answer = await fake.exchange(event("Updated", 7, 500.0, tx="NEVER-STARTED"))
        assert isinstance(answer, m.TransactionEventResponse)
        answer = await fake.exchange(event("Ended", 9, 900.0, tx="ALSO-UNKNOWN"))
        assert isinstance(answer, m.TransactionEventResponse)
        await station.settle()
        assert not station.transactions["NEVER-STARTED"].started
        ended = station.machines.transaction("ALSO-UNKNOWN")
        assert ended is not None
        assert ended.ended
        assert not ended.started


async def test_authorization_through_the_applications_handler(autojump_clock: Any) -> None:
    router = boot_router()
    asked: list[str] = []

    @router.on(m.AuthorizeRequest)
    async def authorize(station: Station, request: m.AuthorizeRequest) -> m.AuthorizeResponse:
        asked.append(request.id_token.id_token)
        status = m.AuthorizationStatusEnumType.BLOCKED
        return m.AuthorizeResponse(id_token_info=m.IdTokenInfoType(status=status))

    async with running_station(router) as (_station, fake):
        await boot(fake)
        answer: Any = await fake.exchange(session()[0])
        assert answer.id_token_info.status == "Blocked"
        answer = await fake.exchange(session()[1])  # no idToken: nothing to authorize
        assert answer.id_token_info is None
        assert asked == ["T1"]


async def test_application_handler_first_and_rescued_when_it_fails(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    router = boot_router()
    calls: list[int] = []

    @router.on(m.TransactionEventRequest)
    async def on_event(
        station: Station, request: m.TransactionEventRequest
    ) -> m.TransactionEventResponse:
        calls.append(request.seq_no)
        if request.seq_no == 1:
            raise ZeroDivisionError("oops")
        return m.TransactionEventResponse(total_cost=1.5)

    async with running_station(router) as (station, fake):
        await boot(fake)
        first: Any = await fake.exchange(session()[0])
        assert first.total_cost == 1.5
        second = await fake.exchange(session()[1])
        assert isinstance(second, m.TransactionEventResponse)  # not InternalError
        await station.settle()
        assert station.transactions["TX1"].seq_nos == (0, 1)
        assert calls == [0, 1]
    assert any("answered by default" in r.getMessage() for r in caplog.records)


async def test_fallback_declining_leaves_it_to_the_defaults(autojump_clock: Any) -> None:
    from ocpp_trio import CallError, ErrorCode

    router = boot_router()

    @router.fallback
    async def decline(station: Station, request: Any) -> Any:
        raise CallError(ErrorCode.NOT_SUPPORTED, "not mine")

    async with running_station(router) as (_station, fake):
        await boot(fake)
        assert isinstance(await fake.exchange(session()[0]), m.TransactionEventResponse)
        # an action without a default: the fallback's NotSupported goes out
        request = m.AuthorizeRequest(
            id_token=m.IdTokenType(id_token="T", type=m.IdTokenEnumType.ISO14443)
        )
        failed = await fake.exchange(request)
        assert isinstance(failed, CallError)
        assert failed.code is ErrorCode.NOT_SUPPORTED


def start_16(
    connector: int = 1, meter: int = 100, tag: str = "TAG"
) -> v1_6.StartTransactionRequest:
    return v1_6.StartTransactionRequest(
        connector_id=connector, id_tag=tag, meter_start=meter, timestamp=T0
    )


def meter_16(tx: int, connector: int, value: str, unit: str = "Wh") -> v1_6.MeterValuesRequest:
    sample = v1_6.SampledValue(value=value, unit=v1_6.UnitOfMeasure(unit))
    return v1_6.MeterValuesRequest(
        connector_id=connector,
        transaction_id=tx,
        meter_value=(v1_6.MeterValue(timestamp=T0, sampled_value=(sample,)),),
    )


def stop_16(tx: int, meter: int) -> v1_6.StopTransactionRequest:
    end = v1_6.SampledValue(value=str(meter), context=v1_6.ReadingContext.TRANSACTION_END)
    return v1_6.StopTransactionRequest(
        transaction_id=tx,
        meter_stop=meter,
        timestamp=T0 + datetime.timedelta(hours=1),
        reason=v1_6.Reason.LOCAL,
        transaction_data=(v1_6.TransactionData(timestamp=T0, sampled_value=(end,)),),
    )


async def test_16_start_meter_stop(autojump_clock: Any) -> None:
    async with running_station(boot_router(), V16) as (station, fake):
        await boot(fake)
        started: Any = await fake.exchange(start_16())
        assert started.id_tag_info.status == "Accepted"  # no Authorize handler: the default
        tx = started.transaction_id
        again: Any = await fake.exchange(start_16())  # a retried StartTransaction: the same id
        await station.settle()
        assert again.transaction_id == tx
        other: Any = await fake.exchange(start_16(connector=2, meter=5))
        assert other.transaction_id != tx
        await fake.exchange(meter_16(tx, 1, "0.6", "kWh"))
        await fake.exchange(stop_16(tx, 900))
        await station.settle()
        done = station.machines.transaction(tx)
        assert done is not None
        assert done.complete
        assert (done.meter_start_wh, done.meter_stop_wh, done.energy_wh) == (100, 900, 800)
        assert done.duplicates == 1
        assert [s.value for s in done.samples] == [600, 900]
        assert done.stopped_reason == "Local"
        assert list(station.transactions) == [str(other.transaction_id)]


async def test_16_ids_are_csms_wide_and_injectable(autojump_clock: Any) -> None:
    counter = TransactionIdCounter(next_id=500)
    csms = CSMS(boot_router(), config=CSMSConfig(transaction_ids=counter))
    async with trio.open_nursery() as nursery:
        ids = []
        for name in ("A", "B"):
            ours, theirs = memory_transport_pair()
            await nursery.start(partial(csms.serve_station, ours, name, V16))
            fake = FakeStation(theirs, V16)
            await boot(fake)
            answer: Any = await fake.exchange(start_16())
            ids.append(answer.transaction_id)
        assert ids == [500, 501]
        assert counter.next_id == 502
        nursery.cancel_scope.cancel()


async def test_remote_start_and_stop_2x(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:
            result: list[Transaction] = []

            async def start() -> None:
                result.append(await station.remote_start("T1", evse_id=2))

            nursery.start_soon(start)
            call = await fake.expect_call()
            assert call.action == "RequestStartTransaction"
            remote_id = call.request.remote_start_id  # type: ignore[attr-defined]
            ok = m.RequestStartStopStatusEnumType.ACCEPTED
            await fake.answer(call, m.RequestStartTransactionResponse(status=ok))
            await trio.sleep(5)
            await fake.exchange(
                event("Started", 0, 10.0, tx="R1", evse=2, remote_start_id=remote_id)
            )
        assert result[0].transaction_id == "R1"
        assert station.machines.remote_starts == {}
        async with trio.open_nursery() as nursery:
            stopped: list[Transaction] = []

            async def stop() -> None:
                stopped.append(await station.remote_stop("R1"))

            nursery.start_soon(stop)
            call = await fake.expect_call()
            assert call.action == "RequestStopTransaction"
            await fake.answer(call, m.RequestStopTransactionResponse(status=ok))
            await fake.exchange(event("Ended", 1, 30.0, tx="R1", evse=2))
        assert stopped[0].energy_wh == 20
        # a remote start that never leads to a transaction times out
        async with trio.open_nursery() as nursery:

            async def accept() -> None:
                await fake.answer(
                    await fake.expect_call(), m.RequestStartTransactionResponse(status=ok)
                )

            nursery.start_soon(accept)
            before = trio.current_time()
            with pytest.raises(TransactionTimeoutError):
                await station.remote_start("T2", wait_timeout=10)
            assert trio.current_time() - before == 10


async def test_remote_start_16_matched_by_tag_and_connector(autojump_clock: Any) -> None:
    async with running_station(boot_router(), V16) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:
            result: list[Transaction] = []

            async def start() -> None:
                result.append(await station.remote_start("tag", evse_id=2))

            nursery.start_soon(start)
            call = await fake.expect_call()
            assert call.action == "RemoteStartTransaction"
            await fake.answer(
                call,
                v1_6.RemoteStartTransactionResponse(status=v1_6.RemoteStartStopStatus.ACCEPTED),
            )
            await fake.exchange(start_16(connector=1, tag="TAG"))  # another connector: no match
            await fake.exchange(start_16(connector=2, tag="TAG"))  # idTags are case-insensitive
        assert result[0].evse_id == 2
        assert result[0].remote_start_id is not None
        unmatched = [t for t in station.transactions.values() if t.evse_id == 1]
        assert unmatched[0].remote_start_id is None


async def test_many_transactions_on_many_evses_no_cross_talk(autojump_clock: Any) -> None:
    """20 transactions interleaved on 10 EVSEs; each assembles its own events; every task
    ends with its transaction, and nothing is left once the station closes."""
    ours, theirs = memory_transport_pair()
    station = Station("CS1", V201, ours, boot_router())
    fake = FakeStation(theirs, V201)
    async with trio.open_nursery() as nursery:
        await nursery.start(station.run)
        await boot(fake)
        for evse in range(1, 11):
            await fake.exchange(status_notification(V201, evse, 1))
        plans = [session(f"TX{i}", evse=i % 10 + 1, base=1000.0 * i) for i in range(20)]
        for step in range(5):
            for plan in plans:
                await fake.exchange(plan[step])
            await station.settle()
            stats = station.statistics().machines
            assert stats is not None
            assert stats.transaction_tasks == (20 if step < 4 else 0)
        for i in range(20):
            tx = station.machines.transaction(f"TX{i}")
            assert tx is not None
            assert tx.complete
            assert tx.energy_wh == 3000
            assert tx.meter_start_wh == 1000.0 * i
            assert tx.evse_id == i % 10 + 1
            assert tx.seq_nos == (0, 1, 2, 3, 4)
        stats = station.statistics().machines
        assert stats is not None
        assert stats.evse_tasks == 10  # EVSEs 1-10; nothing changed EVSE 0
        assert sorted(station.evses) == list(range(11))
        await station.aclose()
        after = station.statistics().machines
        assert after is not None
        assert (after.evse_tasks, after.transaction_tasks, after.report_tasks) == (0, 0, 0)
        assert len(nursery.child_tasks) == 0


async def test_tasks_are_children_of_the_station_nursery(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        for request in session()[:2]:
            await fake.exchange(request)
        await station.settle()
        tasks = _tasks(trio.lowlevel.current_root_task())
        tx_task = next(t for t in tasks if t.name == "transaction CS1/TX1")
        # transaction task -> Station.run (the station nursery, beside the handler runner)
        assert tx_task.parent_nursery.parent_task.name.endswith("Station.run")
        siblings = {t.name for t in tx_task.parent_nursery.child_tasks}
        assert any(name.endswith("RpcSession._run_handlers") for name in siblings)
        await station.aclose()
        names = [t.name for t in _tasks(trio.lowlevel.current_root_task())]
        assert not any(n.startswith(("transaction ", "evse ", "report ")) for n in names)


def _tasks(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    found = [task]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found += _tasks(child)
    return found


async def test_open_transactions_survive_a_reconnect(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        ours, theirs = memory_transport_pair()
        first: Station = await nursery.start(partial(csms.serve_station, ours, "CS1", V201))
        fake = FakeStation(theirs, V201)
        await boot(fake)
        for request in session()[:3]:
            await fake.exchange(request)
        await first.aclose()
        machines = csms.machines("CS1")
        assert machines is not None
        assert machines.statistics().transaction_tasks == 0
        assert machines.transactions["TX1"].seq_nos == (0, 1, 2)
        ours, theirs = memory_transport_pair()
        second: Station = await nursery.start(partial(csms.serve_station, ours, "CS1", V201))
        fake = FakeStation(theirs, V201)
        await boot(fake)
        await second.settle()
        assert second.statistics().machines.transaction_tasks == 1  # type: ignore[union-attr]
        for request in session()[3:]:
            await fake.exchange(request)
        await second.settle()
        done = machines.transaction("TX1")
        assert done is not None
        assert done.complete
        assert done.energy_wh == 3000
        nursery.cancel_scope.cancel()


async def test_default_answers_can_be_turned_off(autojump_clock: Any) -> None:
    config = StationConfig(machines=MachinesConfig(default_answers=False))
    async with running_station(Router(), config=config) as (station, fake):
        station.router.set_default_boot()
        await boot(fake)
        failed = await fake.exchange(session()[0])
        assert isinstance(failed, CallError)
        await station.settle()
        assert "TX1" in station.transactions  # still recorded


async def test_answered_events_are_recorded_when_the_connection_ends_at_once(
    autojump_clock: Any,
) -> None:
    """Everything the station got an answer for is recorded, even if the connection closes
    before the tasks applied it (the queued work is applied while the tasks wind down)."""
    for burst in (1, 3, 5):
        ours, theirs = memory_transport_pair()
        station = Station("CS1", V201, ours, boot_router())
        fake = FakeStation(theirs, V201)
        async with trio.open_nursery() as nursery:
            await nursery.start(station.run)
            await boot(fake)
            for request in session()[:burst]:
                await fake.exchange(request)
            await station.aclose()  # no settle()
        tx = station.machines.transaction("TX1")
        assert tx is not None
        assert tx.seq_nos == tuple(range(burst))


TYPED_USE = """\
from typing import assert_type

from ocpp_trio.csms.core import CSMS
from ocpp_trio.runtime.events import Disconnected
from ocpp_trio import TransactionChanged, TransactionEnded
from ocpp_trio.domain.reports import Report
from ocpp_trio.domain.transactions import Transaction


async def use(csms: CSMS) -> None:
    async with csms.subscribe_events(TransactionEnded) as ended:
        async for event in ended:
            assert_type(event, TransactionEnded)
            assert_type(event.transaction, Transaction)
            assert_type(event.transaction.energy_wh, float | None)
    async with csms.subscribe_transactions(identity="CS1") as changes:
        async for change in changes:
            assert_type(change, TransactionChanged)
    async with csms.subscribe_events(Disconnected) as gone:
        async for disconnected in gone:
            assert_type(disconnected, Disconnected)
    station = csms.get_station("CS1")
    assert station is not None
    assert_type(await station.get_base_report(), Report)
    assert_type(await station.remote_stop("TX1"), Transaction)
    csms.subscribe_events(int)  # not an event class
"""


@pytest.mark.slow
def test_subscriptions_and_helpers_are_typed(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    source = tmp_path / "typed_use.py"
    source.write_text(TYPED_USE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(source)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout + result.stderr
    assert f"typed_use.py:{TYPED_USE.count(chr(10))}:" in errors[0]
    assert 'Value of type variable "E"' in errors[0]
