"""The stores: the JSON codec, claims and fencing, commits, migrations, credentials, and the
group-commit writer."""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.store import NOW, append, observation, open_store

from ocpp_trio.domain.credentials import PasswordHashing, StationCredentials, hash_password
from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.evse import ConnectorStatus, Evse, RequestedAvailability, Reservation
from ocpp_trio.domain.reports import Report, ReportPart, ReportStatus
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.domain.transactions import (
    RemoteStart,
    Sample,
    Transaction,
    TransactionEventKind,
    TransactionEventRecord,
)
from ocpp_trio.errors import StaleEpochError, StoreError, UnreadableRecordError
from ocpp_trio.messages import decode_request, v1_6, v2_0_1
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.store.base import (
    JournalEntry,
    PutCounter,
    PutLocalListVersion,
    PutRegistration,
    PutSnapshot,
    Registration,
    Store,
    StoreOp,
    SweepsUnbooted,
    decode,
    encode,
)
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.postgres import PostgresStore
from ocpp_trio.store.sqlite import (
    SCHEMA_VERSION,
    SQLiteStore,
    migrate,
    open_sqlite_store,
    schema_version,
)
from ocpp_trio.store.writer import StationJournal, StoredTransactionIds, StoreWriter

V201 = Version.V201


def notify_report(seq_no: int, tbc: bool) -> Any:
    return decode_request(
        V201,
        "NotifyReport",
        {
            "requestId": 7,
            "generatedAt": "2024-05-01T12:30:00Z",
            "seqNo": seq_no,
            "tbc": tbc,
            "reportData": [
                {
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Power"},
                    "variableAttribute": [{"type": "MaxSet", "value": "22000"}],
                    "variableCharacteristics": {"dataType": "decimal", "supportsMonitoring": True},
                }
            ],
        },
    )


