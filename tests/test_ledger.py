"""The transaction ledger: its records, the stores' queries, what the CSMS writes (in the commit
of the exchange that ends a transaction), reboots and late accounts, retention, the admin API's
``state=ended`` view and the CSV export."""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from helpers.admin import TOKEN, http
from helpers.csms import boot, connect, csms_on
from helpers.recovery import CutStore, boot_and_charge, call, served_then_cut
from helpers.station import FakeStation, boot_router

from ocpp_trio import CSMS, Ledger, LedgerConfig, LedgerEntry, LedgerQuery, Version
from ocpp_trio.cli.main import main
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.domain.ledger import decode_cursor, encode_cursor, ledger_entry, utc_text
from ocpp_trio.domain.transactions import (
    Sample,
    Transaction,
    TransactionEventKind,
    TransactionEventRecord,
)
from ocpp_trio.messages import Request
from ocpp_trio.runtime.station import Station
from ocpp_trio.store.base import Append, PutLedgerEntry, Store, StoreOp
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.sqlite import open_sqlite_store

V16, V201, V21 = Version.V16, Version.V201, Version.V21
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
TS = "2024-05-01T12:00:00Z"


def at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def entry(
    identity: str = "CS1",
    transaction_id: str = "TX1",
    ended: float = 10,
    *,
    token: str | None = "TAG",
    recorded: datetime.datetime = T0,
    **fields: Any,
) -> LedgerEntry:
    return LedgerEntry(
        identity=identity,
        transaction_id=transaction_id,
        version=V201,
        id_token=token,
        started_at=at(0),
        ended_at=at(ended),
        recorded_at=recorded,
        **fields,
    )


def tx_event(
    kind: str,
    seq: int,
    value: float,
    *,
    version: Version = V201,
    tx: str = "TX1",
    minute: int = 0,
    **info: Any,
) -> Request[Any]:
    stamp = (T0 + datetime.timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": stamp,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx, **info},
        "meterValue": [{"timestamp": stamp, "sampledValue": [{"value": value}]}],
    }
    if kind == "Started":
        payload["evse"] = {"id": 1, "connectorId": 1}
        payload["idToken"] = {"idToken": "TAG", "type": "ISO14443"}
    return call(version, "TransactionEvent", payload)


def start_16(meter: int, connector: int = 1) -> Request[Any]:
    return call(
        V16,
        "StartTransaction",
        {"connectorId": connector, "idTag": "TAG16", "meterStart": meter, "timestamp": TS},
    )


def stop_16(transaction_id: int, meter: int, reason: str = "Local") -> Request[Any]:
    return call(
        V16,
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": meter, "timestamp": TS, "reason": reason},
    )


class RecordingStore(MemoryStore):
    """A memory store that keeps every committed batch of writes."""

    def __init__(self) -> None:
        super().__init__(serialize=True)
        self.batches: list[list[StoreOp]] = []

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        self.batches.append(list(ops))
        return await super().commit(ops)


async def all_entries(store: Store, **filters: Any) -> list[LedgerEntry]:
    page = await store.ledger(LedgerQuery(limit=1000, **filters))
    assert page.cursor is None
    return list(page.entries)


# -- records -------------------------------------------------------------------------------------


def test_an_entry_holds_what_the_transaction_says() -> None:
    start = TransactionEventRecord(
        kind=TransactionEventKind.STARTED,
        timestamp=at(0),
        seq_no=0,
        id_token="TAG",
        evse_id=2,
        connector_id=1,
        samples=(Sample(timestamp=at(0), value=1000.0, context="Transaction.Begin"),),
    )
    end = TransactionEventRecord(
        kind=TransactionEventKind.ENDED,
        timestamp=at(30),
        seq_no=2,
        stopped_reason="EVDisconnected",
        samples=(Sample(timestamp=at(30), value=4500.0, context="Transaction.End"),),
    )
    open_tx = Transaction(identity="CS1", transaction_id="TX1", version=V201, events=(start,))
    with pytest.raises(ValueError, match="has not ended"):
        ledger_entry(open_tx, T0)
    done = ledger_entry(attrs.evolve(open_tx, events=(start, end)), at(31))
    assert (done.identity, done.transaction_id, done.evse_id, done.connector_id) == (
        "CS1",
        "TX1",
        2,
        1,
    )
    assert (done.started_at, done.ended_at, done.stopped_reason) == (
        at(0),
        at(30),
        "EVDisconnected",
    )
    assert (done.meter_start_wh, done.meter_stop_wh, done.energy_wh) == (1000.0, 4500.0, 3500.0)
    assert (done.missing_seq_nos, done.events, len(done.samples)) == ((1,), 2, 2)
    assert not done.provisional
    assert done.key == (utc_text(at(30)), "CS1", "TX1")


