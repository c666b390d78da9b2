"""A charging station that charges without end and survives its CSMS dying, built with the
independent ``ocpp`` package (asyncio), for the crash test (``tests/test_crash.py``).

It boots **once**, starts one transaction, then sends meter values continuously (1.6
MeterValues with the ``transactionId``; 2.0.1 TransactionEvent Updated with rising seqNos),
one at a time, every ``--interval`` seconds.  When the connection drops it reconnects with a
doubling back-off (``--min-backoff`` to ``--max-backoff``) and carries on where it stopped,
**without** a new BootNotification: the message that was not answered is sent again as it was
(same seqNo, same timestamp), as a station queues its transaction messages.

Every message the CSMS acknowledged (a CALLRESULT) is one JSON line on stdout::

    {"event": "acked", "action": "TransactionEvent", "seq": 12, "value": 1120, ...}

plus ``connected``, ``disconnected`` and ``call_received`` lines (it answers DataTransfer with
Accepted and ``"pong"``).  It runs until killed.  ``ocpp_trio`` is never imported here::

    python tests/interop/recovery_station.py --url ws://127.0.0.1:9000 --id CS1 --version 2.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from typing import Any

# see ocpp_station.py: jsonschema's optional IRI grammar costs ~1.4 s per process, unused here
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import websockets  # noqa: E402
from ocpp.routing import on  # noqa: E402

ID_TAG = "TAG-CRASH"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Session:
    """The station's own state, kept across connections."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.version: str = args.version
        self.booted = False
        self.transaction_id: Any = None
        self.seq = 0
        self.register = 1000
        self.pending: tuple[str, Any, dict[str, Any]] | None = None

    def next_message(self, call: Any) -> tuple[str, Any, dict[str, Any]]:
        """The next meter reading, as (action, request, what to log once acknowledged)."""
        self.register += 10
        value = self.register
        timestamp = now()
        if self.version == "1.6":
            sample = {
                "value": str(value),
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "context": "Sample.Periodic",
            }
            request = call.MeterValues(
                connector_id=1,
                transaction_id=self.transaction_id,
                meter_value=[{"timestamp": timestamp, "sampled_value": [sample]}],
            )
            return "MeterValues", request, {"value": value, "timestamp": timestamp}
        self.seq += 1
        sample = {
            "value": value,
            "measurand": "Energy.Active.Import.Register",
            "context": "Sample.Periodic",
            "unit_of_measure": {"unit": "Wh"},
        }
        request = call.TransactionEvent(
            event_type="Updated",
            timestamp=timestamp,
            trigger_reason="MeterValuePeriodic",
            seq_no=self.seq,
            transaction_info={"transaction_id": self.transaction_id, "charging_state": "Charging"},
            evse={"id": 1, "connector_id": 1},
            meter_value=[{"timestamp": timestamp, "sampled_value": [sample]}],
        )
        return "TransactionEvent", request, {"seq": self.seq, "value": value}