def full_snapshot() -> StationSnapshot:
    """A snapshot with something in every field."""
    model = (
        DeviceModel()
        .with_value("OCPPCommCtrlr", "HeartbeatInterval", "300")
        .with_value("SecurityCtrlr", "BasicAuthPassword", "x", pending=True)
        .with_report_data([notify_report(0, False).to_json()["reportData"][0]])
    )
    evse = Evse(
        evse_id=1,
        connectors=(
            ConnectorStatus(connector_id=1, status="Occupied", timestamp=NOW, received_at=NOW),
        ),
        requested=RequestedAvailability(operational=False, status="Scheduled", requested_at=NOW),
        reservations=(
            Reservation(
                reservation_id=3,
                evse_id=1,
                id_token="TAG",
                expires_at=NOW + datetime.timedelta(hours=1),
                created_at=NOW,
            ),
        ),
    )
    tx = Transaction(
        identity="CS1",
        transaction_id="TX1",
        version=V201,
        events=(
            TransactionEventRecord(
                kind=TransactionEventKind.STARTED,
                timestamp=NOW,
                seq_no=0,
                id_token="TAG",
                evse_id=1,
                samples=(Sample(timestamp=NOW, value=1000.5, context="Transaction.Begin"),),
                received_at=NOW,
            ),
            TransactionEventRecord(
                kind=TransactionEventKind.UPDATED, timestamp=NOW, seq_no=2, offline=True
            ),
        ),
        linked_remote_start_id=5,
        duplicates=1,
    )
    request = decode_request(V201, "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
    report = Report(
        identity="CS1",
        kind="NotifyReport",
        request_id=7,
        request=request,
        answer="Accepted",
        parts=(ReportPart(seq_no=0, tbc=True, message=notify_report(0, True), received_at=NOW),),
        status=ReportStatus.IN_PROGRESS,
        started_at=NOW,
    )
    remote = RemoteStart(remote_start_id=5, id_token="TAG", requested_at=NOW, evse_id=1)
    return StationSnapshot(
        identity="CS1",
        device_model=model,
        evses=(evse,),
        transactions=(tx,),
        reports=(report,),
        remote_starts=(remote,),
        next_request_id=8,
        next_remote_start_id=6,
    )


# -- the codec ---------------------------------------------------------------------------------


def test_codec_round_trips_a_full_snapshot() -> None:
    snapshot = full_snapshot()
    text = encode(snapshot, StationSnapshot)
    back = decode(text, StationSnapshot)
    assert back == snapshot
    # fields compared as eq=False survive too, and the messages are rebuilt as such
    assert back.transactions[0].events[0].received_at == NOW
    part = back.reports[0].parts[0]
    assert isinstance(part.message, v2_0_1.NotifyReportRequest)
    assert isinstance(back.reports[0].request, v2_0_1.GetBaseReportRequest)
    assert back.device_model.get("EVSE", "Power", evse_id=1, attribute="MaxSet") == "22000"
    assert encode(back, StationSnapshot) == text  # stable


def test_codec_writes_rfc3339_enums_by_value_and_messages_as_action_payload() -> None:
    import json

    data = json.loads(encode(full_snapshot(), StationSnapshot))
    tx = data["transactions"][0]
    assert tx["version"] == "2.0.1"
    assert tx["events"][0]["kind"] == "Started"
    assert tx["events"][0]["timestamp"] == "2024-05-01T12:30:15.250000+00:00"
    assert "status" not in data["reports"][0]  # IN_PROGRESS: the default is omitted
    assert data["transactions"][0]["events"][1]["kind"] == "Updated"
    assert data["reports"][0]["request"] == {
        "version": "2.0.1",
        "action": "GetBaseReport",
        "payload": {"requestId": 7, "reportBase": "FullInventory"},
    }
    assert "duplicates" not in tx["events"][0]  # defaults are omitted


def test_codec_round_trips_observations_and_registrations() -> None:
    entry = JournalEntry(seq=4, observation=observation(3))
    assert decode(encode(entry, JournalEntry), JournalEntry) == entry
    boot = decode_request(
        Version.V16, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    registration = Registration(
        status=RegistrationStatus.PENDING, version=Version.V16, boot=boot, interval=30, at=NOW
    )
    back = decode(encode(registration, Registration), Registration)
    assert back == registration
    assert isinstance(back.boot, v1_6.BootNotificationRequest)
    assert back.status is RegistrationStatus.PENDING


def test_codec_rejects_what_does_not_decode() -> None:
    with pytest.raises(ValueError, match="JSONDecodeError"):
        decode("{not json", StationSnapshot)
    text = encode(JournalEntry(seq=1, observation=observation()), JournalEntry)
    broken = text.replace('"seqNo":0', '"seqNo":"zero"')
    with pytest.raises(ValueError, match="seqNo"):
        decode(broken, JournalEntry)
    with pytest.raises(ValueError, match="offset"):
        decode(
            encode(Registration(status=None, at=NOW), Registration).replace("+00:00", ""),
            Registration,
        )


# -- both stores -------------------------------------------------------------------------------


async def test_claim_commit_load(store: Store) -> None:
    assert await store.load("CS1") is None
    record = await store.claim("CS1", V201)
    assert (record.epoch, record.version, record.last_seq, record.empty) == (1, V201, 0, True)
    registration = Registration(status=RegistrationStatus.ACCEPTED, version=V201, at=NOW)
    ops: list[StoreOp] = [
        append("CS1", 1, 1),
        PutRegistration(identity="CS1", epoch=1, registration=registration),
        append("CS1", 1, 2),
        PutLocalListVersion(identity="CS1", epoch=1, version=12),
        PutCounter(name="transaction_id", value=9),
    ]
    assert await store.commit(ops) == frozenset()
    loaded = await store.load("CS1")
    assert loaded is not None
    assert [e.seq for e in loaded.journal] == [1, 2]
    assert loaded.journal[1].observation == observation(2)
    assert loaded.registration == registration
    assert loaded.local_list_version == 12
    assert loaded.epoch == 1  # load does not claim
    assert await store.counter("transaction_id") == 9
    # a snapshot folds the journal in
    snapshot = full_snapshot()
    await store.commit(
        [
            PutSnapshot(identity="CS1", epoch=1, snapshot=snapshot, through=2),
            append("CS1", 1, 3),
        ]
    )
    again = await store.claim("CS1", Version.V21)
    assert (again.epoch, again.version, again.through, again.last_seq) == (2, Version.V21, 2, 3)
    assert again.snapshot == snapshot
    assert [e.seq for e in again.journal] == [3]
    assert await store.identities() == ["CS1"]
    await store.forget("CS1")
    assert await store.load("CS1") is None


async def test_stale_writes_are_refused_per_station(store: Store) -> None:
    await store.claim("A", V201)
    await store.claim("B", V201)
    await store.claim("B", V201)  # another process took B over: epoch 2
    stale = await store.commit([append("A", 1, 1), append("B", 1, 1), append("C", 1, 1)])
    assert stale == frozenset({"B", "C"})  # C was never claimed
    a, b = await store.load("A"), await store.load("B")
    assert a is not None
    assert b is not None
    assert (len(a.journal), len(b.journal)) == (1, 0)
    # administrative writes are not fenced, and create the record
    seeded = Registration(status=RegistrationStatus.ACCEPTED, at=NOW)
    await store.commit([PutRegistration(identity="D", epoch=None, registration=seeded)])
    d = await store.load("D")
    assert d is not None
    assert (d.registration, d.epoch) == (seeded, 0)


async def test_stations_that_never_booted_can_be_swept(store: Store) -> None:
    assert isinstance(store, SweepsUnbooted)
    one_shot = await store.claim("ONE-SHOT", V201)
    booted = await store.claim("BOOTED", V201)
    registration = Registration(status=RegistrationStatus.ACCEPTED, at=NOW)
    await store.commit(
        [PutRegistration(identity="BOOTED", epoch=booted.epoch, registration=registration)]
    )
    await store.commit([append("ONE-SHOT", one_shot.epoch, 1)])
    now = datetime.datetime.now(datetime.UTC)
    assert await store.forget_unbooted(now - datetime.timedelta(days=1)) == []
    assert await store.forget_unbooted(now + datetime.timedelta(days=1)) == ["ONE-SHOT"]
    assert await store.identities() == ["BOOTED"]
    assert await store.load("ONE-SHOT") is None


async def test_counters_never_go_down(store: Store) -> None:
    assert await store.counter("x") is None
    await store.commit([PutCounter(name="x", value=5), PutCounter(name="x", value=3)])
    assert await store.counter("x") == 5


# -- SQLite specifics ----------------------------------------------------------------------------


async def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=1) == 0
    assert schema_version(db) == 1
    snapshot = encode(StationSnapshot(identity="OLD"), StationSnapshot)
    registration = encode(
        Registration(status=RegistrationStatus.ACCEPTED, version=V201, at=NOW), Registration
    )
    db.execute(
        "INSERT INTO stations (identity, epoch, version, registration, snapshot, through)"
        " VALUES ('OLD', 3, '2.0.1', ?, ?, 5)",
        (registration, snapshot),
    )
    db.execute(
        "INSERT INTO journal (identity, seq, entry) VALUES ('OLD', 6, ?)",
        (encode(JournalEntry(seq=6, observation=observation()), JournalEntry),),
    )
    db.close()
    async with open_sqlite_store(path) as store:
        version = await store.run_sync(schema_version)
        assert version == SCHEMA_VERSION == 3
        record = await store.claim("OLD", V201)
        assert (record.epoch, record.through, record.last_seq) == (4, 5, 6)
        assert record.registration is not None
        assert record.registration.status is RegistrationStatus.ACCEPTED
        assert record.local_list_version is None  # the column version 2 added
        await store.commit([PutLocalListVersion(identity="OLD", epoch=4, version=2)])
        loaded = await store.load("OLD")
        assert loaded is not None
        assert loaded.local_list_version == 2
        # the credentials table of version 2 works
        await store.credentials.put(StationCredentials(identity="OLD", security_profile=1))
        assert await store.credentials.get("OLD") is not None


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db)
    db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        async with open_sqlite_store(path):
            pass  # pragma: no cover


