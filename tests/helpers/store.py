"""Store records for the store contract tests (SQLite, memory, PostgreSQL)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ocpp_trio import Version
from ocpp_trio.domain.observations import Observation
from ocpp_trio.messages import decode_request, decode_response
from ocpp_trio.store.base import (
    Append,
    JournalEntry,
    Store,
)
from ocpp_trio.store.memory import MemoryStore
from ocpp_trio.store.postgres import open_postgres_store
from ocpp_trio.store.sqlite import (
    open_sqlite_store,
)

V201 = Version.V201
#: every store the contract tests run against
STORE_KINDS = ["sqlite", "memory", "memory-json", "postgres"]
NOW = datetime.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=datetime.UTC)


def observation(seq: int = 0) -> Observation:
    request = decode_request(
        V201,
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": "2024-05-01T12:30:00Z",
            "triggerReason": "MeterValuePeriodic",
            "seqNo": seq,
            "transactionInfo": {"transactionId": "TX1"},
            "meterValue": [{"timestamp": "2024-05-01T12:30:00Z", "sampledValue": [{"value": 1.5}]}],
        },
    )
    response = decode_response(V201, "TransactionEvent", {"totalCost": 1.25})
    return Observation(
        action="TransactionEvent", by_station=True, request=request, response=response, at=NOW
    )


def append(identity: str, epoch: int, seq: int) -> Append:
    return Append(
        identity=identity, epoch=epoch, entry=JournalEntry(seq=seq, observation=observation(seq))
    )


@asynccontextmanager
async def open_store(kind: str, where: str) -> AsyncIterator[Store]:
    if kind == "sqlite":
        async with open_sqlite_store(where) as store:
            yield store
    elif kind == "postgres":
        # no periodic heartbeats: tests that watch the worker threads see only their own calls
        async with open_postgres_store(where, node="test-node", heartbeat_interval=3600) as pg:
            yield pg
    else:
        yield MemoryStore(serialize=kind == "memory-json")
