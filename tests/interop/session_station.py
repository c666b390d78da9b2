"""A charging station that runs one full charging session, built with the independent ``ocpp``
package (asyncio), for the session interop tests.

It runs in its own process (``ocpp`` is asyncio, ocpp-trio is trio) and reports what it sees as
JSON lines on stdout::

    python tests/interop/session_station.py --url ws://127.0.0.1:9000 --id CS1 --version 2.0.1

Session: BootNotification; StatusNotification Available; Authorize; StatusNotification
Occupied (1.6: Preparing); start (1.6 StartTransaction with meterStart 1000 Wh; 2.0.1
TransactionEvent Started, seqNo 0, register 1000 Wh); StatusNotification Charging (1.6 only);
meter values (2500 Wh, then 3.2 kWh); then it waits for the CSMS to stop the transaction
remotely (1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction), and stops it (register
4000 Wh, reason Remote); StatusNotification Available; exit.  Energy delivered: 3000 Wh.
``ocpp_trio`` is never imported here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from typing import Any

import websockets
from ocpp.routing import on

ID_TAG = "TAG-INTEROP"
TX_ID_201 = "TX-INTEROP-1"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def build_station(version: str, ident: str, ws: Any) -> Any:
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call, call_result
        from ocpp.v16.enums import Action
    else:
        from ocpp.v201 import ChargePoint, call, call_result
        from ocpp.v201.enums import Action

    class Station(ChargePoint):  # type: ignore[misc, valid-type]
        stop_requested = asyncio.Event()
        transaction_id: Any = None

        if version == "1.6":

            @on(Action.remote_stop_transaction)
            async def on_remote_stop(self, transaction_id: int, **kw: Any) -> Any:
                emit("call_received", action="RemoteStopTransaction", transaction_id=transaction_id)
                ok = transaction_id == self.transaction_id
                if ok:
                    self.stop_requested.set()
                return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

        else:

            @on(Action.request_stop_transaction)
            async def on_request_stop(self, transaction_id: str, **kw: Any) -> Any:
                emit(
                    "call_received", action="RequestStopTransaction", transaction_id=transaction_id
                )
                ok = transaction_id == self.transaction_id
                if ok:
                    self.stop_requested.set()
                return call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")

        async def send(self, name: str, request: Any) -> Any:
            response = await self.call(request, suppress=False)
            emit("call_result", action=name, payload=_asdict(response))
            return response

        # -- the session, per version ------------------------------------------------------

        async def session_16(self) -> None:
            await self.send(
                "BootNotification",
                call.BootNotification(charge_point_vendor="Interop", charge_point_model="Session"),
            )
            await self.status_16("Available")
            await self.send("Authorize", call.Authorize(id_tag=ID_TAG))
            await self.status_16("Preparing")
            started = await self.send(
                "StartTransaction",
                call.StartTransaction(
                    connector_id=1, id_tag=ID_TAG, meter_start=1000, timestamp=now()
                ),
            )
            self.transaction_id = started.transaction_id
            await self.status_16("Charging")
            for value, unit in (("2500", "Wh"), ("3.2", "kWh")):
                sample = {
                    "value": value,
                    "unit": unit,
                    "measurand": "Energy.Active.Import.Register",
                    "context": "Sample.Periodic",
                }
                await self.send(
                    "MeterValues",
                    call.MeterValues(
                        connector_id=1,
                        transaction_id=self.transaction_id,
                        meter_value=[{"timestamp": now(), "sampled_value": [sample]}],
                    ),
                )
            emit("charging", transaction_id=self.transaction_id)
            await self.stop_requested.wait()
            end = {"value": "4000", "context": "Transaction.End", "unit": "Wh"}
            await self.send(
                "StopTransaction",
                call.StopTransaction(
                    meter_stop=4000,
                    timestamp=now(),
                    transaction_id=self.transaction_id,
                    reason="Remote",
                    id_tag=ID_TAG,
                    transaction_data=[{"timestamp": now(), "sampled_value": [end]}],
                ),
            )
            await self.status_16("Available")

        async def status_16(self, status: str) -> None:
            await self.send(
                "StatusNotification",
                call.StatusNotification(connector_id=1, error_code="NoError", status=status),
            )

        async def session_201(self) -> None:
            await self.send(
                "BootNotification",
                call.BootNotification(
                    charging_station={"model": "Session", "vendor_name": "Interop"},
                    reason="PowerUp",
                ),
            )
            await self.status_201("Available")
            token = {"id_token": ID_TAG, "type": "ISO14443"}
            await self.send("Authorize", call.Authorize(id_token=token))
            await self.status_201("Occupied")
            self.transaction_id = TX_ID_201
            await self.event_201("Started", 0, "Authorized", 1000.0, "Transaction.Begin", token)
            await self.event_201("Updated", 1, "MeterValuePeriodic", 2500.0, "Sample.Periodic")
            await self.event_201(
                "Updated", 2, "MeterValuePeriodic", 3.2, "Sample.Periodic", unit="kWh"
            )
            emit("charging", transaction_id=self.transaction_id)
            await self.stop_requested.wait()
            await self.event_201(
                "Ended", 3, "RemoteStop", 4000.0, "Transaction.End", stopped_reason="Remote"
            )
            await self.status_201("Available")

        async def status_201(self, status: str) -> None:
            await self.send(
                "StatusNotification",
                call.StatusNotification(
                    timestamp=now(), connector_status=status, evse_id=1, connector_id=1
                ),
            )

        async def event_201(
            self,
            kind: str,
            seq_no: int,
            trigger: str,
            value: float,
            context: str,
            id_token: dict[str, str] | None = None,
            *,
            unit: str = "Wh",
            stopped_reason: str | None = None,
        ) -> None:
            info: dict[str, Any] = {"transaction_id": self.transaction_id}
            if stopped_reason:
                info["stopped_reason"] = stopped_reason
            sample = {
                "value": value,
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unit_of_measure": {"unit": unit},
            }
            await self.send(
                "TransactionEvent",
                call.TransactionEvent(
                    event_type=kind,
                    timestamp=now(),
                    trigger_reason=trigger,
                    seq_no=seq_no,
                    transaction_info=info,
                    evse={"id": 1, "connector_id": 1},
                    id_token=id_token,
                    meter_value=[{"timestamp": now(), "sampled_value": [sample]}],
                ),
            )

    return Station(ident, ws)


def _asdict(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


async def main_async(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/" + args.id
    async with websockets.connect(url, subprotocols=[f"ocpp{args.version}"]) as ws:
        emit("connected", subprotocol=ws.subprotocol)
        station = build_station(args.version, args.id, ws)
        runner = asyncio.create_task(station.start())
        try:
            session = station.session_16 if args.version == "1.6" else station.session_201
            await asyncio.wait_for(session(), timeout=args.timeout)
        except Exception as exc:  # reported to the test as a JSON line, not hidden
            emit("error", error=type(exc).__name__, detail=str(exc))
            return 1
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    emit("done")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", choices=["1.6", "2.0.1"], required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