def test_cursors_and_queries_are_checked() -> None:
    key = (utc_text(T0), "CS 1", "TX-é")
    assert decode_cursor(encode_cursor(key)) == key
    for bad in ("", "!!", encode_cursor(key)[:-3], "WzFd"):
        with pytest.raises(ValueError, match="not a ledger cursor"):
            decode_cursor(bad)
    with pytest.raises(ValueError, match="timezone"):
        LedgerQuery(since=datetime.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="limit"):
        LedgerQuery(limit=0)
    with pytest.raises(ValueError, match="limit"):
        LedgerQuery(limit=1001)
    with pytest.raises(ValueError, match="cursor"):
        LedgerQuery(after="nope")
    # UTC text sorts as the times do, whatever offset they were given in
    east = datetime.timezone(datetime.timedelta(hours=2))
    assert utc_text(datetime.datetime(2024, 5, 1, 13, 0, tzinfo=east)) < utc_text(at(1))


# -- the stores ----------------------------------------------------------------------------------


async def test_store_ledger_filters_pages_and_replaces(store: Store) -> None:
    one = await store.claim("CS1", V201)
    two = await store.claim("CS2", V201)
    writes: list[StoreOp] = [
        PutLedgerEntry(identity="CS1", epoch=one.epoch, entry=entry("CS1", "A", 10)),
        PutLedgerEntry(identity="CS1", epoch=one.epoch, entry=entry("CS1", "B", 30)),
        PutLedgerEntry(identity="CS2", epoch=two.epoch, entry=entry("CS2", "A", 20, token="X")),
        PutLedgerEntry(identity="CS2", epoch=two.epoch, entry=entry("CS2", "C", 30)),
        PutLedgerEntry(identity="CS1", epoch=one.epoch, entry=entry("CS1", "D", 40)),
    ]
    assert await store.commit(writes) == frozenset()
    keys = [(e.identity, e.transaction_id) for e in await all_entries(store)]
    # by end time, then station, then transaction id
    assert keys == [("CS1", "A"), ("CS2", "A"), ("CS1", "B"), ("CS2", "C"), ("CS1", "D")]
    # pages of two, by cursor
    seen: list[tuple[str, str]] = []
    after: str | None = None
    pages = 0
    while True:
        page = await store.ledger(LedgerQuery(limit=2, after=after))
        pages += 1
        seen += [(e.identity, e.transaction_id) for e in page.entries]
        if page.cursor is None:
            break
        after = page.cursor
    assert (seen, pages) == (keys, 3)
    # filters
    assert [e.transaction_id for e in await all_entries(store, station="CS2")] == ["A", "C"]
    assert [e.identity for e in await all_entries(store, id_token="X")] == ["CS2"]
    window = await all_entries(store, since=at(20), until=at(40))
    assert [(e.identity, e.transaction_id) for e in window] == keys[1:4]
    # a write for the same transaction replaces its entry
    corrected = entry("CS1", "A", 50, stopped_reason="Local")
    await store.commit([PutLedgerEntry(identity="CS1", epoch=one.epoch, entry=corrected)])
    found = await all_entries(store, station="CS1")
    assert [(e.transaction_id, e.stopped_reason) for e in found] == [
        ("B", None),
        ("D", None),
        ("A", "Local"),
    ]
    # fenced like the other station writes
    await store.claim("CS1", V201)
    stale = PutLedgerEntry(identity="CS1", epoch=one.epoch, entry=entry("CS1", "Z", 5))
    assert await store.commit([stale]) == frozenset({"CS1"})
    assert len(await all_entries(store)) == 5
    # the ledger outlives the station's record
    await store.forget("CS2")
    assert len(await all_entries(store, station="CS2")) == 2


async def test_store_prunes_by_the_time_an_entry_was_written(store: Store) -> None:
    record = await store.claim("CS1", V201)
    old = entry("CS1", "OLD", 500, recorded=at(0))  # ended late, written early
    new = entry("CS1", "NEW", 1, recorded=at(60))
    await store.commit(
        [PutLedgerEntry(identity="CS1", epoch=record.epoch, entry=e) for e in (old, new)]
    )
    assert await store.prune_ledger(at(30)) == 1
    assert [e.transaction_id for e in await all_entries(store)] == ["NEW"]
    assert await store.prune_ledger(at(30)) == 0


