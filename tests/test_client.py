"""The station-side API (ChargePoint): boot, calls, handlers, reconnection, the offline queue.

Most tests run a real CSMS (``open_csms`` without a socket) and connect the charge point to it
over memory transport pairs, in virtual time (``autojump_clock``), so waits and back-offs are
checked to the exact second.  A few run over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import random
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trustme
from helpers.client import Link

from ocpp_trio import (
    CSMS,
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ConnectionRequest,
    ErrorCode,
    Exchange,
    LocalProtocolError,
    Rejection,
    Router,
    Station,
    Version,
    open_csms,
)
from ocpp_trio.cli.main import default_router
from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.config import BootInfo, ChargePointConfig, ChargePointState, RetryBackOff
from ocpp_trio.client.entry import open_charge_point, serve_charge_point, start_charge_point
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.errors import ChargePointError, ConnectFailedError
from ocpp_trio.messages import Direction, Request, decode_request, v1_6, v2_0_1
from ocpp_trio.transport.base import Transport
from ocpp_trio.transport.connect import basic_auth_header, station_url, websocket_connector

NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
FAST = ChargePointConfig(
    retry_back_off=RetryBackOff(wait_minimum=1.0, random_range=0.0, repeat_times=3),
    call_timeout=5.0,
    message_attempt_interval=1.0,
    boot_retry_interval=30.0,
)


# -- a CSMS reached over memory pairs -------------------------------------------------------------


class Recorder:
    """An extra handler of the CSMS: every exchange, both ways, in order."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def __call__(self, station: Station, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def sent_by_station(self, action: str | None = None) -> list[Exchange]:
        return [
            e
            for e in self.exchanges
            if e.direction is Direction.STATION_TO_CSMS and (action is None or e.action == action)
        ]


@asynccontextmanager
async def setup(
    router: Router | None = None,
    *,
    identity: str = "CP1",
    version: Version = Version.V201,
    cp_router: ChargePointRouter | None = None,
    config: ChargePointConfig = FAST,
    boot: BootInfo | None = None,
) -> AsyncIterator[tuple[CSMS, Link, ChargePoint, Recorder]]:
    recorder = Recorder()
    async with (
        open_csms(router or default_router(interval=100), None, None) as csms,
        trio.open_nursery() as nursery,
    ):
        csms.add_extra_handler(recorder, buffer=1000)
        link = Link(csms, nursery, identity)
        charge_point = ChargePoint(
            identity,
            link.connect,
            versions=(version,),
            router=cp_router,
            boot=boot or BootInfo(vendor="V", model="M"),
            config=config,
            rng=random.Random(7),
        )
        await nursery.start(charge_point.run)
        try:
            yield csms, link, charge_point, recorder
        finally:
            nursery.cancel_scope.cancel()


async def settle() -> None:
    """Let every task run until all wait (virtual time does not move)."""
    await trio.testing.wait_all_tasks_blocked()


def tx_event(seq: int, kind: str = "Updated", tx: str = "TX1") -> v2_0_1.TransactionEventRequest:
    return v2_0_1.TransactionEventRequest(
        event_type=v2_0_1.TransactionEventEnumType(kind),
        timestamp=NOW,
        trigger_reason=v2_0_1.TriggerReasonEnumType.METER_VALUE_PERIODIC,
        seq_no=seq,
        transaction_info=v2_0_1.TransactionType(transaction_id=tx),
    )


# -- boot, calls, heartbeats -----------------------------------------------------------------------


