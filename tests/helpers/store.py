"""Store records for the store contract tests (SQLite, memory, PostgreSQL)."""

from __future__ import annotations

import datetime

from ocpp_trio import Version
from ocpp_trio.domain.observations import Observation
from ocpp_trio.messages import decode_request, decode_response
from ocpp_trio.store.base import Append, JournalEntry

V201 = Version.V201
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