async def test_sqlite_uses_wal_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with open_sqlite_store(path) as store:
        mode = await store.run_sync(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
        await store.claim("CS1", V201)
        await store.commit([append("CS1", 1, 1)])
    async with open_sqlite_store(path, synchronous="normal") as store:
        record = await store.claim("CS1", V201)
        assert (record.epoch, record.last_seq) == (2, 1)
    with pytest.raises(ValueError, match="synchronous"):
        async with open_sqlite_store(path, synchronous="OFF"):
            pass  # pragma: no cover


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The stores on a database (their own tests below run against both)."""
    kind: str = request.param
    if kind == "postgres":
        return kind, request.getfixturevalue("postgres_dsn")
    return kind, str(tmp_path / "store.db")


async def test_unreadable_record_still_claims(sql_store: tuple[str, str]) -> None:
    async with open_store(*sql_store) as store:
        assert isinstance(store, SQLiteStore | PostgresStore)
        await store.claim("CS1", V201)
        await store.commit([append("CS1", 1, 1), append("CS1", 1, 2)])
        await store.run_sync(
            lambda db: db.execute("UPDATE journal SET entry = '{\"seq\": 2' WHERE seq = 2")
        )
        with pytest.raises(UnreadableRecordError) as caught:
            await store.claim("CS1", V201)
        assert (caught.value.epoch, caught.value.last_seq) == (2, 2)
        assert "unreadable" in str(caught.value)
        # the claim took effect: writes under epoch 2 are accepted
        assert await store.commit([append("CS1", 2, 3)]) == frozenset()
        assert await store.commit([append("CS1", 1, 4)]) == frozenset({"CS1"})


async def test_sqlite_credentials(tmp_path: Path) -> None:
    hashing = PasswordHashing(algorithm="pbkdf2-sha256", pbkdf2_iterations=1000)
    record = StationCredentials(
        identity="CS1",
        security_profile=2,
        password_hash=hash_password("correct horse", hashing=hashing),
        certificate_common_name="SN-1",
    )
    async with open_sqlite_store(tmp_path / "cred.db") as store:
        credentials = store.credentials
        assert await credentials.get("CS1") is None
        await credentials.put(record)
        got = await credentials.get("CS1")
        assert got == record
        stored = await store.run_sync(
            lambda db: db.execute("SELECT record FROM credentials").fetchone()[0]
        )
        assert "correct horse" not in stored  # only the salted hash
        await credentials.delete("CS1")
        assert await credentials.get("CS1") is None


async def test_commit_is_all_or_nothing(sql_store: tuple[str, str]) -> None:
    async with open_store(*sql_store) as store:
        assert isinstance(store, SQLiteStore | PostgresStore)
        await store.claim("CS1", V201)
        await store.commit([append("CS1", 1, 1)])
        # the second append reuses seq 1: the whole commit is rolled back
        with pytest.raises(StoreError, match=r"UNIQUE|duplicate key"):
            await store.commit([append("CS1", 1, 2), append("CS1", 1, 1)])
        record = await store.load("CS1")
        assert record is not None
        assert [e.seq for e in record.journal] == [1]
        # cancelled before its thread started: nothing written
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.commit([append("CS1", 1, 2)])
        # cancelled while its thread runs: it completes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.commit, [append("CS1", 1, 2), append("CS1", 1, 3)])
            while not store._limiter.borrowed_tokens:  # its thread is running
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        record = await store.load("CS1")
        assert record is not None
        assert [e.seq for e in record.journal] == [1, 2, 3]


async def test_closed_store_refuses(sql_store: tuple[str, str]) -> None:
    async with open_store(*sql_store) as store:
        assert isinstance(store, SQLiteStore | PostgresStore)
    with pytest.raises(StoreError, match="closed"):
        await store.load("CS1")
    await store.aclose()  # idempotent


# -- the writer ------------------------------------------------------------------------------


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail = False
        self.gate: trio.Event | None = None

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("disk full")
        self.batches.append(len(ops))
        return await super().commit(ops)


async def journal_of(writer: StoreWriter, store: Store, identity: str) -> StationJournal:
    record = await store.claim(identity, V201)
    return StationJournal(
        writer, identity, epoch=record.epoch, last_seq=record.last_seq, unfolded=0
    )


async def test_writer_groups_concurrent_writes() -> None:
    store = CountingStore()
    writer = StoreWriter(store)
    journals = [await journal_of(writer, store, f"CS{i}") for i in range(20)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        store.gate = trio.Event()

        async def station(journal: StationJournal) -> None:
            for n in range(5):
                journal.record(observation(n))
                await journal.durable()

        async with trio.open_nursery() as stations:
            for journal in journals:
                stations.start_soon(station, journal)
            await trio.sleep(0.01)
            store.gate.set()
        nursery.cancel_scope.cancel()
    stats = writer.statistics()
    assert stats.writes == 100
    assert stats.commits == len(store.batches) <= 6  # 20 stations share every commit
    assert stats.largest_batch == 20
    for i in range(20):
        record = await store.load(f"CS{i}")
        assert record is not None
        assert [e.seq for e in record.journal] == [1, 2, 3, 4, 5]


async def test_writer_reports_failures_and_stale_claims() -> None:
    store = CountingStore()
    writer = StoreWriter(store)
    ok = await journal_of(writer, store, "OK")
    moved = await journal_of(writer, store, "MOVED")
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await store.claim("MOVED", V201)  # another process claims it
        ok.record(observation())
        moved.record(observation())
        await ok.durable()
        with pytest.raises(StaleEpochError):
            await moved.durable()
        store.fail = True
        ok.record(observation(1))
        with pytest.raises(StoreError, match="disk full"):
            await ok.durable()
        nursery.cancel_scope.cancel()
    assert writer.statistics().failures == 1
    assert writer.statistics().stale == 1


async def test_a_long_transaction_is_folded_no_more_often_than_its_size() -> None:
    """After a snapshot holding more transaction events than ``snapshot_every``, the journal
    waits for as many entries before asking for the next one (a snapshot holds the whole
    transaction: folded every ``snapshot_every`` entries, its cost per entry would grow with
    the transaction)."""
    store = MemoryStore()
    writer = StoreWriter(store, snapshot_every=3)
    journal = await journal_of(writer, store, "CS1")

    def snapshot(events: int) -> StationSnapshot:
        records = tuple(
            TransactionEventRecord(kind=TransactionEventKind.UPDATED, timestamp=NOW, seq_no=n)
            for n in range(events)
        )
        tx = Transaction(identity="CS1", transaction_id="TX1", version=V201, events=records)
        return StationSnapshot(identity="CS1", transactions=(tx,))

    def entries_until_wanted() -> int:
        n = 0
        while not journal.wants_snapshot:
            journal.record(observation(n))
            n += 1
        return n

    assert entries_until_wanted() == 3
    journal.put_snapshot(snapshot(2))  # smaller than snapshot_every: that stays the rule
    assert entries_until_wanted() == 3
    journal.put_snapshot(snapshot(10))
    assert entries_until_wanted() == 10
    journal.put_snapshot(StationSnapshot(identity="CS1"))  # the transaction ended
    assert entries_until_wanted() == 3


async def test_writer_flushes_inline_when_not_running() -> None:
    store = CountingStore()
    writer = StoreWriter(store)
    journal = await journal_of(writer, store, "CS1")
    journal.record(observation())
    journal.put_snapshot(StationSnapshot(identity="CS1"))
    assert not writer.running
    await writer.flush()
    await journal.durable()
    record = await store.load("CS1")
    assert record is not None
    assert (record.through, record.journal, record.snapshot) == (
        1,
        (),
        StationSnapshot(identity="CS1"),
    )


async def test_stored_transaction_ids_continue_after_the_stored_counter() -> None:
    store = MemoryStore()
    writer = StoreWriter(store)
    ids = StoredTransactionIds(writer)
    assert [ids.allocate("CS1"), ids.allocate("CS2")] == [1, 2]
    await writer.flush()
    assert await store.counter("transaction_id") == 3
    again = StoredTransactionIds(StoreWriter(store))
    await again.load()
    assert again.allocate("CS1") == 3