async def test_boots_then_calls_and_heartbeats(autojump_clock: Any) -> None:
    async with setup() as (csms, _link, cp, recorder):
        assert cp.state in (ChargePointState.CONNECTING, ChargePointState.BOOTING)
        await cp.wait_accepted()
        assert cp.state is ChargePointState.ACCEPTED
        assert cp.version is Version.V201
        assert cp.heartbeat_interval == 100
        [boot] = recorder.sent_by_station("BootNotification")
        assert boot.request.to_json()["chargingStation"] == {"model": "M", "vendorName": "V"}
        assert boot.request.to_json()["reason"] == "PowerUp"
        response = await cp.call(v2_0_1.HeartbeatRequest())
        assert isinstance(response, v2_0_1.HeartbeatResponse)  # typed, checked at run time too
        started = trio.current_time()
        await trio.sleep(350)
        heartbeats = recorder.sent_by_station("Heartbeat")
        # one we sent, then one per 100 s of inactivity
        assert [round(e.started - started) for e in heartbeats[1:]] == [100, 200, 300]
        stats = cp.statistics()
        assert (stats.boots_sent, stats.connects, stats.calls_failed) == (1, 1, 0)
        assert csms.get_station("CP1") is not None


async def test_a_call_of_another_version_is_refused_before_sending(autojump_clock: Any) -> None:
    async with setup() as (_csms, _link, cp, recorder):
        await cp.wait_accepted()
        with pytest.raises(LocalProtocolError):
            await cp.call(v1_6.HeartbeatRequest())
        await settle()
        assert not recorder.sent_by_station("Heartbeat")


async def test_call_timeout_frees_the_slot(autojump_clock: Any) -> None:
    router = default_router(interval=1000)

    @router.on(v2_0_1.DataTransferRequest)
    async def slow(station: Station, request: v2_0_1.DataTransferRequest) -> Any:
        await trio.sleep(10)
        return v2_0_1.DataTransferResponse(status=v2_0_1.DataTransferStatusEnumType.ACCEPTED)

    async with setup(router) as (_csms, _link, cp, _recorder):
        await cp.wait_accepted()
        started = trio.current_time()
        with pytest.raises(CallTimeoutError):
            await cp.call(v2_0_1.DataTransferRequest(vendor_id="x"))
        assert trio.current_time() - started == pytest.approx(5.0)
        # the late answer is dropped; the next call works
        assert isinstance(await cp.call(v2_0_1.HeartbeatRequest()), v2_0_1.HeartbeatResponse)
        assert cp.statistics().calls_timed_out == 1


async def test_calls_while_offline_raise(autojump_clock: Any) -> None:
    async with setup() as (_csms, link, cp, _recorder):
        await cp.wait_accepted()
        link.up = False
        await link.drop()
        await cp.wait_state(lambda c: not c.connected)
        with pytest.raises(ConnectionLostError):
            await cp.call(v2_0_1.HeartbeatRequest())


# -- boot answers: Pending, Rejected --------------------------------------------------------------


def scripted_boots(*answers: tuple[str, int]) -> tuple[Router, list[Any]]:
    """A CSMS router answering successive BootNotifications as told (the last one repeats)."""
    router = default_router()
    seen: list[Any] = []

    @router.on(v2_0_1.BootNotificationRequest)
    async def boot(
        station: Station, request: v2_0_1.BootNotificationRequest
    ) -> v2_0_1.BootNotificationResponse:
        seen.append((trio.current_time(), request))
        status, interval = answers[min(len(seen), len(answers)) - 1]
        return v2_0_1.BootNotificationResponse(
            current_time=NOW,
            interval=interval,
            status=v2_0_1.RegistrationStatusEnumType(status),
        )

    return router, seen


async def test_pending_boots_again_after_the_interval(autojump_clock: Any) -> None:
    router, seen = scripted_boots(("Pending", 40), ("Accepted", 60))
    async with setup(router) as (_csms, _link, cp, _recorder):
        await cp.wait_state(lambda c: c.state is ChargePointState.PENDING)
        await cp.wait_accepted()
        assert [round(t - seen[0][0]) for t, _ in seen] == [0, 40]
        assert cp.heartbeat_interval == 60