async def test_sqlite_keeps_the_entries_whole(tmp_path: Path) -> None:
    samples = (
        Sample(timestamp=at(0), value=1.5, context="Transaction.Begin"),
        Sample(
            timestamp=at(1), value=7200.0, measurand="Power.Active.Import", unit="W", phase="L1"
        ),
    )
    full = entry(
        samples=samples,
        evse_id=1,
        connector_id=2,
        stop_id_token="STOP",
        stopped_reason="Remote",
        meter_start_wh=1.5,
        meter_stop_wh=9.5,
        energy_wh=8.0,
        remote_start_id=4,
        provisional=True,
        missing_seq_nos=(3, 4),
        events=7,
    )
    async with open_sqlite_store(tmp_path / "ledger.db") as store:
        record = await store.claim("CS1", V201)
        await store.commit([PutLedgerEntry(identity="CS1", epoch=record.epoch, entry=full)])
    async with open_sqlite_store(tmp_path / "ledger.db") as store:
        assert await all_entries(store) == [full]


# -- what the CSMS writes ------------------------------------------------------------------------


def commit_holding(store: RecordingStore, action: str, kind: str) -> list[StoreOp]:
    """The last committed batch holding the journal entry of ``action`` (``eventType``
    ``kind``)."""
    for batch in reversed(store.batches):
        for op in batch:
            if isinstance(op, Append) and op.entry.observation.action == action:
                payload = op.entry.observation.request.to_json()
                if payload.get("eventType", kind) == kind:
                    return batch
    raise AssertionError(f"no commit holds {action} {kind}")


def ledger_writes(batch: list[StoreOp]) -> list[LedgerEntry]:
    return [op.entry for op in batch if isinstance(op, PutLedgerEntry)]


@pytest.mark.parametrize("version", [V201, V21])
async def test_the_end_and_its_ledger_entry_are_one_commit(
    version: Version, autojump_clock: Any
) -> None:
    store = RecordingStore()
    async with csms_on(store) as (csms, nursery):
        _station, fake = await connect(csms, nursery, version)
        await boot(fake)
        await fake.call(tx_event("Started", 0, 1000.0, version=version))
        await fake.call(tx_event("Updated", 1, 1500.0, version=version, minute=10))
        assert await all_entries(store) == []  # nothing while it runs
        await fake.call(
            tx_event("Ended", 2, 1800.0, version=version, minute=20, stoppedReason="EVDisconnected")
        )
        (written,) = ledger_writes(commit_holding(store, "TransactionEvent", "Ended"))
        (stored,) = await all_entries(store)
        assert stored == written
        assert (stored.identity, stored.transaction_id, stored.version) == ("CS1", "TX1", version)
        assert (stored.evse_id, stored.connector_id, stored.id_token) == (1, 1, "TAG")
        assert (stored.started_at, stored.ended_at) == (at(0), at(20))
        assert (stored.meter_start_wh, stored.meter_stop_wh, stored.energy_wh) == (
            1000.0,
            1800.0,
            800.0,
        )
        assert (stored.stopped_reason, stored.provisional) == ("EVDisconnected", False)
        assert [s.value for s in stored.samples] == [1000.0, 1500.0, 1800.0]
        # the same through the CSMS
        page = await csms.ledger.query(station="CS1")
        assert page.entries == (stored,)


async def test_the_end_is_answered_only_once_its_entry_is_stored(autojump_clock: Any) -> None:
    disk = MemoryStore()
    store = CutStore(disk)
    async with csms_on(store) as (csms, nursery):
        _station, fake = await connect(csms, nursery)
        await boot(fake)
        await fake.call(tx_event("Started", 0, 1.0))
        store.gate = trio.Event()
        message_id = await fake.start(tx_event("Ended", 1, 2.0, stoppedReason="Local"))
        assert await fake.nothing_arrives(5.0)
        assert await all_entries(disk) == []
        store.gate.set()
        await fake.reply(message_id)
        (stored,) = await all_entries(disk)
        assert stored.stopped_reason == "Local"


