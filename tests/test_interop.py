"""Interop: stations built on the independent ``ocpp`` package against our CSMS, real sockets.

Each test runs our CSMS in-process on 127.0.0.1 (port 0) and the station of
``tests/interop/ocpp_station.py`` as a subprocess (asyncio), which prints a JSON line for every
CALL it sends or receives.  Assertions cover both sides: what the station saw on the wire and
what our handlers, extra handlers and lifecycle events recorded.
"""

from __future__ import annotations

import datetime
import re
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from interop.harness import RunningProcess, run_station

from ocpp_trio import CallError, ErrorCode, StateError, Version
from ocpp_trio.cli.main import default_router
from ocpp_trio.csms.core import CSMS, CSMSConfig, open_csms
from ocpp_trio.messages import Direction, Request, Response, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.supervisor import RegistrationStatus, StationState
from ocpp_trio.runtime.events import (
    Accepted,
    BootAnswered,
    Connected,
    Disconnected,
    DisconnectReason,
    Exchange,
    StationEvent,
)
from ocpp_trio.runtime.handlers import Router, boot_response
from ocpp_trio.runtime.station import Station
from ocpp_trio.transport.server import ServerConfig

VERSIONS = [Version.V16, Version.V201, Version.V21]
MODULES: dict[Version, Any] = {Version.V16: v1_6, Version.V201: v2_0_1, Version.V21: v2_1}
TEST_TIMEOUT = 25.0
DOCS = Path(__file__).resolve().parent.parent / "docs"