async def test_pending_boots_at_once_when_triggered(autojump_clock: Any) -> None:
    router, seen = scripted_boots(("Pending", 1000), ("Accepted", 60))
    async with setup(router) as (csms, _link, cp, recorder):
        await cp.wait_state(lambda c: c.state is ChargePointState.PENDING)
        await trio.sleep(5)
        station = csms.get_station("CP1")
        assert station is not None
        answer = await station.call(
            v2_0_1.TriggerMessageRequest(
                requested_message=v2_0_1.MessageTriggerEnumType.BOOT_NOTIFICATION
            )
        )
        assert answer.status is v2_0_1.TriggerMessageStatusEnumType.ACCEPTED
        await cp.wait_accepted()
        assert [round(t - seen[0][0]) for t, _ in seen] == [0, 5]
        assert seen[1][1].reason is v2_0_1.BootReasonEnumType.TRIGGERED
        # the triggered boot came after the answer to the trigger
        actions = [(e.direction, e.action) for e in recorder.exchanges]
        trigger = actions.index((Direction.CSMS_TO_STATION, "TriggerMessage"))
        assert actions[trigger + 1 :].count((Direction.STATION_TO_CSMS, "BootNotification")) == 1
        assert cp.statistics().boots_sent == 2


async def test_rejected_waits_the_interval_and_answers_nothing(autojump_clock: Any) -> None:
    router, seen = scripted_boots(("Rejected", 30), ("Rejected", 0), ("Accepted", 60))
    async with setup(router) as (_csms, _link, cp, _recorder):
        await cp.wait_state(lambda c: c.state is ChargePointState.REJECTED)
        await cp.wait_accepted()
        # 30 s as told, then the configured retry (30 s) for an interval of 0
        assert [round(t - seen[0][0]) for t, _ in seen] == [0, 30, 60]


# -- handlers --------------------------------------------------------------------------------------


async def test_handlers_answer_the_csms(autojump_clock: Any) -> None:
    cp_router = ChargePointRouter()
    calls: list[str] = []

    @cp_router.on(v2_0_1.GetVariablesRequest)
    async def get_variables(
        cp: ChargePoint, request: v2_0_1.GetVariablesRequest
    ) -> v2_0_1.GetVariablesResponse:
        # a handler may itself call the CSMS: the reader never waits for it
        await cp.call(v2_0_1.HeartbeatRequest())
        calls.append("GetVariables")
        item = request.get_variable_data[0]
        return v2_0_1.GetVariablesResponse(
            get_variable_result=(
                v2_0_1.GetVariableResultType(
                    attribute_status=v2_0_1.GetVariableStatusEnumType.ACCEPTED,
                    attribute_value="42",
                    component=item.component,
                    variable=item.variable,
                ),
            )
        )

    @cp_router.on(v2_0_1.ClearCacheRequest)
    async def broken(cp: ChargePoint, request: v2_0_1.ClearCacheRequest) -> Any:
        raise RuntimeError("boom")

    @cp_router.on(v2_0_1.UnlockConnectorRequest)
    async def refuse(cp: ChargePoint, request: v2_0_1.UnlockConnectorRequest) -> Any:
        raise CallError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "no such connector")

    async with setup(cp_router=cp_router) as (csms, _link, cp, _recorder):
        await cp.wait_accepted()
        station = csms.get_station("CP1")
        assert station is not None
        wanted = v2_0_1.GetVariableDataType(
            component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
            variable=v2_0_1.VariableType(name="HeartbeatInterval"),
        )
        answer = await station.call(v2_0_1.GetVariablesRequest(get_variable_data=(wanted,)))
        assert answer.get_variable_result[0].attribute_value == "42"
        assert calls == ["GetVariables"]
        with pytest.raises(CallError) as internal:
            await station.call(v2_0_1.ClearCacheRequest())
        assert internal.value.code is ErrorCode.INTERNAL_ERROR
        with pytest.raises(CallError) as chosen:
            await station.call(v2_0_1.UnlockConnectorRequest(evse_id=1, connector_id=9))
        assert chosen.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
        with pytest.raises(CallError) as missing:
            await station.call(v2_0_1.GetLocalListVersionRequest())
        assert missing.value.code is ErrorCode.NOT_SUPPORTED
        assert cp.statistics().handler_errors == 1


