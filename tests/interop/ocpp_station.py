"""A charging station built with the independent ``ocpp`` package (asyncio), for interop tests.

It runs in its own process (the ``ocpp`` package is asyncio; our library is trio) and reports
everything it sees as JSON lines on stdout, so a test can assert on both sides::

    python tests/interop/ocpp_station.py --url ws://127.0.0.1:9000 --id CS1 --version 2.0.1

Behaviour: connect with the version's subprotocol; send BootNotification; while the answer is
Pending, answer the CSMS's calls and boot again when it triggers a BootNotification (or after the
interval); on Rejected stay connected for ``--hold`` seconds (sending a Heartbeat first with
``--probe-after-reject``, which the CSMS must refuse), then exit; on Accepted send Heartbeat,
StatusNotification and MeterValues (then, with ``--transactions``, Authorize, a transaction
and DataTransfer), then keep answering CSMS calls for ``--hold`` seconds (or until a Reset when
``--exit-on-reset``).  Every CALL sent or received is one JSON line; a connection the CSMS
closes ends the run with a ``closed`` line carrying the close code.  ``ocpp_trio`` is never
imported here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import json
import sys
from typing import Any

# jsonschema imports rfc3987_syntax, if installed, for the "iri" formats alone (no OCPP schema
# uses them); building its grammar takes about 1.4 s per process.  Blocking it keeps the
# interop tests short and changes no check the ocpp package makes on OCPP messages.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import websockets  # noqa: E402
from ocpp.routing import on  # noqa: E402


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def build_station(version: str, ident: str, ws: Any, args: argparse.Namespace) -> Any:
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call, call_result
        from ocpp.v16.enums import Action
    elif version == "2.0.1":
        from ocpp.v201 import ChargePoint, call, call_result
        from ocpp.v201.enums import Action
    else:
        from ocpp.v21 import ChargePoint, call, call_result
        from ocpp.v21.enums import Action

    class Station(ChargePoint):  # type: ignore[misc, valid-type]
        boot_again = asyncio.Event()
        reset_seen = asyncio.Event()
        pending_trigger: str | None = None

        @on(Action.reset)
        async def on_reset(self, **kw: Any) -> Any:
            emit("call_received", action="Reset", payload=kw)
            self.reset_seen.set()
            return call_result.Reset(status="Accepted")

        @on(Action.trigger_message)
        async def on_trigger(self, **kw: Any) -> Any:
            emit("call_received", action="TriggerMessage", payload=kw)
            self.pending_trigger = kw["requested_message"]
            return call_result.TriggerMessage(status="Accepted")

        if version == "1.6":

            @on(Action.get_configuration)
            async def on_get_configuration(self, **kw: Any) -> Any:
                emit("call_received", action="GetConfiguration", payload=kw)
                return call_result.GetConfiguration(
                    configuration_key=[
                        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
                    ],
                    unknown_key=[],
                )

            @on(Action.change_configuration)
            async def on_change_configuration(self, **kw: Any) -> Any:
                emit("call_received", action="ChangeConfiguration", payload=kw)
                return call_result.ChangeConfiguration(status="Accepted")

        else:

            @on(Action.get_variables)
            async def on_get_variables(self, **kw: Any) -> Any:
                emit("call_received", action="GetVariables", payload=kw)
                results = [
                    {
                        "attribute_status": "Accepted",
                        "attribute_value": "300",
                        "component": item["component"],
                        "variable": item["variable"],
                    }
                    for item in kw["get_variable_data"]
                ]
                return call_result.GetVariables(get_variable_result=results)

            @on(Action.set_variables)
            async def on_set_variables(self, **kw: Any) -> Any:
                emit("call_received", action="SetVariables", payload=kw)
                results = [
                    {
                        "attribute_status": "Accepted",
                        "component": item["component"],
                        "variable": item["variable"],
                    }
                    for item in kw["set_variable_data"]
                ]
                return call_result.SetVariables(set_variable_result=results)

        async def send(self, name: str, request: Any) -> Any:
            emit("call_sent", action=name)
            try:
                response = await self.call(request, suppress=False)
            except Exception as exc:  # reported to the test as a JSON line, not hidden
                emit("call_error", action=name, error=type(exc).__name__, detail=str(exc))
                return None
            emit("call_result", action=name, payload=_asdict(response))
            return response

        def boot_request(self, reason: str) -> Any:
            if version == "1.6":
                return call.BootNotification(
                    charge_point_vendor="InteropVendor", charge_point_model="InteropModel"
                )
            return call.BootNotification(
                charging_station={"model": "InteropModel", "vendor_name": "InteropVendor"},
                reason=reason,
            )

        async def triggered(self, what: str) -> None:
            if what == "BootNotification":
                return
            if what == "Heartbeat":
                await self.send("Heartbeat", call.Heartbeat())
            elif what == "StatusNotification":
                await self.send("StatusNotification", self.status_request())

        def status_request(self) -> Any:
            if version == "1.6":
                return call.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available"
                )
            return call.StatusNotification(
                timestamp=now(), connector_status="Available", evse_id=1, connector_id=1
            )

        def meter_request(self) -> Any:
            if version == "1.6":
                sampled = [
                    {"value": str(1000 + i), "measurand": "Energy.Active.Import.Register"}
                    for i in range(10)
                ]
                return call.MeterValues(
                    connector_id=1, meter_value=[{"timestamp": now(), "sampled_value": sampled}]
                )
            sampled = [
                {"value": 1000.0 + i, "measurand": "Energy.Active.Import.Register"}
                for i in range(10)
            ]
            return call.MeterValues(
                evse_id=1, meter_value=[{"timestamp": now(), "sampled_value": sampled}]
            )

        async def transactions(self) -> None:
            token = "TAG-0001"
            if version == "1.6":
                await self.send("Authorize", call.Authorize(id_tag=token))
                started = await self.send(
                    "StartTransaction",
                    call.StartTransaction(
                        connector_id=1, id_tag=token, meter_start=0, timestamp=now()
                    ),
                )
                if started is not None:
                    await self.send(
                        "StopTransaction",
                        call.StopTransaction(
                            meter_stop=1500,
                            timestamp=now(),
                            transaction_id=started.transaction_id,
                            id_tag=token,
                        ),
                    )
                await self.send(
                    "DataTransfer",
                    call.DataTransfer(vendor_id="InteropVendor", message_id="Hello", data="hi"),
                )
                return
            id_token = {"id_token": token, "type": "ISO14443"}
            await self.send("Authorize", call.Authorize(id_token=id_token))
            for seq_no, (event_type, trigger) in enumerate(
                [("Started", "Authorized"), ("Ended", "StopAuthorized")]
            ):
                await self.send(
                    "TransactionEvent",
                    call.TransactionEvent(
                        event_type=event_type,
                        timestamp=now(),
                        trigger_reason=trigger,
                        seq_no=seq_no,
                        transaction_info={"transaction_id": "TX-1"},
                        id_token=id_token,
                        evse={"id": 1, "connector_id": 1},
                    ),
                )
            await self.send("DataTransfer", call.DataTransfer(vendor_id="InteropVendor"))

        async def linger(self) -> None:
            await asyncio.sleep(args.hold)

        async def scenario(self) -> None:
            reason = "PowerUp"
            for _attempt in range(args.max_boots):
                response = await self.send("BootNotification", self.boot_request(reason))
                if response is None:
                    return
                status = response.status
                if status == "Rejected":
                    if args.probe_after_reject:
                        await self.send("Heartbeat", call.Heartbeat())
                    await self.linger()
                    return
                if status == "Accepted":
                    break
                # Pending: wait for a triggered boot, serving the CSMS meanwhile
                interval = max(int(response.interval), 1)
                deadline = asyncio.get_running_loop().time() + min(interval, args.hold)
                reason = "Triggered"
                while asyncio.get_running_loop().time() < deadline:
                    if self.pending_trigger is not None:
                        what, self.pending_trigger = self.pending_trigger, None
                        if what == "BootNotification":
                            break
                        await self.triggered(what)
                    await asyncio.sleep(0.02)
            else:
                return
            await self.send("Heartbeat", call.Heartbeat())
            await self.send("StatusNotification", self.status_request())
            await self.send("MeterValues", self.meter_request())
            if args.transactions:
                await self.transactions()
            emit("idle")
            deadline = asyncio.get_running_loop().time() + args.hold
            while asyncio.get_running_loop().time() < deadline:
                if self.pending_trigger is not None:
                    what, self.pending_trigger = self.pending_trigger, None
                    await self.triggered(what)
                if args.exit_on_reset and self.reset_seen.is_set():
                    return
                await asyncio.sleep(0.02)

    return Station(ident, ws)


def _asdict(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


async def main_async(args: argparse.Namespace) -> int:
    # imported before connecting, so the BootNotification follows the upgrade at once
    importlib.import_module(
        {"1.6": "ocpp.v16", "2.0.1": "ocpp.v201", "2.1": "ocpp.v21"}[args.version]
    )
    url = args.url.rstrip("/") + "/" + args.id
    try:
        async with websockets.connect(url, subprotocols=[f"ocpp{args.version}"]) as ws:
            extensions = (
                ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            )
            emit("connected", subprotocol=ws.subprotocol, extensions=extensions)
            station = build_station(args.version, args.id, ws, args)
            runner = asyncio.create_task(station.start())
            scenario = asyncio.create_task(station.scenario())
            try:
                # the runner ends only when the connection does: then the scenario is moot
                await asyncio.wait({runner, scenario}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (scenario, runner):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if runner.done() and not runner.cancelled() and runner.exception() is not None:
                raise runner.exception()  # type: ignore[misc]
    except websockets.exceptions.InvalidStatus as exc:
        emit("rejected", status=exc.response.status_code)
        return 0
    except websockets.exceptions.ConnectionClosed as exc:
        close = exc.rcvd
        emit(
            "closed",
            code=close.code if close is not None else None,
            reason=close.reason if close is not None else None,
        )
        return 0
    emit("done")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", choices=["1.6", "2.0.1", "2.1"], required=True)
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--max-boots", type=int, default=5)
    parser.add_argument("--exit-on-reset", action="store_true")
    parser.add_argument("--transactions", action="store_true")
    parser.add_argument("--probe-after-reject", action="store_true")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