@attrs.define
class Seen:
    """What our side recorded."""

    handled: list[tuple[str, Request[Any]]] = attrs.Factory(list)
    exchanges: list[Exchange] = attrs.Factory(list)
    events: list[StationEvent] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    def note(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_until(self, predicate: Any) -> None:
        while not predicate():
            await self.changed.wait()

    def actions(self, direction: Direction) -> list[str]:
        return [e.action for e in self.exchanges if e.direction is direction]


def recording_router(seen: Seen, boot_statuses: list[str] | None = None) -> Router:
    """The CLI's default handler set, plus recording handlers for boot and StatusNotification.

    ``boot_statuses`` answers successive BootNotifications (the last one repeats).
    """
    router = default_router()
    statuses = list(boot_statuses or ["Accepted"])

    async def boot(station: Station, request: Request[Any]) -> Response:
        seen.handled.append(("BootNotification", request))
        seen.note()
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return boot_response(station.version, status, 300 if status == "Accepted" else 60)

    async def status_notification(station: Station, request: Request[Any]) -> Response:
        seen.handled.append(("StatusNotification", request))
        seen.note()
        return type(request).RESPONSE()

    for module in MODULES.values():
        router.on(module.BootNotificationRequest)(boot)
        router.on(module.StatusNotificationRequest)(status_notification)
    return router


@asynccontextmanager
async def running_csms(router: Router, seen: Seen) -> AsyncIterator[CSMS]:
    config = CSMSConfig(server=ServerConfig(ping_interval=0), close_timeout=2.0)
    async with open_csms(router, "127.0.0.1", 0, config=config) as csms, trio.open_nursery() as n:

        async def record(station: Station, exchange: Exchange) -> None:
            seen.exchanges.append(exchange)
            seen.note()

        csms.add_extra_handler(record, buffer=256, name="test recorder")

        async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with csms.subscribe(buffer=256) as events:
                task_status.started()
                async for event in events:
                    seen.events.append(event)
                    seen.note()

        await n.start(listen)
        yield csms
        n.cancel_scope.cancel()


def port_of(csms: CSMS) -> int:
    assert csms.server_info is not None
    return csms.server_info.port


def boot_events(seen: Seen) -> list[RegistrationStatus]:
    return [e.status for e in seen.events if isinstance(e, BootAnswered)]


async def finish(running: RunningProcess) -> None:
    assert await running.wait() == 0, "\n".join(running.stderr.lines)


def assert_wire_time(value: str) -> None:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    assert abs((parsed - datetime.datetime.now(datetime.UTC)).total_seconds()) < 60


def variables_request(version: Version) -> Request[Any]:
    if version is Version.V16:
        return v1_6.GetConfigurationRequest(key=("HeartbeatInterval",))
    m = MODULES[version]
    return m.GetVariablesRequest(  # type: ignore[no-any-return]
        get_variable_data=(
            m.GetVariableDataType(
                component=m.ComponentType(name="OCPPCommCtrlr"),
                variable=m.VariableType(name="HeartbeatInterval"),
            ),
        )
    )


def assert_variables_response(version: Version, response: Response) -> None:
    if version is Version.V16:
        assert isinstance(response, v1_6.GetConfigurationResponse)
        assert response.configuration_key is not None
        (key,) = response.configuration_key
        assert (key.key, key.readonly, key.value) == ("HeartbeatInterval", False, "300")
        return
    m = MODULES[version]
    assert isinstance(response, m.GetVariablesResponse)
    (result,) = response.get_variable_result
    assert result.attribute_status is m.GetVariableStatusEnumType.ACCEPTED
    assert result.attribute_value == "300"
    assert result.variable.name == "HeartbeatInterval"


def trigger_request(version: Version, what: str) -> Request[Any]:
    if version is Version.V16:
        return v1_6.TriggerMessageRequest(requested_message=v1_6.MessageTrigger(what))
    m = MODULES[version]
    return m.TriggerMessageRequest(  # type: ignore[no-any-return]
        requested_message=m.MessageTriggerEnumType(what)
    )


def reset_request(version: Version) -> Request[Any]:
    if version is Version.V16:
        return v1_6.ResetRequest(type=v1_6.ResetType.SOFT)
    m = MODULES[version]
    return m.ResetRequest(type=m.ResetEnumType.IMMEDIATE)  # type: ignore[no-any-return]


def accepted_status(version: Version, response: Response) -> None:
    status = response.status  # type: ignore[attr-defined]
    enum_type = type(status)
    assert status is enum_type("Accepted"), response


# -- Accepted --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS, ids=str)
async def test_accepted_station_exchanges_both_ways(version: Version) -> None:
    seen = Seen()
    identity = f"IOP-ACC-{version}"
    m = MODULES[version]
    with trio.fail_after(TEST_TIMEOUT):
        async with running_csms(recording_router(seen), seen) as csms:
            async with run_station(
                port_of(csms), identity, version, "--exit-on-reset", "--transactions"
            ) as (running, out):
                await out.wait_for("idle")
                station = csms.get_station(identity)
                assert station is not None
                assert station.version is version
                assert station.state is StationState.ACCEPTED

                # -- what the station saw
                connected = out.of("connected")[0]
                assert connected["subprotocol"] == version.subprotocol
                # the websockets client offers permessage-deflate: taken on 2.x, not on 1.6
                extensions = connected["extensions"] or ""
                assert extensions.startswith("permessage-deflate") is (version is not Version.V16)
                boot = out.of("call_result", "BootNotification")[0]["payload"]
                assert (boot["status"], boot["interval"]) == ("Accepted", 300)
                assert_wire_time(boot["current_time"])
                assert_wire_time(out.of("call_result", "Heartbeat")[0]["payload"]["current_time"])
                assert out.of("call_result", "StatusNotification")
                assert out.of("call_result", "MeterValues")
                assert not out.of("call_error")
                # the default handler set, as the independent implementation read it
                authorize = out.of("call_result", "Authorize")[0]["payload"]
                info = authorize["id_tag_info" if version is Version.V16 else "id_token_info"]
                assert info["status"] == "Accepted"
                data_transfer = out.of("call_result", "DataTransfer")[0]["payload"]
                assert data_transfer["status"] == "UnknownVendorId"
                if version is Version.V16:
                    started = out.of("call_result", "StartTransaction")[0]["payload"]
                    assert isinstance(started["transaction_id"], int)
                    assert out.of("call_result", "StopTransaction")
                else:
                    assert len(out.of("call_result", "TransactionEvent")) == 2

                # -- what our side saw
                (boot_handled,) = [r for a, r in seen.handled if a == "BootNotification"]
                assert isinstance(boot_handled, m.BootNotificationRequest)
                if version is Version.V16:
                    assert boot_handled.charge_point_vendor == "InteropVendor"
                else:
                    assert boot_handled.charging_station.vendor_name == "InteropVendor"
                    assert boot_handled.reason is m.BootReasonEnumType.POWER_UP
                (status_handled,) = [r for a, r in seen.handled if a == "StatusNotification"]
                if version is Version.V16:
                    assert status_handled.status is v1_6.ChargePointStatus.AVAILABLE
                else:
                    assert status_handled.connector_status is m.ConnectorStatusEnumType.AVAILABLE
                    assert status_handled.timestamp.tzinfo is not None
                await seen.wait_until(lambda: len(seen.exchanges) >= len(out.of("call_result")))
                incoming = seen.actions(Direction.STATION_TO_CSMS)
                assert incoming[:4] == [
                    "BootNotification",
                    "Heartbeat",
                    "StatusNotification",
                    "MeterValues",
                ]
                assert incoming == [e["action"] for e in out.of("call_sent")]
                assert all(e.ok and e.version is version for e in seen.exchanges)
                meter = next(e for e in seen.exchanges if e.action == "MeterValues")
                assert isinstance(meter.request, m.MeterValuesRequest)
                assert len(meter.request.meter_value[0].sampled_value) == 10
                await seen.wait_until(lambda: len(seen.events) >= 3)
                assert [type(e) for e in seen.events[:3]] == [Connected, BootAnswered, Accepted]
                assert seen.events[0].version is version  # type: ignore[union-attr]

                # -- our CALLs to the station, typed answers
                assert_variables_response(version, await station.call(variables_request(version)))
                triggered = await station.call(trigger_request(version, "Heartbeat"))
                assert isinstance(triggered, m.TriggerMessageResponse)
                accepted_status(version, triggered)
                await out.wait_for("call_result", "Heartbeat", count=2)
                await seen.wait_until(
                    lambda: seen.actions(Direction.STATION_TO_CSMS).count("Heartbeat") == 2
                )
                triggered = await station.call(trigger_request(version, "StatusNotification"))
                accepted_status(version, triggered)
                await out.wait_for("call_result", "StatusNotification", count=2)
                await seen.wait_until(
                    lambda: [a for a, _ in seen.handled].count("StatusNotification") == 2
                )
                reset = await station.call(reset_request(version))
                assert isinstance(reset, m.ResetResponse)
                accepted_status(version, reset)
                await finish(running)

            received = [e["action"] for e in out.of("call_received")]
            assert received[0] == ("GetConfiguration" if version is Version.V16 else "GetVariables")
            assert received[1:] == ["TriggerMessage", "TriggerMessage", "Reset"]
            await seen.wait_until(lambda: isinstance(seen.events[-1], Disconnected))
            assert seen.actions(Direction.CSMS_TO_STATION) == [
                received[0],
                "TriggerMessage",
                "TriggerMessage",
                "Reset",
            ]
            last = seen.events[-1]
            assert isinstance(last, Disconnected)
            assert last.reason is DisconnectReason.CLOSED_BY_PEER
            assert csms.get_station(identity) is None
            assert csms.remembered_status(identity) is RegistrationStatus.ACCEPTED


# -- Pending -> triggered boot -> Accepted ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS, ids=str)
async def test_pending_then_triggered_boot_accepted(version: Version) -> None:
    seen = Seen()
    identity = f"IOP-PEND-{version}"
    router = recording_router(seen, boot_statuses=["Pending", "Accepted"])
    with trio.fail_after(TEST_TIMEOUT):
        async with running_csms(router, seen) as csms:
            async with run_station(port_of(csms), identity, version, "--exit-on-reset") as (
                running,
                out,
            ):
                await seen.wait_until(lambda: RegistrationStatus.PENDING in boot_events(seen))
                station = csms.get_station(identity)
                assert station is not None
                assert station.state is StationState.PENDING
                pending = (await out.wait_for("call_result", "BootNotification"))[0]["payload"]
                assert (pending["status"], pending["interval"]) == ("Pending", 60)

                # not in the Pending allow-list: refused locally, nothing is sent
                sent_before = station.statistics().rpc.frames_sent
                with pytest.raises(StateError, match="Pending"):
                    await station.call(reset_request(version))
                assert station.statistics().rpc.frames_sent == sent_before
                # reading the configuration is allowed while Pending
                assert_variables_response(version, await station.call(variables_request(version)))

                triggered = await station.call(trigger_request(version, "BootNotification"))
                accepted_status(version, triggered)
                await out.wait_for("idle")
                boots = [e["payload"]["status"] for e in out.of("call_result", "BootNotification")]
                assert boots == ["Pending", "Accepted"]
                assert not out.of("call_error")
                assert station.state is StationState.ACCEPTED
                await seen.wait_until(lambda: len(seen.events) >= 4)
                assert boot_events(seen) == [
                    RegistrationStatus.PENDING,
                    RegistrationStatus.ACCEPTED,
                ]
                assert [type(e) for e in seen.events[:4]] == [
                    Connected,
                    BootAnswered,
                    BootAnswered,
                    Accepted,
                ]
                if version is not Version.V16:
                    reasons = [r.reason for a, r in seen.handled if a == "BootNotification"]
                    m = MODULES[version]
                    assert reasons == [
                        m.BootReasonEnumType.POWER_UP,
                        m.BootReasonEnumType.TRIGGERED,
                    ]
                # accepted now: a trigger of BootNotification is refused locally
                with pytest.raises(StateError, match="Accepted"):
                    await station.call(trigger_request(version, "BootNotification"))
                accepted_status(version, await station.call(reset_request(version)))
                await finish(running)
            assert [e["action"] for e in out.of("call_received")] == [
                "GetConfiguration" if version is Version.V16 else "GetVariables",
                "TriggerMessage",
                "Reset",
            ]


# -- Rejected --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS, ids=str)
async def test_rejected_station_is_refused_both_ways(version: Version) -> None:
    seen = Seen()
    identity = f"IOP-REJ-{version}"
    router = recording_router(seen, boot_statuses=["Rejected"])
    with trio.fail_after(TEST_TIMEOUT):
        async with running_csms(router, seen) as csms:
            async with run_station(
                port_of(csms), identity, version, "--probe-after-reject", hold=1.0
            ) as (running, out):
                # the station probes with a Heartbeat, which must be refused
                await out.wait_for("call_error", "Heartbeat")
                station = csms.get_station(identity)
                assert station is not None
                assert station.state is StationState.REJECTED
                rejected = out.of("call_result", "BootNotification")[0]["payload"]
                assert (rejected["status"], rejected["interval"]) == ("Rejected", 60)
                assert out.of("call_error", "Heartbeat")[0]["error"] == "SecurityError"

                before = station.statistics()
                for request in (reset_request(version), variables_request(version)):
                    with pytest.raises(StateError, match="Rejected"):
                        await station.call(request)
                after = station.statistics()
                assert after.calls_sent == before.calls_sent == 0
                assert after.rpc.frames_sent == before.rpc.frames_sent
                await finish(running)
            assert not out.of("call_received")
            assert boot_events(seen) == [RegistrationStatus.REJECTED]
            assert not any(isinstance(e, Accepted) for e in seen.events)
            await seen.wait_until(lambda: len(seen.exchanges) >= 2)
            probe = seen.exchanges[1]
            assert probe.action == "Heartbeat"
            assert isinstance(probe.error, CallError)
            assert probe.error.code is ErrorCode.SECURITY_ERROR
            assert csms.remembered_status(identity) is RegistrationStatus.REJECTED


# -- the example of docs/serving.md ----------------------------------------------------------


def docs_example() -> str:
    text = (DOCS / "serving.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- example:begin -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/serving.md lost its example markers"
    return textwrap.dedent(match.group(1))


@pytest.mark.slow
async def test_serving_docs_example_runs() -> None:
    printed: list[str] = []
    changed = trio.Event()

    def fake_print(*args: object) -> None:
        nonlocal changed
        printed.append(" ".join(str(a) for a in args))
        changed.set()
        changed = trio.Event()

    async def wait_printed(pattern: str) -> re.Match[str]:
        while True:
            for line in printed:
                if found := re.search(pattern, line):
                    return found
            await changed.wait()

    namespace: dict[str, Any] = {"__name__": "serving_example", "print": fake_print}
    exec(compile(docs_example(), "docs/serving.md", "exec"), namespace)
    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["main"], 0)
            port = int((await wait_printed(r"listening on port (\d+)")).group(1))
            async with run_station(port, "DOCS-1", "2.0.1", hold=0.5) as (running, out):
                await wait_printed(r"DOCS-1 HeartbeatInterval = 300")
                await finish(running)
            boot = out.of("call_result", "BootNotification")[0]["payload"]
            assert boot["status"] == "Accepted"
            assert out.of("call_result", "Heartbeat")
            assert [e["action"] for e in out.of("call_received")] == ["GetVariables"]
            await wait_printed(r"DOCS-1 disconnected")
            nursery.cancel_scope.cancel()
    assert any("DOCS-1 booted: InteropVendor InteropModel" in line for line in printed)