async def test_trigger_heartbeat_is_answered_before_the_heartbeat(autojump_clock: Any) -> None:
    async with setup() as (csms, _link, cp, recorder):
        await cp.wait_accepted()
        station = csms.get_station("CP1")
        assert station is not None
        for wanted, status in [
            (v2_0_1.MessageTriggerEnumType.HEARTBEAT, "Accepted"),
            (v2_0_1.MessageTriggerEnumType.LOG_STATUS_NOTIFICATION, "NotImplemented"),
        ]:
            answer = await station.call(v2_0_1.TriggerMessageRequest(requested_message=wanted))
            assert answer.status.value == status
        await settle()
        actions = [e.action for e in recorder.exchanges if e.action != "BootNotification"]
        assert actions[:2] == ["TriggerMessage", "Heartbeat"]


async def test_reset_handler_reboots_with_a_new_boot(autojump_clock: Any) -> None:
    cp_router = ChargePointRouter()

    @cp_router.on(v2_0_1.ResetRequest)
    async def reset(cp: ChargePoint, request: v2_0_1.ResetRequest) -> v2_0_1.ResetResponse:
        cp.request_reboot("RemoteReset")
        return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)

    async with setup(cp_router=cp_router) as (csms, link, cp, recorder):
        await cp.wait_accepted()
        station = csms.get_station("CP1")
        assert station is not None
        answer = await station.call(v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE))
        assert answer.status is v2_0_1.ResetStatusEnumType.ACCEPTED
        await cp.wait_state(lambda c: c.statistics().boots_sent == 2 and c.accepted)
        boots = recorder.sent_by_station("BootNotification")
        assert [b.request.to_json()["reason"] for b in boots] == ["PowerUp", "RemoteReset"]
        assert len(link.attempts) == 2
        assert link.attempts[1] == link.attempts[0]  # no back-off after a reboot


# -- reconnecting ----------------------------------------------------------------------------------


async def test_reconnect_does_not_boot_again(autojump_clock: Any) -> None:
    async with setup() as (csms, link, cp, recorder):
        await cp.wait_accepted()
        dropped = trio.current_time()
        await link.drop()
        await cp.wait_state(lambda c: not c.connected)
        await cp.wait_accepted()
        # RetryBackOff(1, 0, 3): the first wait after a lost connection is the minimum
        assert link.attempts[-1] - dropped == pytest.approx(1.0)
        # the client counts itself accepted as soon as it reconnects (it does not boot again);
        # one round trip makes sure the CSMS has taken the new connection on as well
        assert isinstance(await cp.call(v2_0_1.HeartbeatRequest()), v2_0_1.HeartbeatResponse)
        assert len(recorder.sent_by_station("BootNotification")) == 1
        station = csms.get_station("CP1")
        assert station is not None
        assert station.is_accepted
        assert cp.statistics().disconnects == 1


async def test_back_off_doubles_then_stays(autojump_clock: Any) -> None:
    async with setup() as (_csms, link, cp, _recorder):
        await cp.wait_accepted()
        link.up = False
        await link.drop()
        await trio.sleep(60)
        waits = [
            round(b - a, 3) for a, b in zip(link.attempts[1:], link.attempts[2:], strict=False)
        ]
        # after the dropped connection: 1 s; then 2, 4, 8 and 8 from then on
        assert waits[:5] == [2.0, 4.0, 8.0, 8.0, 8.0]
        link.up = True
        await cp.wait_accepted()
        assert cp.statistics().connect_failures >= 6


