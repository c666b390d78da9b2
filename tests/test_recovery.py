"""Recovery from the store: resuming without a BootNotification, write-ahead acknowledgement,
reboots, failed recoveries and their fallbacks, stations moving between processes."""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.csms import boot, connect, csms_on
from helpers.recovery import (
    CutStore,
    boot_and_charge,
    break_journal,
    call,
    collect,
    served_then_cut,
    tx_event,
)
from helpers.station import FakeStation, boot_request, boot_router, error_of, heartbeat

from ocpp_trio import ConnectionLostError, Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.csms.recovery import RecoveryAction, RecoveryConfig, RecoveryFailed, ResetKind
from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.events import MachineEvent, TransactionEnded, TransactionUpdated
from ocpp_trio.domain.reconcile import RECONCILED_TRIGGER
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.errors import CallError, ErrorCode
from ocpp_trio.messages import Request, Response, decode_response, v2_0_1
from ocpp_trio.protocol.rpc import IncomingCall
from ocpp_trio.protocol.supervisor import RegistrationStatus, StationState
from ocpp_trio.runtime.events import Connected, StationEvent
from ocpp_trio.runtime.station import Station
from ocpp_trio.store.base import Store
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.postgres import open_postgres_store
from ocpp_trio.store.sqlite import open_sqlite_store
from ocpp_trio.transport.base import memory_transport_pair

V16, V201, V21 = Version.V16, Version.V201, Version.V21
TS = "2024-01-01T00:00:00Z"


# -- stores that misbehave on purpose ----------------------------------------------------------


# -- helpers -----------------------------------------------------------------------------------


def status(version: Version, value: str) -> Request[Any]:
    if version is V16:
        payload = {"connectorId": 1, "errorCode": "NoError", "status": value, "timestamp": TS}
    else:
        payload = {"timestamp": TS, "connectorStatus": value, "evseId": 1, "connectorId": 1}
    return call(version, "StatusNotification", payload)


def get_variables() -> Request[Any]:
    return call(
        V201,
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
            ]
        },
    )


def get_variables_answer() -> Response:
    return decode_response(
        V201,
        "GetVariables",
        {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "300",
                }
            ]
        },
    )


async def answer_next(fake: FakeStation, response: Response) -> IncomingCall:
    incoming = await fake.expect_call()
    await fake.answer(incoming, response)
    return incoming


async def refuse_next(fake: FakeStation) -> IncomingCall:
    incoming = await fake.expect_call()
    text = fake.rpc.answer_error(incoming.message_id, ErrorCode.SECURITY_ERROR, "not accepted")
    await fake.transport.send_message(text)
    return incoming


async def call_answered(
    station: Station, fake: FakeStation, request: Request[Any], response: Response
) -> Response:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_next, fake, response)
        result: Response = await station.call(request)
    return result


# -- resuming ----------------------------------------------------------------------------------


async def test_restart_resumes_an_accepted_station_without_boot(autojump_clock: Any) -> None:
    disk = MemoryStore(serialize=True)
    expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()

    async def session(station: Station, fake: FakeStation) -> None:
        await boot(fake)
        await fake.exchange(status(V201, "Occupied"))
        reserve = call(
            V201,
            "ReserveNow",
            {"id": 3, "expiryDateTime": expiry, "idToken": {"idToken": "T", "type": "Central"}},
        )
        accepted = decode_response(V201, "ReserveNow", {"status": "Accepted"})
        await call_answered(station, fake, reserve, accepted)
        for seq in range(3):
            await fake.exchange(tx_event("Started" if seq == 0 else "Updated", seq, 1000.0 + seq))

    await served_then_cut(disk, V201, session)

    async with csms_on(disk) as (csms, nursery):
        async with csms.subscribe() as lifecycle:
            station, fake = await connect(csms, nursery)
            assert station.state is StationState.RESUMED
            # a CSMS call at once, no BootNotification first
            answer = await call_answered(station, fake, get_variables(), get_variables_answer())
            assert isinstance(answer, v2_0_1.GetVariablesResponse)
            first: StationEvent = await lifecycle.receive()
            assert isinstance(first, Connected)
            assert first.resumed
        tx = station.transactions["TX1"]
        assert tx.seq_nos == (0, 1, 2)
        assert tx.meter_latest_wh == 1002.0
        assert station.machines.connector_status(1, 1) == "Occupied"
        reservation = station.machines.find_reservation(3)
        assert reservation is not None
        assert reservation.id_token == "T"
        stats = station.statistics().machines
        assert stats is not None
        assert stats.transaction_tasks == 1  # its task runs again
        # the transaction continues where it was
        await fake.exchange(tx_event("Updated", 3, 1003.0))
        await station.settle()
        assert station.transactions["TX1"].seq_nos == (0, 1, 2, 3)
        assert station.transactions["TX1"].missing_seq_nos == ()


