"""Crash test, over real sockets: ``kill -9`` the CSMS while stations charge, serve them again
from the same SQLite file, and check that nothing they saw acknowledged was lost.

Three processes serve the same two stations (an OCPP 1.6 and a 2.0.1 one, built on the
independent ``ocpp`` package, ``tests/interop/recovery_station.py``) in turn, on one port and one
database file:

1. ``python -m ocpp_trio serve --db FILE``, killed with SIGKILL while meter values flow;
2. a CSMS in this test process (``open_csms`` on the same file), which calls each station the
   moment it reconnects (no BootNotification first), then closes;
3. ``python -m ocpp_trio serve --db FILE`` again, killed with SIGKILL too.

Then the database is read back: every message a station logged as acknowledged is in its stored
transaction, the 2.0.1 seqNos run without a gap, each station booted exactly once, and the 1.6
transaction kept its id.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.process import free_port, kill_9, serve_command
from interop.harness import RunningProcess, StationOutput, run_process

from ocpp_trio import Version
from ocpp_trio.cli.main import default_router
from ocpp_trio.csms.core import CSMSConfig, open_csms
from ocpp_trio.domain.transactions import Transaction
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.runtime.events import BootAnswered, Connected, StationEvent
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.store.sqlite import open_sqlite_store

SCRIPT = Path(__file__).parent / "interop" / "recovery_station.py"
STATIONS = {"CRASH-16": "1.6", "CRASH-201": "2.0.1"}
TIMEOUT = 60.0
#: acknowledged meter messages each station must log per phase
PER_PHASE = 12


@asynccontextmanager
async def serving_cli(port: int, db: Path) -> AsyncIterator[RunningProcess]:
    async with run_process(serve_command(port, db)) as server:
        await server.stderr.wait_for(lambda line: "listening on ws://" in line)
        yield server


def meter_acks(output: StationOutput) -> list[dict[str, Any]]:
    return [e for e in output.of("acked") if e["action"] in ("MeterValues", "TransactionEvent")]


async def more_acks(outputs: dict[str, StationOutput], count: int) -> None:
    """Wait until every station has ``count`` more acknowledged meter messages."""
    targets = {identity: len(meter_acks(out)) + count for identity, out in outputs.items()}
    for identity, out in outputs.items():
        await out.wait_for("acked", count=targets[identity] + 2)  # + boot and start
        while len(meter_acks(out)) < targets[identity]:
            await out.wait_for("acked", count=len(out.of("acked")) + 1)


async def run_station(
    url: str, identity: str, version: str, *, task_status: trio.TaskStatus[StationOutput]
) -> None:
    command = [sys.executable, str(SCRIPT), "--url", url, "--id", identity, "--version", version]
    async with run_process(command) as running:
        task_status.started(StationOutput(running.stdout))
        await trio.sleep_forever()


@pytest.mark.slow
async def test_kill_9_loses_no_acknowledged_message(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    outputs: dict[str, StationOutput] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as stations:
            # 1. the CLI; the stations boot once and charge
            async with serving_cli(port, db) as first:
                for identity, version in STATIONS.items():
                    outputs[identity] = await stations.start(run_station, url, identity, version)
                await more_acks(outputs, PER_PHASE)
                await kill_9(first)

            # 2. another process (this one) on the same file: resumed, callable at once
            async with (
                open_sqlite_store(db) as store,
                open_csms(
                    default_router(), "127.0.0.1", port, config=CSMSConfig(store=store)
                ) as csms,
                csms.subscribe() as lifecycle,
            ):
                resumed: set[str] = set()
                lifecycle_seen: list[StationEvent] = []
                while resumed != set(STATIONS):
                    event = await lifecycle.receive()
                    lifecycle_seen.append(event)
                    if isinstance(event, Connected):
                        assert event.resumed, event
                        station = csms.get_station(event.identity)
                        assert station is not None
                        assert station.is_accepted
                        # before the station has sent anything on this connection
                        if station.version is Version.V16:
                            answer: Any = await station.call(
                                v1_6.DataTransferRequest(vendor_id="crash-test")
                            )
                        else:
                            answer = await station.call(
                                v2_0_1.DataTransferRequest(vendor_id="crash-test")
                            )
                        assert str(answer.status) == "Accepted"
                        assert answer.data == "pong"
                        resumed.add(event.identity)
                await more_acks(outputs, PER_PHASE)
                for identity in STATIONS:
                    station = csms.get_station(identity)
                    assert station is not None
                    await station.settle()
                    open_tx = list(station.transactions.values())
                    assert len(open_tx) == 1
                    assert open_tx[0].missing_seq_nos == ()
                assert not [e for e in lifecycle_seen if isinstance(e, BootAnswered)]

            # 3. the CLI again, killed again
            async with serving_cli(port, db) as third:
                await more_acks(outputs, PER_PHASE)
                await kill_9(third)
            assert not [line for line in third.stderr.lines if "BootNotification" in line]
            assert "Traceback" not in "\n".join(first.stderr.lines + third.stderr.lines)
            stations.cancel_scope.cancel()

    # what the stations saw acknowledged, against what the store kept
    async with open_sqlite_store(db) as store:
        for identity, version in STATIONS.items():
            out = outputs[identity]
            assert [e["action"] for e in out.of("acked")].count("BootNotification") == 1
            assert len(out.of("connected")) >= 3
            assert [e["action"] for e in out.of("call_received")] == ["DataTransfer"]
            record = await store.load(identity)
            assert record is not None
            assert record.registration is not None
            assert str(record.registration.status) == "Accepted"
            machines = StationMachines(identity)
            machines.restore(record.snapshot, [e.observation for e in record.journal])
            (tx,) = machines.transactions.values()
            acked = meter_acks(out)
            assert {str(e["transaction_id"]) for e in acked} == {tx.transaction_id}
            check_transaction(Version(version), tx, acked)


def check_transaction(version: Version, tx: Transaction, acked: list[dict[str, Any]]) -> None:
    stored_values = {s.value for s in tx.samples}
    acked_values = {float(e["value"]) for e in acked}
    assert acked_values <= stored_values, sorted(acked_values - stored_values)
    if version is Version.V16:
        assert tx.meter_start_wh == 1000
        return
    acked_seqs = {int(e["seq"]) for e in acked}
    assert acked_seqs <= set(tx.seq_nos)
    assert tx.missing_seq_nos == ()
    assert tx.seq_nos == tuple(range(len(tx.seq_nos)))  # consistent: 0, 1, 2, ... no gap