def test_back_off_delays_are_randomized_within_the_range() -> None:
    back_off = RetryBackOff(wait_minimum=10, random_range=15, repeat_times=2)
    rng = random.Random(1)
    for failures, low in [(1, 10), (2, 20), (3, 40), (4, 40), (9, 40)]:
        delays = {back_off.delay(failures, rng) for _ in range(50)}
        assert all(low <= d <= low + 15 for d in delays)
        assert len(delays) > 40  # fresh randomness every time
    with pytest.raises(ValueError, match=">= 0"):
        RetryBackOff(wait_minimum=-1)


async def test_security_error_while_accepted_boots_again(autojump_clock: Any) -> None:
    async with setup() as (csms, link, cp, recorder):
        await cp.wait_accepted()
        # the CSMS forgets the station (a restart without a store, say)
        link.up = False
        await link.drop()
        await cp.wait_state(lambda c: not c.connected)
        await settle()
        csms.remember_status("CP1", None)
        link.up = True
        await cp.wait_accepted()  # resumed, as far as the charge point knows
        with pytest.raises(CallError) as refused:
            await cp.call(v2_0_1.HeartbeatRequest())
        assert refused.value.code is ErrorCode.SECURITY_ERROR
        await cp.wait_state(lambda c: c.statistics().boots_sent == 2 and c.accepted)
        reasons = [
            b.request.to_json()["reason"] for b in recorder.sent_by_station("BootNotification")
        ]
        assert reasons == ["PowerUp", "Unknown"]


# -- the offline queue -----------------------------------------------------------------------------


async def test_session_survives_a_lost_connection_in_order_with_offline(
    autojump_clock: Any,
) -> None:
    async with setup() as (csms, link, cp, recorder):
        await cp.wait_accepted()
        started = await cp.enqueue(tx_event(0, "Started"))
        await started.wait()
        assert not started.offline
        # the connection dies mid-session; the CSMS stays away for a while
        link.up = False
        await link.drop()
        await cp.wait_state(lambda c: not c.connected)
        handles = [await cp.enqueue(tx_event(n)) for n in (1, 2)]
        handles.append(await cp.enqueue(tx_event(3, "Ended")))
        await trio.sleep(30)
        assert not any(h.done() for h in handles)
        assert cp.statistics().queued == 3
        link.up = True
        answers = [await h.wait() for h in handles]
        assert all(isinstance(a, v2_0_1.TransactionEventResponse) for a in answers)
        events = recorder.sent_by_station("TransactionEvent")
        assert [e.request.seq_no for e in events] == [0, 1, 2, 3]
        assert [bool(e.request.offline) for e in events] == [False, True, True, True]
        machines = csms.machines("CP1")
        assert machines is not None
        await machines.settle()
        [tx] = machines.ended_transactions
        assert (tx.offline_events, tx.missing_seq_nos) == (3, ())
        assert cp.statistics().queued == 0


async def test_queued_while_booting_waits_for_acceptance(autojump_clock: Any) -> None:
    router, _seen = scripted_boots(("Pending", 20), ("Accepted", 100))
    async with setup(router) as (_csms, _link, cp, recorder):
        handle = await cp.enqueue(tx_event(0, "Started"))
        await cp.wait_state(lambda c: c.state is ChargePointState.PENDING)
        await trio.sleep(10)
        assert not handle.done()
        await handle.wait()
        [event] = recorder.sent_by_station("TransactionEvent")
        assert event.request.offline is True  # queued before the station was accepted