async def test_restart_continues_16_transactions_and_ids(autojump_clock: Any) -> None:
    disk = MemoryStore(serialize=True)
    started: list[int] = []

    async def session(station: Station, fake: FakeStation) -> None:
        await boot(fake)
        response = await fake.exchange(
            call(
                V16,
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": TS},
            )
        )
        started.append(int(getattr(response, "transaction_id")))  # noqa: B009
        sample = {"value": "1500", "measurand": "Energy.Active.Import.Register"}
        await fake.exchange(
            call(
                V16,
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": started[0],
                    "meterValue": [{"timestamp": TS, "sampledValue": [sample]}],
                },
            )
        )

    await served_then_cut(disk, V16, session)
    assert started == [1]

    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery, V16)
        assert station.is_accepted
        other = await fake.exchange(
            call(
                V16,
                "StartTransaction",
                {"connectorId": 2, "idTag": "T", "meterStart": 0, "timestamp": TS},
            )
        )
        assert getattr(other, "transaction_id", None) == 2  # the stored counter continued
        await fake.exchange(
            call(
                V16,
                "StopTransaction",
                {"transactionId": 1, "meterStop": 4000, "timestamp": TS, "reason": "Local"},
            )
        )
        await station.settle()
        tx = station.machines.transaction(1)
        assert tx is not None
        assert tx.ended
        assert tx.energy_wh == 3000


async def test_pending_registration_resumes_pending(autojump_clock: Any) -> None:
    disk = MemoryStore()
    async with csms_on(disk, boot_router("Pending", 0)) as (csms, nursery):
        _station, fake = await connect(csms, nursery)
        response = await fake.exchange(boot_request(V201))
        assert str(getattr(response, "status", "")) == "Pending"
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        assert station.state is StationState.PENDING
        assert error_of(await fake.exchange(heartbeat(V201)))[0] == "SecurityError"


async def test_seeded_state_is_stored(autojump_clock: Any) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        csms.add_station("CS1", device_model=DeviceModel().with_value("A", "B", "seeded"))
        csms.remember_status("CS9", RegistrationStatus.ACCEPTED)
        station, _fake = await connect(csms, nursery)
        assert station.state is StationState.CONNECTED
    record = await disk.load("CS1")
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot.device_model.get("A", "B") == "seeded"
    async with csms_on(disk) as (csms, nursery):
        station, _fake = await connect(csms, nursery)
        assert station.device_model.get("A", "B") == "seeded"
        nine, _fake = await connect(csms, nursery, identity="CS9")
        assert nine.state is StationState.RESUMED


async def test_add_station_seeds_replace_the_stored_state(autojump_clock: Any) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake)
        await fake.exchange(tx_event("Started", 0, 1.0))
    async with csms_on(disk) as (csms, nursery):
        # a device model seeded for a station the store knows: its transactions stay
        csms.add_station("CS1", device_model=DeviceModel().with_value("X", "Y", "1"))
        station, fake = await connect(csms, nursery)
        assert station.device_model.get("X", "Y") == "1"
        assert set(station.transactions) == {"TX1"}
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        assert station.device_model.get("X", "Y") == "1"  # stored
        await fake.transport.aclose()
        await station.wait_closed()
        # a whole snapshot seeded: it replaces what was stored
        csms.add_station("CS1", snapshot=StationSnapshot(identity="CS1"))
        station, fake = await connect(csms, nursery)
        assert dict(station.transactions) == {}
        assert station.state is StationState.RESUMED  # the registration is the store's
    record = await disk.load("CS1")
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot.transactions == ()