async def test_16_transactions_reach_the_ledger(autojump_clock: Any) -> None:
    store = RecordingStore()
    async with csms_on(store) as (csms, nursery):
        _station, fake = await connect(csms, nursery, V16)
        await boot(fake)
        started = await fake.call(start_16(1000))
        transaction_id = int(getattr(started, "transaction_id"))  # noqa: B009
        await fake.call(stop_16(transaction_id, 4000, "EVDisconnected"))
        stop_batch = next(
            b
            for b in store.batches
            if any(
                isinstance(op, Append) and op.entry.observation.action == "StopTransaction"
                for op in b
            )
        )
        (written,) = ledger_writes(stop_batch)
    assert (written.transaction_id, written.version, written.id_token) == (
        str(transaction_id),
        V16,
        "TAG16",
    )
    assert (written.meter_start_wh, written.meter_stop_wh, written.energy_wh) == (1000, 4000, 3000)
    assert written.stopped_reason == "EVDisconnected"
    assert await all_entries(store) == [written]


async def test_a_gap_filled_after_the_end_updates_the_entry(autojump_clock: Any) -> None:
    store = RecordingStore()
    async with csms_on(store) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake)
        await fake.call(tx_event("Started", 0, 10.0))
        await fake.call(tx_event("Ended", 2, 30.0, minute=5))
        (first,) = await all_entries(store)
        assert first.missing_seq_nos == (1,)
        await fake.call(tx_event("Updated", 1, 20.0, minute=2))
        (second,) = await all_entries(store)
        assert (second.missing_seq_nos, second.events) == ((), 3)
        # and a repeat of the end changes nothing but is stored again, harmlessly
        await fake.call(tx_event("Ended", 2, 30.0, minute=5))
        (third,) = await all_entries(store)
        assert (third.missing_seq_nos, third.events, third.energy_wh) == ((), 3, 20.0)
        await station.settle()


async def test_a_reboot_writes_a_provisional_end_the_station_replaces(
    autojump_clock: Any,
) -> None:
    disk = RecordingStore()
    await served_then_cut(disk, V201, boot_and_charge)  # seqNo 0 to 2, left open
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake, "PowerUp")
        # the CSMS's end is in the boot's own commit
        (provisional,) = ledger_writes(commit_holding(disk, "BootNotification", "-"))
        assert (provisional.provisional, provisional.stopped_reason) == (True, "PowerLoss")
        assert await all_entries(disk) == [provisional]
        await fake.call(tx_event("Ended", 3, 1800.0, minute=9, stoppedReason="EVDisconnected"))
        (final,) = await all_entries(disk)
        assert (final.provisional, final.stopped_reason, final.meter_stop_wh) == (
            False,
            "EVDisconnected",
            1800.0,
        )
        assert final.ended_at == at(9)
        await trio.sleep(csms.config.station.machines.late_event_window + 1)
        await station.settle()
    assert [e.stopped_reason for e in await all_entries(disk)] == ["EVDisconnected"]


