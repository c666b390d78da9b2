"""``GET /transactions?state=ended``: the admin API's view of the transaction ledger.

With a store, the finished transactions come from the ledger (every transaction that ever
ended, until the retention deletes it), filtered and paged:

=====================  ===================================================================
``station=ID``         one station's
``idToken=TOKEN``      those started with this idToken
``since=TIME``         those that ended at or after TIME (ISO 8601; a date is its midnight;
                       UTC when no offset is given)
``until=TIME``         those that ended before TIME
``limit=N``            at most N per page (default 100, at most 1000)
``cursor=TEXT``        the page after the one that answered ``nextCursor: TEXT``
``samples=true``       each transaction with its meter samples (else their count)
=====================  ===================================================================

The answer is ``{"transactions": [...], "nextCursor": TEXT or null}``, oldest end first.  The
fields of a transaction (camelCase, as everywhere in the API) are those of the
open-transaction view where they overlap, plus ``stopIdToken``, ``provisional`` (the CSMS ended
it on a reboot; the station's own account would replace it) and ``recordedAt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ocpp_trio.csms.ledger import Ledger, parse_time, utc_text
from ocpp_trio.domain.ledger import LedgerEntry

__all__ = ["LEDGER_PARAMETERS", "ended_transactions"]

#: the query parameters only the ledger understands
LEDGER_PARAMETERS: Final = frozenset({"idToken", "since", "until", "limit", "cursor", "samples"})
_TRUE: Final = ("1", "true", "yes")
_FALSE: Final = ("", "0", "false", "no")


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"limit: {text!r} is not an integer") from None


def _flag(name: str, text: str | None) -> bool:
    if text is None or text.lower() in _FALSE:
        return False
    if text.lower() in _TRUE:
        return True
    raise ValueError(f"{name}: {text!r} is not true or false")


def _time(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _entry_json(entry: LedgerEntry, samples: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "station": entry.identity,
        "transactionId": entry.transaction_id,
        "version": entry.version.value,
        "state": "ended",
        "evseId": entry.evse_id,
        "connectorId": entry.connector_id,
        "idToken": entry.id_token,
        "stopIdToken": entry.stop_id_token,
        "startedAt": utc_text(entry.started_at),
        "endedAt": utc_text(entry.ended_at),
        "stoppedReason": entry.stopped_reason,
        "meterStartWh": entry.meter_start_wh,
        "meterStopWh": entry.meter_stop_wh,
        "energyWh": entry.energy_wh,
        "remoteStartId": entry.remote_start_id,
        "provisional": entry.provisional,
        "missingSeqNos": list(entry.missing_seq_nos),
        "events": entry.events,
        "samples": len(entry.samples),
        "recordedAt": utc_text(entry.recorded_at),
    }
    if samples:
        out["samples"] = [
            {
                "timestamp": utc_text(sample.timestamp),
                "value": sample.value,
                "measurand": sample.measurand,
                "unit": sample.unit,
                **{
                    key: value
                    for key, value in (
                        ("context", sample.context),
                        ("phase", sample.phase),
                        ("location", sample.location),
                    )
                    if value is not None
                },
            }
            for sample in entry.samples
        ]
    return out


async def ended_transactions(ledger: Ledger, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The answer to ``GET /transactions?state=ended&...`` (see the module docstring).

    Waits for: the store.

    Raises:
        ValueError: a parameter is not valid (the message names it).
        StoreError: the store failed.
    """
    samples = _flag("samples", _one(query, "samples"))
    page = await ledger.query(
        station=_one(query, "station"),
        id_token=_one(query, "idToken"),
        since=_time("since", _one(query, "since")),
        until=_time("until", _one(query, "until")),
        after=_one(query, "cursor"),
        limit=_limit(_one(query, "limit")),
    )
    return {
        "transactions": [_entry_json(entry, samples) for entry in page.entries],
        "nextCursor": page.cursor,
    }