async def test_the_journal_is_folded_into_snapshots(autojump_clock: Any) -> None:
    disk = MemoryStore(serialize=True)
    async with csms_on(disk, recovery=RecoveryConfig(snapshot_every=5)) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake)
        for seq in range(12):
            await fake.exchange(tx_event("Started" if seq == 0 else "Updated", seq, float(seq)))
        assert csms._writer is not None
        await csms._writer.flush()
        record = await disk.load("CS1")
        assert record is not None
        assert record.through >= 10
        assert len(record.journal) < 5
        assert record.snapshot is not None
        stats = csms.statistics().store
        assert stats is not None
        assert stats.failures == 0
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        assert station.transactions["TX1"].seq_nos == tuple(range(12))


async def test_a_store_needs_the_csms_running() -> None:
    csms = CSMS(boot_router(), config=CSMSConfig(store=MemoryStore()))
    ours, _theirs = memory_transport_pair()
    with pytest.raises(RuntimeError, match=r"CSMS\.run"):
        await csms.serve_station(ours, "CS1", V201)


# -- write-ahead -------------------------------------------------------------------------------


async def test_the_answer_waits_for_the_commit(autojump_clock: Any) -> None:
    disk = MemoryStore()
    store = CutStore(disk)
    async with csms_on(store) as (csms, nursery):
        _station, fake = await connect(csms, nursery)
        await boot(fake)
        store.gate = trio.Event()
        message_id = await fake.start(tx_event("Started", 0, 1.0))
        assert await fake.nothing_arrives(5.0)  # no CALLRESULT before the commit
        record = await disk.load("CS1")
        assert record is not None
        assert [e.observation.action for e in record.journal] == ["BootNotification"]
        store.gate.set()
        assert isinstance(await fake.reply(message_id), v2_0_1.TransactionEventResponse)
        record = await disk.load("CS1")
        assert record is not None
        assert [e.observation.action for e in record.journal][-1] == "TransactionEvent"


async def test_a_failed_commit_closes_the_connection_unanswered(autojump_clock: Any) -> None:
    store = CutStore(MemoryStore())
    async with csms_on(store) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake)
        store.fail = True
        with pytest.raises(ConnectionLostError):
            await fake.exchange(tx_event("Started", 0, 1.0))
        await station.wait_closed()
        assert fake.transport.closed is not None
        assert fake.transport.closed.code == 1011
        stats = csms.statistics().store
        assert stats is not None
        assert stats.failures >= 1  # the write-ahead one (and the disconnect snapshot)


# -- reboots -----------------------------------------------------------------------------------


async def test_a_boot_closes_open_transactions_until_the_station_says_otherwise(
    autojump_clock: Any,
) -> None:
    disk = MemoryStore()

    async def session(station: Station, fake: FakeStation) -> None:
        await boot(fake)
        await fake.exchange(tx_event("Started", 0, 1000.0))
        await fake.exchange(tx_event("Updated", 1, 1500.0))

    await served_then_cut(disk, V201, session)
    ended: list[TransactionEnded] = []
    async with csms_on(disk) as (csms, nursery):
        await nursery.start(collect, csms, TransactionEnded, ended)
        station, fake = await connect(csms, nursery)
        await boot(fake, "PowerUp")
        await station.settle()
        tx = station.machines.transaction("TX1")
        assert tx is not None
        assert (tx.ended, tx.stopped_reason) == (True, "PowerLoss")
        assert [e.trigger_reason for e in tx.events].count(RECONCILED_TRIGGER) == 1
        # the station's own account of the end replaces the CSMS's
        await fake.exchange(tx_event("Ended", 2, 1800.0, stoppedReason="EVDisconnected"))
        await station.settle()
        tx = station.machines.transaction("TX1")
        assert tx is not None
        assert (tx.stopped_reason, tx.seq_nos, tx.meter_stop_wh) == (
            "EVDisconnected",
            (0, 1, 2),
            1800.0,
        )
        assert all(e.trigger_reason != RECONCILED_TRIGGER for e in tx.events)
        await trio.sleep(csms.config.station.machines.late_event_window + 1)
    # the CSMS's end was provisional: subscribers see one end, the station's
    assert [e.transaction.stopped_reason for e in ended] == ["EVDisconnected"]