async def test_a_resumed_21_transaction_keeps_its_row_until_it_ends_again(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    disk = MemoryStore(serialize=True)

    async def session(_station: Station, fake: FakeStation) -> None:
        await boot(fake)
        await fake.call(tx_event("Started", 0, 100.0, version=V21))

    await served_then_cut(disk, V21, session)
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery, V21)
        await boot(fake, "PowerUp")
        (provisional,) = await all_entries(disk)
        assert provisional.provisional
        # the station resumed the transaction (2.1): open again, the row waits for its end
        await fake.call(tx_event("Updated", 1, 200.0, version=V21, minute=3))
        await station.settle()
        tx = station.transactions["TX1"]
        assert not tx.ended
        assert await all_entries(disk) == [provisional]
        await fake.call(tx_event("Updated", 2, 300.0, version=V21, minute=4))
        await fake.call(tx_event("Ended", 3, 400.0, version=V21, minute=5, stoppedReason="Local"))
        (final,) = await all_entries(disk)
    assert (final.provisional, final.stopped_reason, final.energy_wh) == (False, "Local", 300.0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_late_16_stop_after_the_window_replaces_the_reboot_end(
    autojump_clock: Any,
) -> None:
    disk = MemoryStore(serialize=True)

    async def session(_station: Station, fake: FakeStation) -> None:
        await boot(fake)
        await fake.call(start_16(1000))

    await served_then_cut(disk, V16, session)
    async with csms_on(disk) as (csms, nursery):
        _station, fake = await connect(csms, nursery, V16)
        await boot(fake)
        (provisional,) = await all_entries(disk)
        assert (provisional.provisional, provisional.stopped_reason) == (True, "Reboot")
        await trio.sleep(csms.config.station.machines.late_event_window + 1)
        await fake.call(stop_16(1, 2500, "PowerLoss"))
        (final,) = await all_entries(disk)
    assert (final.transaction_id, final.provisional) == ("1", False)
    assert (final.stopped_reason, final.meter_stop_wh, final.energy_wh) == ("PowerLoss", 2500, 1500)


async def test_the_ledger_reads_a_page_at_a_time(autojump_clock: Any) -> None:
    store = MemoryStore()
    async with csms_on(store) as (csms, nursery):
        for identity in ("CS1", "CS2"):
            _station, fake = await connect(csms, nursery, identity=identity)
            await boot(fake)
            for n in range(3):
                tx = f"{identity}-{n}"
                await fake.call(tx_event("Started", 0, 0.0, tx=tx, minute=n))
                await fake.call(tx_event("Ended", 1, 100.0 * n, tx=tx, minute=n + 1))
        ledger = csms.ledger
        everything = [e.transaction_id async for e in ledger.iterate(page_size=1)]
        assert everything == ["CS1-0", "CS2-0", "CS1-1", "CS2-1", "CS1-2", "CS2-2"]
        mine = [e.transaction_id async for e in ledger.iterate(station="CS2", since=at(2))]
        assert mine == ["CS2-1", "CS2-2"]
        page = await ledger.query(limit=4)
        assert len(page.entries) == 4
        assert page.cursor is not None
        rest = await ledger.query(after=page.cursor)
        assert [e.transaction_id for e in rest.entries] == ["CS1-2", "CS2-2"]
        assert rest.cursor is None


async def test_no_store_no_ledger() -> None:
    csms = CSMS(boot_router())
    with pytest.raises(RuntimeError, match="no ledger"):
        _ = csms.ledger


async def test_retention_prunes_while_the_csms_runs(autojump_clock: Any) -> None:
    store = MemoryStore()
    record = await store.claim("CS1", V201)
    now = datetime.datetime.now(datetime.UTC)
    old = entry("CS1", "OLD", recorded=now - datetime.timedelta(days=40))
    fresh = entry("CS1", "FRESH", recorded=now)
    await store.commit(
        [PutLedgerEntry(identity="CS1", epoch=record.epoch, entry=e) for e in (old, fresh)]
    )
    assert await Ledger(store).prune() == 0  # no retention: keeps everything
    config = LedgerConfig(retention=datetime.timedelta(days=30), prune_every=60.0)
    async with csms_on(store, ledger=config):
        await trio.testing.wait_all_tasks_blocked()
        assert [e.transaction_id for e in await all_entries(store)] == ["FRESH"]
    with pytest.raises(ValueError, match="positive"):
        LedgerConfig(retention=datetime.timedelta(0))


# -- the admin API -------------------------------------------------------------------------------


async def fill(store: Store, count: int, identity: str = "CS1") -> None:
    record = await store.claim(identity, V201)
    await store.commit(
        [
            PutLedgerEntry(
                identity=identity,
                epoch=record.epoch,
                entry=entry(
                    identity,
                    f"T{n}",
                    n,
                    samples=(Sample(timestamp=at(n), value=float(n), context="Transaction.End"),),
                ),
            )
            for n in range(count)
        ]
    )


async def test_admin_pages_through_the_ledger() -> None:
    store = MemoryStore()
    await fill(store, 5)
    await fill(store, 2, "CS2")
    with trio.fail_after(10):
        async with csms_on(store) as (csms, nursery):
            info: AdminInfo = await nursery.start(
                partial(serve_admin, csms, "127.0.0.1", 0, config=AdminConfig(token=TOKEN))
            )
            port = info.port
            first = await http(port, "GET", "/transactions?state=ended&limit=3")
            assert first.status == 200
            assert [t["transactionId"] for t in first.body["transactions"]] == ["T0", "T0", "T1"]
            cursor = first.body["nextCursor"]
            assert cursor
            rest = await http(port, "GET", f"/transactions?state=ended&cursor={cursor}")
            assert [t["transactionId"] for t in rest.body["transactions"]] == [
                "T1",
                "T2",
                "T3",
                "T4",
            ]
            assert rest.body["nextCursor"] is None
            since = "2024-05-01T12:02:00Z"
            one = await http(port, "GET", f"/transactions?state=ended&station=CS1&since={since}")
            body = one.body["transactions"]
            assert [t["transactionId"] for t in body] == ["T2", "T3", "T4"]
            assert body[0] | {"samples": 1} == body[0]  # a count unless asked for
            assert body[0]["endedAt"] == since
            assert (body[0]["state"], body[0]["station"], body[0]["provisional"]) == (
                "ended",
                "CS1",
                False,
            )
            full = await http(port, "GET", "/transactions?state=ended&station=CS2&samples=true")
            assert full.body["transactions"][1]["samples"] == [
                {
                    "timestamp": "2024-05-01T12:01:00Z",
                    "value": 1.0,
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                    "context": "Transaction.End",
                }
            ]
            until = await http(port, "GET", "/transactions?state=ended&until=2024-05-01T12:01Z")
            assert [t["station"] for t in until.body["transactions"]] == ["CS1", "CS2"]
            for bad, word in [
                ("limit=0", "limit"),
                ("limit=x", "limit"),
                ("since=yesterday", "since"),
                ("cursor=zzz", "cursor"),
                ("samples=maybe", "samples"),
            ]:
                answer = await http(port, "GET", f"/transactions?state=ended&{bad}")
                assert answer.status == 400, bad
                assert word in answer.body["error"], answer.body
            wrong = await http(port, "GET", "/transactions?state=open&since=2024-01-01")
            assert wrong.status == 400
            # the open view as before
            still = await http(port, "GET", "/transactions?state=open")
            assert (still.status, still.body) == (200, {"transactions": [], "nextCursor": None})


async def test_admin_without_a_store_keeps_the_recent_view() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            csms = CSMS(boot_router())
            await nursery.start(csms.run)
            info: AdminInfo = await nursery.start(
                partial(serve_admin, csms, "127.0.0.1", 0, config=AdminConfig(token=TOKEN))
            )
            recent = await http(info.port, "GET", "/transactions?state=ended")
            assert (recent.status, recent.body) == (200, {"transactions": [], "nextCursor": None})
            paged = await http(info.port, "GET", "/transactions?state=ended&limit=5")
            assert paged.status == 400
            assert "no store" in paged.body["error"]
            nursery.cancel_scope.cancel()


# -- the CSV export ------------------------------------------------------------------------------


def make_db(path: Path) -> None:
    async def write() -> None:
        async with open_sqlite_store(path) as store:
            await fill(store, 3)
            await fill(store, 1, "CS2")

    trio.run(write)


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, str]], str]:
    status = main(["export", "transactions", *args])
    out, err = capsys.readouterr()
    return status, list(csv.DictReader(io.StringIO(out))), err