async def test_16_queue_builds_messages_with_the_csms_transaction_id(autojump_clock: Any) -> None:
    async with setup(version=Version.V16) as (csms, link, cp, recorder):
        await cp.wait_accepted()
        link.up = False
        await link.drop()
        await cp.wait_state(lambda c: not c.connected)
        start = await cp.enqueue(
            v1_6.StartTransactionRequest(
                connector_id=1, id_tag="TAG", meter_start=100, timestamp=NOW
            )
        )

        def meter() -> v1_6.MeterValuesRequest:
            return v1_6.MeterValuesRequest(
                connector_id=1,
                transaction_id=start.result().transaction_id,
                meter_value=(
                    v1_6.MeterValue(timestamp=NOW, sampled_value=(v1_6.SampledValue(value="150"),)),
                ),
            )

        values = await cp.enqueue(meter)
        stop = await cp.enqueue(
            lambda: v1_6.StopTransactionRequest(
                transaction_id=start.result().transaction_id, meter_stop=200, timestamp=NOW
            )
        )
        link.up = True
        stopped = await stop.wait()
        assert isinstance(stopped, v1_6.StopTransactionResponse)
        assert values.action == "MeterValues"
        tx_id = start.result().transaction_id
        sent = [e for e in recorder.sent_by_station() if e.action != "BootNotification"]
        assert [e.action for e in sent] == ["StartTransaction", "MeterValues", "StopTransaction"]
        assert sent[1].request.transaction_id == sent[2].request.transaction_id == tx_id
        machines = csms.machines("CP1")
        assert machines is not None
        await machines.settle()
        [tx] = machines.ended_transactions
        assert tx.energy_wh == 100


async def test_a_refused_message_is_retried_then_given_up(autojump_clock: Any) -> None:
    router = default_router()
    answers: list[float] = []

    @router.on(v2_0_1.TransactionEventRequest)
    async def refuse_seq_1(
        station: Station, request: v2_0_1.TransactionEventRequest
    ) -> v2_0_1.TransactionEventResponse:
        if request.seq_no == 1:
            answers.append(trio.current_time())
            raise CallError(ErrorCode.INTERNAL_ERROR, "database down")
        return v2_0_1.TransactionEventResponse()

    config = attrs.evolve(FAST, message_attempts=3, message_attempt_interval=5.0)
    async with setup(router, config=config) as (_csms, _link, cp, recorder):
        await cp.wait_accepted()
        handles = [await cp.enqueue(tx_event(n)) for n in (0, 1, 2)]
        await handles[2].wait()
        await handles[0].wait()
        with pytest.raises(CallError):
            handles[1].result()
        assert [round(t - answers[0]) for t in answers] == [0, 5, 10]
        events = recorder.sent_by_station("TransactionEvent")
        assert [e.request.seq_no for e in events] == [0, 1, 1, 1, 2]
        assert cp.statistics().queue_given_up == 1


async def test_a_factory_that_fails_fails_only_its_message(autojump_clock: Any) -> None:
    async with setup() as (_csms, _link, cp, _recorder):
        await cp.wait_accepted()

        def broken() -> Request[Any]:
            raise LookupError("no transaction id")

        bad = await cp.enqueue(broken)
        good = await cp.enqueue(tx_event(0, "Started"))
        await good.wait()
        with pytest.raises(LookupError):
            await bad.wait()


async def test_stopping_fails_what_is_still_queued(autojump_clock: Any) -> None:
    async with setup() as (_csms, link, cp, _recorder):
        await cp.wait_accepted()
        link.up = False
        await link.drop()
        handle = await cp.enqueue(tx_event(0, "Started"))
        await cp.aclose()
        with pytest.raises(ConnectionLostError):
            await handle.wait()
        with pytest.raises(ConnectionLostError):
            await cp.enqueue(tx_event(1))
        with pytest.raises(ConnectionLostError):
            await cp.wait_accepted()


# -- entry points and their errors -----------------------------------------------------------------


async def test_open_charge_point_lets_the_body_error_through(autojump_clock: Any) -> None:
    async with open_csms(default_router(), None, None) as csms, trio.open_nursery() as nursery:
        link = Link(csms, nursery, "CP1")

        async def fail_inside() -> None:
            async with open_charge_point(None, "CP1", connect=link.connect) as cp:
                await cp.wait_accepted()
                raise KeyError("mine")

        with pytest.raises(KeyError):
            await fail_inside()
        nursery.cancel_scope.cancel()