async def test_a_16_boot_ends_transactions_with_reboot(autojump_clock: Any) -> None:
    disk = MemoryStore()

    async def session(station: Station, fake: FakeStation) -> None:
        await boot(fake)
        await fake.exchange(
            call(
                V16,
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": TS},
            )
        )

    await served_then_cut(disk, V16, session)
    ended: list[TransactionEnded] = []
    updated: list[TransactionUpdated] = []
    async with csms_on(disk) as (csms, nursery):
        await nursery.start(collect, csms, TransactionEnded, ended)
        await nursery.start(collect, csms, TransactionUpdated, updated)
        station, fake = await connect(csms, nursery, V16)
        await boot(fake)
        await station.settle()
        tx = station.machines.transaction(1)
        assert tx is not None
        assert (tx.ended, tx.stopped_reason) == (True, "Reboot")
        stats = station.statistics().machines
        assert stats is not None
        assert stats.transaction_tasks == 1  # waits for the station's own StopTransaction
        await trio.sleep(csms.config.station.machines.late_event_window - 1)
        assert ended == []  # still provisional
        await trio.sleep(2)
        stats = station.statistics().machines
        assert stats is not None
        assert stats.transaction_tasks == 0
        # no account from the station in time: the CSMS's end stands, published once
        assert [(e.transaction.transaction_id, e.transaction.stopped_reason) for e in ended] == [
            ("1", "Reboot")
        ]
        # it comes after all: its meter reading wins
        await fake.exchange(
            call(
                V16,
                "StopTransaction",
                {"transactionId": 1, "meterStop": 2500, "timestamp": TS, "reason": "PowerLoss"},
            )
        )
        await station.settle()
        tx = station.machines.transaction(1)
        assert tx is not None
        assert (tx.stopped_reason, tx.meter_stop_wh) == ("PowerLoss", 2500)
        await trio.sleep(0.1)
    # the correction after the window is an update: still one TransactionEnded
    assert len(ended) == 1
    assert updated[-1].transaction.stopped_reason == "PowerLoss"