def test_export_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "csms.db"
    make_db(db)
    status, rows, _ = export(capsys, "--db", str(db), "--since", "2024-05-01")
    assert status == 0
    assert [(r["station"], r["transaction_id"]) for r in rows] == [
        ("CS1", "T0"),
        ("CS2", "T0"),
        ("CS1", "T1"),
        ("CS1", "T2"),
    ]
    assert rows[2]["ended_at"] == "2024-05-01T12:01:00Z"
    assert (rows[2]["id_token"], rows[2]["samples"], rows[2]["provisional"]) == (
        "TAG",
        "1",
        "false",
    )
    assert rows[2]["energy_wh"] == ""  # unknown: empty
    status, rows, _ = export(
        capsys,
        "--db",
        str(db),
        "--since",
        "2024-05-01T12:01:00+00:00",
        "--until",
        "2024-05-01T12:02Z",
    )
    assert [r["transaction_id"] for r in rows] == ["T1"]
    status, rows, _ = export(capsys, "--db", str(db), "--since", "2024-01-01", "--station", "CS2")
    assert [r["station"] for r in rows] == ["CS2"]
    out = tmp_path / "out.csv"
    status, rows, _ = export(capsys, "--db", str(db), "--since", "2024-05-01", "-o", str(out))
    assert (status, rows) == (0, [])
    assert len(list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))) == 4


def test_export_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "none.db"
    status, rows, _ = export(capsys, "--db", str(missing), "--since", "2024-05-01")
    assert (status, rows) == (1, [])
    assert [r.getMessage() for r in caplog.records] == [f"cannot export: no database at {missing}"]
    assert not missing.exists()  # not created by looking
    with pytest.raises(SystemExit) as exited:
        main(["export", "transactions", "--since", "last tuesday"])
    assert exited.value.code == 2
    assert "last tuesday" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["export", "transactions"])
    assert exited.value.code == 2
