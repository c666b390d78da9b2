"""The ledger survives ``kill -9``: ``ocpp-trio serve`` is killed with SIGKILL the moment a
station has the answer to the message that ended its transaction, and the transaction is in
the database.

The station is scripted here, over a real WebSocket, frame by frame (nothing queued, nothing
retried): what it saw answered is exactly what the server acknowledged.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.process import free_port, kill_9, serve_command
from interop.harness import run_process

from ocpp_trio import LedgerQuery, Transport, Version
from ocpp_trio.store.sqlite import open_sqlite_store
from ocpp_trio.transport.connect import websocket_connector

TIMEOUT = 30.0
TS = "2024-05-01T12:00:00Z"
END = "2024-05-01T12:30:00Z"


class ScriptedStation:
    """One OCPP-J connection driven by hand: each CALL waits for its answer."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        await self.transport.send_message(json.dumps([2, message_id, action, payload]))
        frame = json.loads(await self.transport.get_message())
        assert frame[:2] == [3, message_id], frame  # the answer, and nothing else
        answer: dict[str, Any] = frame[2]
        return answer


def boot_payload(version: Version) -> dict[str, Any]:
    if version is Version.V16:
        return {"chargePointVendor": "Kill", "chargePointModel": "Nine"}
    return {
        "chargingStation": {"vendorName": "Kill", "model": "Nine"},
        "reason": "PowerUp",
    }


def event(kind: str, seq: int, stamp: str, value: float, **info: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": stamp,
        "triggerReason": "Authorized" if kind == "Started" else "StopAuthorized",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-KILL", **info},
        "meterValue": [{"timestamp": stamp, "sampledValue": [{"value": value}]}],
    }
    if kind == "Started":
        payload["evse"] = {"id": 1, "connectorId": 1}
        payload["idToken"] = {"idToken": "KILLTOKEN", "type": "ISO14443"}
    return payload


async def charge_once(station: ScriptedStation, version: Version) -> str:
    """Boot, then one transaction from start to end; returns its id once the end is
    answered."""
    booted = await station.call("BootNotification", boot_payload(version))
    assert booted["status"] == "Accepted"
    if version is Version.V16:
        start = {"connectorId": 1, "idTag": "KILLTOKEN", "meterStart": 1000, "timestamp": TS}
        started = await station.call("StartTransaction", start)
        transaction_id = int(started["transactionId"])
        stop = {"transactionId": transaction_id, "meterStop": 5500, "timestamp": END}
        await station.call("StopTransaction", {**stop, "reason": "EVDisconnected"})
        return str(transaction_id)
    await station.call("TransactionEvent", event("Started", 0, TS, 1000.0))
    ended = event("Ended", 1, END, 5500.0, stoppedReason="EVDisconnected")
    await station.call("TransactionEvent", ended)
    return "TX-KILL"


@pytest.mark.slow
@pytest.mark.parametrize("version", list(Version))
async def test_the_ledger_survives_kill_9_after_the_end_is_answered(
    version: Version, tmp_path: Path
) -> None:
    db = tmp_path / "kill.db"
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with run_process([*serve_command(port, db), "--no-admin"]) as server:
            await server.stderr.wait_for(lambda line: "listening on ws://" in line)
            connect = websocket_connector(f"ws://127.0.0.1:{port}", f"KILL-{version.value}")
            async with connect([version]) as transport:
                transaction_id = await charge_once(ScriptedStation(transport), version)
                await kill_9(server)  # at once: no shutdown, no final snapshot, no flush
    async with open_sqlite_store(db) as store:
        page = await store.ledger(LedgerQuery(station=f"KILL-{version.value}"))
    (entry,) = page.entries
    assert (entry.transaction_id, entry.version, entry.id_token) == (
        transaction_id,
        version,
        "KILLTOKEN",
    )
    assert entry.ended_at.isoformat() == "2024-05-01T12:30:00+00:00"
    assert (entry.stopped_reason, entry.energy_wh) == ("EVDisconnected", 4500.0)
    assert not entry.provisional