async def test_open_charge_point_wraps_a_background_failure(autojump_clock: Any) -> None:
    @asynccontextmanager
    async def buggy(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        raise ZeroDivisionError("a bug in the connector")
        yield  # pragma: no cover

    with pytest.raises(ChargePointError) as caught:
        async with open_charge_point(None, "CP1", connect=buggy):
            await trio.sleep_forever()
    assert isinstance(caught.value.__cause__, BaseExceptionGroup)


async def test_open_charge_point_body_and_background_failures_give_one_error(
    autojump_clock: Any,
) -> None:
    @asynccontextmanager
    async def buggy(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        await trio.sleep(1)
        raise ZeroDivisionError("a bug in the connector")
        yield  # pragma: no cover

    async def body() -> None:
        async with open_charge_point(None, "CP1", connect=buggy):
            try:
                await trio.sleep_forever()
            finally:
                raise KeyError("mine too")  # a body failing while it is cancelled

    with pytest.raises(ChargePointError) as caught:
        await body()
    group = caught.value.__cause__
    assert isinstance(group, BaseExceptionGroup)
    assert group.subgroup(ZeroDivisionError) is not None
    assert group.subgroup(KeyError) is not None


async def test_open_charge_point_ctrl_c_in_a_background_task_comes_out_alone(
    autojump_clock: Any,
) -> None:
    """Ctrl-C lands in whatever task runs at that moment: here the connecting one. The body
    then fails too (the charge point stopped under ``wait_accepted``), but what comes out is
    the interrupt alone, as a program's ``except* KeyboardInterrupt`` expects."""

    @asynccontextmanager
    async def interrupted(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        await trio.sleep(1)
        raise KeyboardInterrupt
        yield  # pragma: no cover

    with pytest.raises(KeyboardInterrupt) as caught:
        async with open_charge_point(None, "CP1", connect=interrupted) as cp:
            await cp.wait_accepted()
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert trio.current_time() == 1


async def test_open_charge_point_cancellation_passes_through(autojump_clock: Any) -> None:
    link_attempts: list[float] = []

    @asynccontextmanager
    async def unreachable(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        link_attempts.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        raise ConnectFailedError("nobody there")
        yield  # pragma: no cover

    with trio.move_on_after(5) as scope:
        async with open_charge_point(None, "CP1", connect=unreachable):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    assert link_attempts  # it kept trying meanwhile, and that was never an error


async def test_entry_tiers_and_argument_checks(autojump_clock: Any) -> None:
    async with open_csms(default_router(), None, None) as csms, trio.open_nursery() as nursery:
        link = Link(csms, nursery, "CP1")
        cp = await start_charge_point(nursery, None, "CP1", connect=link.connect)
        await cp.wait_accepted()
        other = Link(csms, nursery, "CP2")
        cp2: ChargePoint = await nursery.start(
            lambda task_status: serve_charge_point(
                None, "CP2", connect=other.connect, task_status=task_status
            )
        )
        await cp2.wait_accepted()
        with pytest.raises(RuntimeError, match="already running"):
            await cp.run()
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match="url"):
        async with open_charge_point(None, "CP1"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="ws://"):
        websocket_connector("http://example.com", "CP1")
    with pytest.raises(ValueError, match="wss://"):
        websocket_connector("ws://example.com", "CP1", ssl_context=ssl.create_default_context())
    with pytest.raises(ValueError, match="message_attempts"):
        ChargePointConfig(message_attempts=0)


def test_urls_and_basic_auth() -> None:
    assert station_url("ws://h:9000/ocpp/", "CS 1/x") == "ws://h:9000/ocpp/CS%201%2Fx"
    name, value = basic_auth_header("CS1", "secret:pass")
    assert name == b"Authorization"
    assert base64.b64decode(value.split()[1]) == b"CS1:secret:pass"
    assert base64.b64decode(basic_auth_header("CP", b"\x00\xff")[1].split()[1]) == b"CP:\x00\xff"


def test_boot_info_for_every_version() -> None:
    info = BootInfo(vendor="V", model="M", serial_number="S1", firmware_version="1.0")
    assert info.request(Version.V16).to_json() == {
        "chargePointVendor": "V",
        "chargePointModel": "M",
        "chargePointSerialNumber": "S1",
        "firmwareVersion": "1.0",
    }
    assert info.request(Version.V21, "Watchdog").to_json() == {
        "reason": "Watchdog",
        "chargingStation": {
            "vendorName": "V",
            "model": "M",
            "serialNumber": "S1",
            "firmwareVersion": "1.0",
        },
    }
    assert decode_request(Version.V201, "BootNotification", info.request(Version.V201).to_json())


# -- over real sockets ---------------------------------------------------------------------------


async def test_websocket_connection_with_basic_auth_and_reconnect() -> None:
    seen: list[tuple[str, str | None]] = []

    async def check(request: ConnectionRequest) -> Rejection | None:
        header = dict(request.headers).get("authorization")
        seen.append((request.identity, header))
        expected = "Basic " + base64.b64encode(b"CS*1:s3cret").decode()
        return None if header == expected else Rejection(401, "who are you?")

    config = ChargePointConfig(
        retry_back_off=RetryBackOff(wait_minimum=0.05, random_range=0.05, repeat_times=2)
    )
    with trio.fail_after(10):
        async with open_csms(default_router(), "127.0.0.1", 0, check_request=check) as csms:
            assert csms.server_info is not None
            url = f"ws://127.0.0.1:{csms.server_info.port}/ocpp"
            async with open_charge_point(
                url, "CS*1", password="s3cret", versions=["2.1", "1.6"], config=config
            ) as cp:
                await cp.wait_accepted()
                assert cp.version is Version.V21  # the CSMS picks the newest offered
                station = csms.get_station("CS*1")
                assert station is not None
                await station.aclose()
                await cp.wait_state(lambda c: not c.connected)
                await cp.wait_accepted()
                assert cp.statistics().boots_sent == 1
            async with open_charge_point(url, "CS*1", password="wrong", config=config) as cp:
                await cp.wait_state(lambda c: c.statistics().connect_failures >= 2)
                assert not cp.connected
    assert seen[0] == ("CS*1", "Basic " + base64.b64encode(b"CS*1:s3cret").decode())


async def test_unreachable_csms_is_retried_quietly() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        config = ChargePointConfig(
            retry_back_off=RetryBackOff(wait_minimum=0.02, random_range=0.0, repeat_times=1)
        )
        with trio.fail_after(10):
            async with open_charge_point(f"ws://127.0.0.1:{port}", "CP", config=config) as cp:
                await cp.wait_state(lambda c: c.statistics().connect_failures >= 3)
                assert cp.state in (ChargePointState.OFFLINE, ChargePointState.CONNECTING)


async def test_tls_with_a_client_certificate() -> None:
    """wss:// with the server's certificate checked, and a client certificate (profile 3)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca.issue_cert("cs-tls.stations.test", common_name="CS-TLS").configure_cert(client)
    names: list[str] = []

    async def check(request: ConnectionRequest) -> Rejection | None:
        certificate = request.peer_certificate or {}
        names.extend(value for rdn in certificate.get("subject", ()) for _, value in rdn)
        return None

    with trio.fail_after(10):
        async with open_csms(
            default_router(), "127.0.0.1", 0, ssl_context=server, check_request=check
        ) as csms:
            assert csms.server_info is not None
            url = f"wss://127.0.0.1:{csms.server_info.port}"
            async with open_charge_point(url, "CS-TLS", ssl_context=client) as cp:
                await cp.wait_accepted()
                assert cp.statistics().connects == 1
    assert "CS-TLS" in names