# -- failed recoveries -------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [(V201, V21), (V201, V16), (V16, V201)])
async def test_another_version_is_a_new_registration(
    before: Version, after: Version, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        _station, fake = await connect(csms, nursery, before)
        await boot(fake)
        if before is V16:
            start = {"connectorId": 1, "idTag": "T", "meterStart": 10, "timestamp": TS}
            await fake.call(call(V16, "StartTransaction", start))
        else:
            await fake.call(tx_event("Started", 0, 10.0))
    failed: list[RecoveryFailed] = []
    caplog.set_level("INFO", logger="ocpp_trio")
    async with csms_on(disk) as (csms, nursery):
        await nursery.start(collect, csms, RecoveryFailed, failed)
        station, fake = await connect(csms, nursery, after)
        assert station.state is StationState.CONNECTED  # waits for the boot
        assert await fake.nothing_arrives(5.0)  # no Reset
        await boot(fake)
        assert station.is_accepted
        await station.settle()
        # the boot closed what the other version left open
        (tx,) = station.machines.transactions.values()
        assert (tx.version, tx.ended, tx.stopped_reason) == (
            before,
            True,
            "PowerLoss" if after is not V16 else "Reboot",
        )
        await fake.transport.aclose()
        await station.wait_closed()
        # the next connection with the new version resumes, without a word
        caplog.clear()
        station, fake = await connect(csms, nursery, after)
        assert station.state is StationState.RESUMED
    assert failed == []
    assert not [r for r in caplog.records if "new registration" in r.getMessage()]
    record = await disk.load("CS1")
    assert record is not None
    assert record.registration is not None
    assert record.registration.version is after


async def test_another_version_logs_one_line(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        _station, fake = await connect(csms, nursery, V16)
        await boot(fake)
    caplog.set_level("INFO", logger="ocpp_trio")
    async with csms_on(disk) as (csms, nursery):
        for _ in range(2):  # a station that reconnects before booting: still one line
            station, fake = await connect(csms, nursery, V201)
            await fake.transport.aclose()
            await station.wait_closed()
    lines = [r for r in caplog.records if "new registration" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        (
            "INFO",
            "station 'CS1': registered (Accepted) with OCPP 1.6, now connects with OCPP 2.0.1: "
            "a new registration, waiting for its BootNotification",
        )
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("kind", "expected"), [(ResetKind.ON_IDLE, "OnIdle"), (ResetKind.IMMEDIATE, "Immediate")]
)
async def test_a_failed_recovery_sends_the_configured_reset(
    kind: ResetKind, expected: str, autojump_clock: Any
) -> None:
    disk = MemoryStore()
    await served_then_cut(disk, V201, boot_and_charge)
    break_journal(disk)
    failed: list[RecoveryFailed] = []
    async with csms_on(disk, recovery=RecoveryConfig(reset=kind)) as (csms, nursery):
        await nursery.start(collect, csms, RecoveryFailed, failed)
        station, fake = await connect(csms, nursery)
        assert station.state is StationState.RESUMED
        reset = await fake.expect_call()
        assert reset.action == "Reset"
        assert reset.request.to_json() == {"type": expected}
        await fake.answer(reset, decode_response(V201, "Reset", {"status": "Accepted"}))
        await trio.sleep(0.1)
    (event,) = failed
    assert event.action is RecoveryAction.RESET


async def test_refuse_makes_the_station_boot_again(autojump_clock: Any) -> None:
    disk = MemoryStore()
    await served_then_cut(disk, V201, boot_and_charge)
    break_journal(disk)
    failed: list[RecoveryFailed] = []
    config = RecoveryConfig(on_failure=RecoveryAction.REFUSE)
    async with csms_on(disk, recovery=config) as (csms, nursery):
        await nursery.start(collect, csms, RecoveryFailed, failed)
        station, fake = await connect(csms, nursery, V201)
        assert station.state is StationState.CONNECTED
        assert error_of(await fake.exchange(heartbeat(V201)))[0] == "SecurityError"
        assert await fake.nothing_arrives(2.0)  # no Reset
        await boot(fake)
        assert station.is_accepted
    assert [e.action for e in failed] == [RecoveryAction.REFUSE]


async def test_a_security_error_answer_fails_recovery(autojump_clock: Any) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        _station, fake = await connect(csms, nursery)
        await boot(fake)
    failed: list[MachineEvent] = []
    async with csms_on(disk) as (csms, nursery):
        await nursery.start(collect, csms, RecoveryFailed, failed)
        station, fake = await connect(csms, nursery)
        assert station.state is StationState.RESUMED
        async with trio.open_nursery() as inner:
            inner.start_soon(refuse_next, fake)
            with pytest.raises(CallError):
                await station.call(get_variables())
        reset = await refuse_next(fake)  # the fallback's Reset, refused as well
        assert reset.action == "Reset"
        await station.wait_closed()
        assert fake.transport.closed is not None
        assert fake.transport.closed.code == 1000
        # its next connection must boot
        station, fake = await connect(csms, nursery)
        assert station.state is StationState.CONNECTED
    (event,) = failed
    assert isinstance(event, RecoveryFailed)
    assert "GetVariables with SecurityError" in event.reason
    record = await disk.load("CS1")
    assert record is not None
    assert record.registration is None


async def test_a_boot_ends_the_security_error_watch(autojump_clock: Any) -> None:
    disk = MemoryStore()
    async with csms_on(disk) as (csms, nursery):
        _station, fake = await connect(csms, nursery)
        await boot(fake)
    async with csms_on(disk) as (csms, nursery):
        station, fake = await connect(csms, nursery)
        await boot(fake)
        async with trio.open_nursery() as inner:
            inner.start_soon(refuse_next, fake)
            with pytest.raises(CallError):
                await station.call(get_variables())
        assert await fake.nothing_arrives(2.0)  # no Reset, no close
        assert station.connected


async def test_unreadable_state_fails_recovery(tmp_path: Path, autojump_clock: Any) -> None:
    path = tmp_path / "state.db"
    async with open_sqlite_store(path) as store:
        async with csms_on(store) as (csms, nursery):
            _station, fake = await connect(csms, nursery)
            await boot(fake)
            await fake.exchange(tx_event("Started", 0, 1.0))
        await store.run_sync(lambda db: db.execute("UPDATE stations SET snapshot = '{\"x\"'"))
        failed: list[RecoveryFailed] = []
        async with csms_on(store) as (csms, nursery):
            await nursery.start(collect, csms, RecoveryFailed, failed)
            station, fake = await connect(csms, nursery)
            assert station.state is StationState.RESUMED
            assert dict(station.transactions) == {}  # nothing could be read
            reset = await fake.expect_call()
            assert reset.action == "Reset"
            await fake.answer(reset, decode_response(V201, "Reset", {"status": "Accepted"}))
            await trio.sleep(0.1)
        (event,) = failed
        assert "unreadable" in event.reason
        assert event.action is RecoveryAction.RESET
        record = await store.load("CS1")  # readable again
        assert record is not None
        assert record.registration is not None


async def test_an_inconsistent_journal_fails_recovery(autojump_clock: Any) -> None:
    disk = MemoryStore()
    await served_then_cut(disk, V201, boot_and_charge)
    break_journal(disk)
    failed: list[RecoveryFailed] = []
    async with csms_on(disk) as (csms, nursery):
        await nursery.start(collect, csms, RecoveryFailed, failed)
        _station, fake = await connect(csms, nursery)
        reset = await fake.expect_call()
        assert reset.action == "Reset"
    (event,) = failed
    assert "inconsistent" in event.reason
    assert "missing" in event.reason


# -- several processes -------------------------------------------------------------------------


@asynccontextmanager
async def two_nodes(kind: str, where: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two processes (nodes) open it."""
    if kind == "postgres":
        async with (
            open_postgres_store(where, node="a") as a,
            open_postgres_store(where, node="b") as b,
        ):
            yield a, b
    else:
        async with open_sqlite_store(where) as a, open_sqlite_store(where) as b:
            yield a, b


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("postgres_dsn")
    return "sqlite", str(tmp_path / "shared.db")


async def test_a_station_moves_between_processes(shared_store: tuple[str, str]) -> None:
    async with (
        two_nodes(*shared_store) as (store_a, store_b),
        csms_on(store_a) as (a, nursery_a),
        csms_on(store_b) as (b, nursery_b),
    ):
        station, fake = await connect(a, nursery_a)
        await boot(fake)
        await fake.exchange(tx_event("Started", 0, 1.0))
        await fake.transport.aclose()
        await station.wait_closed()

        station, fake = await connect(b, nursery_b)
        assert station.state is StationState.RESUMED
        await fake.exchange(tx_event("Updated", 1, 2.0))
        await fake.transport.aclose()
        await station.wait_closed()

        # back on A: its memory is stale, the store is not
        station, fake = await connect(a, nursery_a)
        assert station.state is StationState.RESUMED
        assert station.transactions["TX1"].seq_nos == (0, 1)
        # A's socket goes half-open and the station reaches B again: B claims it
        moved, moved_fake = await connect(b, nursery_b)
        with pytest.raises(ConnectionLostError):
            await fake.exchange(tx_event("Updated", 2, 3.0))  # A may no longer write
        await station.wait_closed()
        assert fake.transport.closed is not None
        assert (fake.transport.closed.code, fake.transport.closed.reason) == (
            1000,
            "served by another process",
        )
        await moved_fake.exchange(tx_event("Updated", 2, 3.0))
        await moved.settle()
        assert moved.transactions["TX1"].seq_nos == (0, 1, 2)
