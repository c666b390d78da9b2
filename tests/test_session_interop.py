"""A full charging session against an independent implementation (the ``ocpp`` package, run
as a subprocess): boot, status, authorize, start, meter values, remote stop, stop."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from ocpp_trio import Version
from ocpp_trio.csms.core import open_csms
from ocpp_trio.domain.events import (
    ConnectorStatusChanged,
    MachineEvent,
    TransactionChanged,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station

SCRIPT = Path(__file__).parent / "interop" / "session_station.py"
IDENTITY = "CS-SESSION"
ID_TAG = "TAG-INTEROP"


def session_router(authorized: list[str]) -> Router:
    router = Router()
    router.set_default_boot()

    @router.on(v1_6.AuthorizeRequest)
    async def authorize_16(
        station: Station, request: v1_6.AuthorizeRequest
    ) -> v1_6.AuthorizeResponse:
        authorized.append(request.id_tag)
        return v1_6.AuthorizeResponse(
            id_tag_info=v1_6.IdTagInfo(status=v1_6.AuthorizationStatus.ACCEPTED)
        )

    @router.on(v2_0_1.AuthorizeRequest)
    async def authorize_201(
        station: Station, request: v2_0_1.AuthorizeRequest
    ) -> v2_0_1.AuthorizeResponse:
        authorized.append(request.id_token.id_token)
        return v2_0_1.AuthorizeResponse(
            id_token_info=v2_0_1.IdTokenInfoType(status=v2_0_1.AuthorizationStatusEnumType.ACCEPTED)
        )

    return router


class Lines:
    """JSON lines read from the subprocess's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[dict[str, Any]] = []

    async def until(self, event: str) -> dict[str, Any]:
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                item = json.loads(line)
                self.seen.append(item)
                assert item["event"] != "error", item
                if item["event"] == event:
                    return item  # type: ignore[no-any-return]
            chunk = await self.stream.receive_some()
            assert chunk, f"the station exited before {event!r}: {self.seen}"
            self.buffer += chunk


@pytest.mark.slow
@pytest.mark.parametrize("version", [Version.V16, Version.V201])
async def test_full_charging_session(version: Version) -> None:
    authorized: list[str] = []
    events: list[MachineEvent] = []
    async with open_csms(session_router(authorized), "127.0.0.1", 0) as csms:
        assert csms.server_info is not None
        url = f"ws://127.0.0.1:{csms.server_info.port}"
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:

                async def listen(task_status: trio.TaskStatus[None]) -> None:
                    async with csms.subscribe_events(MachineEvent, identity=IDENTITY) as sub:
                        task_status.started()
                        async for event in sub:
                            events.append(event)

                await nursery.start(listen)
                command = [sys.executable, str(SCRIPT), "--url", url, "--id", IDENTITY]
                process: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        [*command, "--version", version.value],
                        stdout=subprocess.PIPE,
                        check=False,
                    )
                )
                assert process.stdout is not None
                lines = Lines(process.stdout)
                charging = await lines.until("charging")
                station = csms.get_station(IDENTITY)
                assert station is not None
                tx_id = str(charging["transaction_id"])
                assert set(station.transactions) == {tx_id}

                ended = await station.remote_stop(tx_id, wait_timeout=20)

                await lines.until("done")
                assert await process.wait() == 0
                await station.wait_closed()
                # the station is gone: every EVSE and transaction task has ended
                machines = csms.machines(IDENTITY)
                assert machines is not None
                stats = machines.statistics()
                assert (stats.evse_tasks, stats.transaction_tasks, stats.report_tasks) == (0, 0, 0)
                nursery.cancel_scope.cancel()

    # the transaction, as assembled and as returned by remote_stop
    assert ended.ended
    assert ended.complete
    assert ended.meter_start_wh == 1000
    assert ended.meter_stop_wh == 4000
    assert ended.energy_wh == 3000
    assert ended.stopped_reason == "Remote"
    assert ended.id_token == ID_TAG
    assert ended.evse_id == 1
    if version is Version.V16:
        assert tx_id == "1"  # the CSMS-wide allocator's first id
        assert [s.value for s in ended.samples if s.context == "Sample.Periodic"] == [2500, 3200]
    else:
        assert tx_id == "TX-INTEROP-1"
        assert ended.seq_nos == (0, 1, 2, 3)
    # the application's Authorize handler answered Authorize and the transaction's idToken
    assert authorized.count(ID_TAG) >= 2

    # what the application's subscriber received
    tx_events = [e for e in events if isinstance(e, TransactionChanged)]
    assert [type(e) for e in tx_events] == [
        TransactionStarted,
        TransactionUpdated,
        TransactionUpdated,
        TransactionEnded,
    ]
    assert tx_events[-1].transaction == ended
    assert [e.transaction.energy_wh for e in tx_events] == [0, 1500, 2200, 3000]
    statuses = [e.connector.status for e in events if isinstance(e, ConnectorStatusChanged)]
    if version is Version.V16:
        assert statuses == ["Available", "Preparing", "Charging", "Available"]
    else:
        assert statuses == ["Available", "Occupied", "Available"]
    assert all(e.identity == IDENTITY for e in events)