def build_station(session: Session, ws: Any) -> Any:
    if session.version == "1.6":
        from ocpp.v16 import ChargePoint, call, call_result
        from ocpp.v16.enums import Action
    else:
        from ocpp.v201 import ChargePoint, call, call_result
        from ocpp.v201.enums import Action

    class Station(ChargePoint):  # type: ignore[misc, valid-type]
        @on(Action.data_transfer)
        async def on_data_transfer(self, **kw: Any) -> Any:
            emit("call_received", action="DataTransfer", payload=kw)
            return call_result.DataTransfer(status="Accepted", data="pong")

        async def send(self, request: Any, runner: asyncio.Task[None]) -> Any:
            """One CALL; a dropped connection is noticed at once, not after the timeout."""
            sent = asyncio.create_task(self.call(request, suppress=False))
            done, _ = await asyncio.wait({sent, runner}, return_when=asyncio.FIRST_COMPLETED)
            if sent not in done:
                sent.cancel()
                with contextlib.suppress(BaseException):
                    await sent
                raise ConnectionError("connection closed while waiting for an answer")
            return sent.result()

        async def run_session(self, runner: asyncio.Task[None]) -> None:
            if not session.booted:
                await self.boot(runner)
            if session.transaction_id is None:
                await self.start_transaction(runner)
            while True:
                if session.pending is None:
                    session.pending = session.next_message(call)
                action, request, logged = session.pending
                await self.send(request, runner)
                session.pending = None
                emit("acked", action=action, transaction_id=session.transaction_id, **logged)
                await asyncio.sleep(session.args.interval)

        async def boot(self, runner: asyncio.Task[None]) -> None:
            if session.version == "1.6":
                request = call.BootNotification(
                    charge_point_vendor="CrashTest", charge_point_model="Recovery"
                )
            else:
                request = call.BootNotification(
                    charging_station={"model": "Recovery", "vendor_name": "CrashTest"},
                    reason="PowerUp",
                )
            response = await self.send(request, runner)
            if response.status != "Accepted":
                raise RuntimeError(f"boot answered {response.status}")
            session.booted = True
            emit("acked", action="BootNotification", status=response.status)

        async def start_transaction(self, runner: asyncio.Task[None]) -> None:
            if session.version == "1.6":
                if session.pending is None:
                    request = call.StartTransaction(
                        connector_id=1, id_tag=ID_TAG, meter_start=session.register, timestamp=now()
                    )
                    session.pending = ("StartTransaction", request, {})
                response = await self.send(session.pending[1], runner)
                session.transaction_id = response.transaction_id
            else:
                session.transaction_id = f"TX-{session.args.id}"
                if session.pending is None:
                    sample = {
                        "value": session.register,
                        "context": "Transaction.Begin",
                        "unit_of_measure": {"unit": "Wh"},
                    }
                    request = call.TransactionEvent(
                        event_type="Started",
                        timestamp=now(),
                        trigger_reason="Authorized",
                        seq_no=0,
                        transaction_info={"transaction_id": session.transaction_id},
                        evse={"id": 1, "connector_id": 1},
                        id_token={"id_token": ID_TAG, "type": "ISO14443"},
                        meter_value=[{"timestamp": now(), "sampled_value": [sample]}],
                    )
                    session.pending = ("TransactionEvent", request, {"seq": 0})
                await self.send(session.pending[1], runner)
            session.pending = None
            emit(
                "acked",
                action="StartTransaction" if session.version == "1.6" else "TransactionEvent",
                transaction_id=session.transaction_id,
                seq=0,
                value=session.register,
                started=True,
            )

    return Station(session.args.id, ws, response_timeout=session.args.response_timeout)


async def main_async(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/" + args.id
    session = Session(args)
    backoff = args.min_backoff
    attempt = 0
    while True:
        attempt += 1
        try:
            async with websockets.connect(
                url, subprotocols=[f"ocpp{args.version}"], open_timeout=2, ping_interval=None
            ) as ws:
                emit("connected", attempt=attempt, subprotocol=ws.subprotocol)
                backoff = args.min_backoff
                station = build_station(session, ws)
                runner = asyncio.create_task(station.start())
                try:
                    await station.run_session(runner)
                finally:
                    runner.cancel()
                    with contextlib.suppress(BaseException):
                        await runner
        except (OSError, ConnectionError, TimeoutError, websockets.WebSocketException) as exc:
            emit("disconnected", error=type(exc).__name__, detail=str(exc)[:200])
        except Exception as exc:  # an answer we cannot live with: reported, then retried
            emit("error", error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, args.max_backoff)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", choices=["1.6", "2.0.1"], required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--response-timeout", type=float, default=5.0)
    parser.add_argument("--min-backoff", type=float, default=0.1)
    parser.add_argument("--max-backoff", type=float, default=1.0)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
