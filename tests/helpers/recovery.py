"""Stores that fail on purpose and sessions that end in a cut, for recovery and ledger tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from helpers.csms import boot, connect, csms_on
from helpers.station import FakeStation
from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS
from ocpp_trio.messages import Request, decode_request
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station
from ocpp_trio.store.base import StoreOp
from ocpp_trio.store.memory import MemoryStore

V16, V201, V21 = Version.V16, Version.V201, Version.V21
TS = "2024-01-01T00:00:00Z"


class CutStore(MemoryStore):
    """A store whose process "dies" at :meth:`cut`: nothing committed after it reaches
    ``disk`` (the commits still seem to succeed, as they would have in the dead process)."""

    def __init__(self, disk: MemoryStore) -> None:
        super().__init__()
        self.disk = disk
        self.alive = True
        self.gate: trio.Event | None = None
        self.fail = False

    def cut(self) -> None:
        self.alive = False

    async def claim(self, identity: str, version: Version) -> Any:
        return await self.disk.claim(identity, version)

    async def load(self, identity: str) -> Any:
        return await self.disk.load(identity)

    async def counter(self, name: str) -> int | None:
        return await self.disk.counter(name)

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("disk on fire")
        if not self.alive:
            await trio.lowlevel.checkpoint()
            return frozenset()
        return await self.disk.commit(ops)


def call(version: Version, action: str, payload: dict[str, Any]) -> Request[Any]:
    request = decode_request(version, action, payload)
    assert isinstance(request, Request)
    return request


def tx_event(kind: str, seq: int, value: float, **info: Any) -> Request[Any]:
    return call(
        V201,
        "TransactionEvent",
        {
            "eventType": kind,
            "timestamp": TS,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": seq,
            "transactionInfo": {"transactionId": "TX1", **info},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": TS, "sampledValue": [{"value": value}]}],
        },
    )


async def collect(
    csms: CSMS, kind: type[Any], into: list[Any], *, task_status: trio.TaskStatus[None]
) -> None:
    async with csms.subscribe_events(kind) as events:
        task_status.started()
        async for event in events:
            into.append(event)


async def served_then_cut(
    disk: MemoryStore, version: Version, session: Any, router: Router | None = None
) -> None:
    """Serve ``CS1`` on a CSMS whose process then dies (nothing after the cut is stored)."""
    dying = CutStore(disk)
    async with csms_on(dying, router) as (csms, nursery):
        station, fake = await connect(csms, nursery, version)
        await session(station, fake)
        dying.cut()


async def boot_and_charge(station: Station, fake: FakeStation) -> None:
    await boot(fake)
    for seq in range(3):
        await fake.call(tx_event("Started" if seq == 0 else "Updated", seq, 1.0))


def break_journal(disk: MemoryStore) -> None:
    """Make the stored journal of CS1 inconsistent: an entry goes missing."""
    journal = disk._rows["CS1"].journal
    del journal[sorted(journal)[1]]
