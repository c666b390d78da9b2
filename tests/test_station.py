"""The station runtime over memory transports, with exact virtual times (autojump_clock)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import trio
import trio.testing
from helpers.station import (
    FakeStation,
    boot_request,
    boot_router,
    error_of,
    heartbeat,
    running_station,
    status_notification,
    waiting_router,
)

from ocpp_trio import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    StateError,
    Version,
)
from ocpp_trio.messages import Direction, v1_6, v2_0_1, v2_1
from ocpp_trio.protocol.supervisor import RegistrationStatus, StationState
from ocpp_trio.runtime.events import BootAnswered, Broadcast, Exchange, StationEvent
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station, StationConfig
from ocpp_trio.testing import memory_transport_pair

ALL = list(Version)
V201 = Version.V201
NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


async def boot(fake: FakeStation, expected: str = "Accepted") -> None:
    response = await fake.exchange(boot_request(fake.version))
    assert str(getattr(response, "status", None)) == expected, response


def get_variables() -> v2_0_1.GetVariablesRequest:
    return v2_0_1.GetVariablesRequest(
        get_variable_data=(
            v2_0_1.GetVariableDataType(
                component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
                variable=v2_0_1.VariableType(name="HeartbeatInterval"),
            ),
        )
    )


def get_variables_response() -> v2_0_1.GetVariablesResponse:
    return v2_0_1.GetVariablesResponse(
        get_variable_result=(
            v2_0_1.GetVariableResultType(
                attribute_status=v2_0_1.GetVariableStatusEnumType.ACCEPTED,
                component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
                variable=v2_0_1.VariableType(name="HeartbeatInterval"),
                attribute_value="300",
            ),
        )
    )


def reset() -> v2_0_1.ResetRequest:
    return v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE)


def reset_ok() -> v2_0_1.ResetResponse:
    return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)


# -- registration rules on the wire ------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
async def test_security_error_before_boot(version: Version, autojump_clock: Any) -> None:
    async with running_station(boot_router(), version) as (station, fake):
        frame = await fake.call_raw(heartbeat(version))
        assert frame[0] == 4
        assert frame[2:] == [
            "SecurityError",
            "CALL before the station's BootNotification was Accepted",
            {"action": "Heartbeat"},
        ]
        assert station.state is StationState.CONNECTED
        assert station.statistics().calls_refused == 1


@pytest.mark.parametrize("version", ALL)
async def test_pending_refuses_and_csms_call_does_not_touch_wire(
    version: Version, autojump_clock: Any
) -> None:
    async with running_station(boot_router("Pending", 30), version) as (station, fake):
        await boot(fake, "Pending")
        assert station.state is StationState.PENDING
        frame = await fake.call_raw(heartbeat(version))
        assert frame[2] == "SecurityError"
        assert frame[4] == {"action": "Heartbeat"}
        request: Any
        if version is Version.V16:
            request = v1_6.ResetRequest(type=v1_6.ResetType.HARD)
        else:
            m: Any = v2_0_1 if version is V201 else v2_1
            request = m.ResetRequest(type=m.ResetEnumType.IMMEDIATE)
        with pytest.raises(StateError, match="Pending allow-list"):
            await station.call(request)
        assert await fake.nothing_arrives()
        assert station.statistics().rpc.calls_sent == 0


@pytest.mark.parametrize("version", ALL)
async def test_rejected(version: Version, autojump_clock: Any) -> None:
    async with running_station(boot_router("Rejected", 60), version) as (station, fake):
        await boot(fake, "Rejected")
        frame = await fake.call_raw(heartbeat(version))
        assert frame[2] == "SecurityError"
        request: Any = v1_6.GetConfigurationRequest() if version is Version.V16 else get_variables()
        if version is Version.V21:
            request = v2_1.GetVariablesRequest.from_json(request.to_json())
        with pytest.raises(StateError, match="Rejected"):
            await station.call(request)
        assert await fake.nothing_arrives()


async def test_early_boot_repeated_at_exact_times(autojump_clock: Any) -> None:
    events: Broadcast[StationEvent] = Broadcast()
    async with (
        events.subscribe() as subscription,
        running_station(boot_router("Pending", 60), events=events) as (_station, fake),
    ):
        t0 = trio.current_time()
        await boot(fake, "Pending")
        await trio.sleep(20)
        response = await fake.exchange(boot_request(V201))
        assert isinstance(response, v2_0_1.BootNotificationResponse)
        assert response.status == "Pending"
        assert response.interval == 40
        assert trio.current_time() - t0 == 20
        await trio.sleep(40)
        response = await fake.exchange(boot_request(V201))
        assert isinstance(response, v2_0_1.BootNotificationResponse)
        assert response.interval == 60  # answered by the handler again
        await trio.testing.wait_all_tasks_blocked()
        events.close()
        answers = [e async for e in subscription if isinstance(e, BootAnswered)]
        assert [(a.status, a.interval) for a in answers] == [
            (RegistrationStatus.PENDING, 60),
            (RegistrationStatus.PENDING, 40),
            (RegistrationStatus.PENDING, 60),
        ]


async def test_triggered_message_allowed_once(autojump_clock: Any) -> None:
    async with running_station(boot_router("Pending", 0)) as (station, fake):
        await boot(fake, "Pending")
        trigger = v2_0_1.TriggerMessageRequest(
            requested_message=v2_0_1.MessageTriggerEnumType.HEARTBEAT
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, trigger)
            incoming = await fake.expect_call()
            assert incoming.action == "TriggerMessage"
            await fake.answer(
                incoming,
                v2_0_1.TriggerMessageResponse(status=v2_0_1.TriggerMessageStatusEnumType.ACCEPTED),
            )
        response = await fake.exchange(heartbeat(V201))
        assert isinstance(response, v2_0_1.HeartbeatResponse)
        assert error_of(await fake.exchange(heartbeat(V201)))[0] == "SecurityError"


async def test_rejected_trigger_allows_nothing(autojump_clock: Any) -> None:
    async with running_station(boot_router("Pending", 0)) as (station, fake):
        await boot(fake, "Pending")
        trigger = v2_0_1.TriggerMessageRequest(
            requested_message=v2_0_1.MessageTriggerEnumType.HEARTBEAT
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, trigger)
            incoming = await fake.expect_call()
            await fake.answer(
                incoming,
                v2_0_1.TriggerMessageResponse(status=v2_0_1.TriggerMessageStatusEnumType.REJECTED),
            )
        assert error_of(await fake.exchange(heartbeat(V201)))[0] == "SecurityError"


@pytest.mark.parametrize("version", ALL)
async def test_triggered_status_notification_by_evse(version: Version, autojump_clock: Any) -> None:
    router = boot_router("Pending", 0)
    m: Any = {Version.V16: v1_6, Version.V201: v2_0_1, Version.V21: v2_1}[version]
    seen: list[Any] = []

    @router.fallback
    async def anything(station: Station, request: Any) -> Any:
        seen.append(request)
        return type(request).RESPONSE()

    async with running_station(router, version) as (station, fake):
        await boot(fake, "Pending")
        if version is Version.V16:
            trigger = m.TriggerMessageRequest(
                requested_message=m.MessageTrigger.STATUS_NOTIFICATION, connector_id=1
            )
            ok = m.TriggerMessageResponse(status=m.TriggerMessageStatus.ACCEPTED)
        else:
            trigger = m.TriggerMessageRequest(
                requested_message=m.MessageTriggerEnumType.STATUS_NOTIFICATION,
                evse=m.EVSEType(id=1, connector_id=1),
            )
            ok = m.TriggerMessageResponse(status=m.TriggerMessageStatusEnumType.ACCEPTED)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, trigger)
            await fake.answer(await fake.expect_call(), ok)
        wrong = status_notification(version, 2, 2)
        assert error_of(await fake.exchange(wrong))[0] == "SecurityError"
        right = status_notification(version, 1, 1)
        assert not isinstance(await fake.exchange(right), CallError)
        assert error_of(await fake.exchange(right))[0] == "SecurityError"
        assert seen == [right]


async def test_notify_report_after_get_base_report_in_pending(autojump_clock: Any) -> None:
    router = boot_router("Pending", 0)
    parts: list[int] = []

    @router.on(v2_0_1.NotifyReportRequest)
    async def notify_report(
        station: Station, request: v2_0_1.NotifyReportRequest
    ) -> v2_0_1.NotifyReportResponse:
        parts.append(request.seq_no)
        return v2_0_1.NotifyReportResponse()

    def part(seq: int, tbc: bool) -> v2_0_1.NotifyReportRequest:
        return v2_0_1.NotifyReportRequest(request_id=7, generated_at=NOW, seq_no=seq, tbc=tbc)

    async with running_station(router) as (station, fake):
        await boot(fake, "Pending")
        request = v2_0_1.GetBaseReportRequest(
            request_id=7, report_base=v2_0_1.ReportBaseEnumType.FULL_INVENTORY
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, request)
            await fake.answer(
                await fake.expect_call(),
                v2_0_1.GetBaseReportResponse(
                    status=v2_0_1.GenericDeviceModelStatusEnumType.ACCEPTED
                ),
            )
        assert isinstance(await fake.exchange(part(0, True)), v2_0_1.NotifyReportResponse)
        assert isinstance(await fake.exchange(part(1, False)), v2_0_1.NotifyReportResponse)
        assert error_of(await fake.exchange(part(2, False)))[0] == "SecurityError"
        assert parts == [0, 1]


async def test_trigger_boot_refused_once_accepted(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        trigger = v2_0_1.TriggerMessageRequest(
            requested_message=v2_0_1.MessageTriggerEnumType.BOOT_NOTIFICATION
        )
        with pytest.raises(StateError, match="errata"):
            await station.call(trigger)
        assert await fake.nothing_arrives()


async def test_reboot_goes_back_through_booting(autojump_clock: Any) -> None:
    router = Router()
    release = trio.Event()
    states: list[StationState] = []

    @router.on(v2_0_1.BootNotificationRequest)
    async def on_boot(
        station: Station, request: v2_0_1.BootNotificationRequest
    ) -> v2_0_1.BootNotificationResponse:
        states.append(station.state)
        await release.wait()
        return v2_0_1.BootNotificationResponse(
            current_time=NOW, interval=300, status=v2_0_1.RegistrationStatusEnumType.ACCEPTED
        )

    async with running_station(router) as (station, fake):
        release.set()
        await boot(fake)
        assert station.state is StationState.ACCEPTED
        release = trio.Event()
        message_id = await fake.start(boot_request(V201))
        await trio.sleep(1)
        assert station.state is StationState.BOOTING
        with pytest.raises(StateError, match="booting"):
            await station.call(reset())
        release.set()
        assert isinstance(await fake.reply(message_id), v2_0_1.BootNotificationResponse)
        assert states == [StationState.BOOTING, StationState.BOOTING]
        assert station.state is StationState.ACCEPTED


# -- call() --------------------------------------------------------------------------------


async def test_call_times_out_at_exactly_30_seconds(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        start = trio.current_time()
        with pytest.raises(CallTimeoutError) as info:
            await station.call(reset())
        assert isinstance(info.value, trio.TooSlowError)
        assert trio.current_time() - start == 30
        first = await fake.expect_call()
        # the slot is free: the next call goes out and is answered
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, reset())
            second = await fake.expect_call()
            await fake.answer(first, reset_ok())  # late: dropped
            await fake.answer(second, reset_ok())
        stats = station.statistics()
        assert (stats.calls_sent, stats.calls_timed_out, stats.calls_failed) == (2, 1, 1)
        assert stats.rpc.dropped == 1


async def test_call_timeout_configurable(autojump_clock: Any) -> None:
    config = StationConfig(call_timeout=5)
    async with running_station(boot_router(), config=config) as (station, fake):
        await boot(fake)
        start = trio.current_time()
        with pytest.raises(CallTimeoutError):
            await station.call(reset())
        assert trio.current_time() - start == 5
        with pytest.raises(CallTimeoutError):
            await station.call(reset(), call_timeout=12)
        assert trio.current_time() - start == 17


async def test_cancelled_call_frees_slot_and_late_reply_is_dropped(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        with trio.move_on_after(3):
            await station.call(reset())
        first = await fake.expect_call()
        async with trio.open_nursery() as nursery:

            async def second_call() -> None:
                response = await station.call(get_variables())
                assert isinstance(response, v2_0_1.GetVariablesResponse)

            nursery.start_soon(second_call)
            second = await fake.expect_call()
            await fake.answer(first, reset_ok())  # late reply to the cancelled call
            await fake.answer(second, get_variables_response())
        assert station.statistics().rpc.dropped == 1


async def test_concurrent_callers_queue_in_order(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        order: list[int] = []

        async def caller(i: int) -> None:
            await trio.sleep(i * 0.001)
            await station.call(reset())
            order.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(caller, i)
            for _ in range(3):
                incoming = await fake.expect_call()
                await trio.sleep(1)
                # one at a time: nothing else went out while this one is outstanding
                assert station.statistics().calls_sent == len(order) + 1
                await fake.answer(incoming, reset_ok())
        assert order == [0, 1, 2]


async def test_call_error_and_connection_lost(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with trio.open_nursery() as nursery:

            async def failing() -> None:
                with pytest.raises(CallError) as info:
                    await station.call(reset())
                assert info.value.code is ErrorCode.NOT_SUPPORTED

            nursery.start_soon(failing)
            incoming = await fake.expect_call()
            await fake.transport.send_message(
                fake.rpc.answer_error(incoming.message_id, ErrorCode.NOT_SUPPORTED, "no")
            )
        async with trio.open_nursery() as nursery:

            async def dropped() -> None:
                with pytest.raises(ConnectionLostError):
                    await station.call(reset())

            nursery.start_soon(dropped)
            await fake.expect_call()
            await fake.transport.aclose()
        await station.wait_closed()
        with pytest.raises(ConnectionLostError):
            await station.call(reset())
        assert not station.connected
        assert station.state is StationState.OFFLINE


async def test_call_of_wrong_version_is_local_error(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        with pytest.raises(LocalProtocolError, match=r"1\.6"):
            await station.call(v1_6.ResetRequest(type=v1_6.ResetType.SOFT))
        # the slot was not taken
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, reset())
            await fake.answer(await fake.expect_call(), reset_ok())


# -- handlers --------------------------------------------------------------------------------


async def test_handler_may_call_the_station(autojump_clock: Any) -> None:
    router = boot_router()

    @router.on(v2_0_1.StatusNotificationRequest)
    async def status(
        station: Station, request: v2_0_1.StatusNotificationRequest
    ) -> v2_0_1.StatusNotificationResponse:
        response = await station.call(get_variables())
        assert response.get_variable_result[0].attribute_value == "300"
        return v2_0_1.StatusNotificationResponse()

    async with running_station(router) as (_station, fake):
        await boot(fake)
        message_id = await fake.start(status_notification(V201, 1, 1))
        incoming = await fake.expect_call()
        assert incoming.action == "GetVariables"
        await fake.answer(incoming, get_variables_response())
        assert isinstance(await fake.reply(message_id), v2_0_1.StatusNotificationResponse)


async def test_handler_exception_is_internal_error(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    router = boot_router()

    @router.on(v2_0_1.StatusNotificationRequest)
    async def broken(
        station: Station, request: v2_0_1.StatusNotificationRequest
    ) -> v2_0_1.StatusNotificationResponse:
        raise ZeroDivisionError("oops")

    async with running_station(router) as (station, fake):
        await boot(fake)
        code, description, _ = error_of(await fake.exchange(status_notification(V201, 1, 1)))
        assert (code, description) == ("InternalError", "internal error")
        assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
        assert station.statistics().handler_errors == 1
    record = next(r for r in caplog.records if "raised" in r.getMessage())
    assert "broken" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_handler_wrong_return_type_is_internal_error(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    router = boot_router()

    @router.fallback
    async def sloppy(station: Station, request: Any) -> Any:
        return v2_0_1.HeartbeatResponse(current_time=NOW)

    async with running_station(router) as (_station, fake):
        await boot(fake)
        assert error_of(await fake.exchange(status_notification(V201, 1, 1)))[0] == "InternalError"
    assert any(
        "sloppy" in r.getMessage() and "HeartbeatResponse" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("how", ["schema", "encoding"])
async def test_invalid_response_of_ours_is_internal_error(
    how: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    router = boot_router()

    @router.on(v2_0_1.DataTransferRequest)
    async def data_transfer(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        info = v2_0_1.StatusInfoType(reason_code="ok")
        response = v2_0_1.DataTransferResponse(
            status=v2_0_1.DataTransferStatusEnumType.ACCEPTED, status_info=info
        )
        # slip past the construction checks, as a bug of ours might
        if how == "schema":
            object.__setattr__(info, "reason_code", "x" * 100)  # maxLength 20
        else:
            object.__setattr__(response, "status", "Bogus")  # not even encodable
        return response

    async with running_station(router) as (station, fake):
        await boot(fake)
        request = v2_0_1.DataTransferRequest(vendor_id="acme")
        assert error_of(await fake.exchange(request))[0] == "InternalError"
        assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
        assert station.statistics().handler_errors == 1
    assert any("BUG (ours)" in r.getMessage() for r in caplog.records)


async def test_call_error_from_handler(autojump_clock: Any) -> None:
    router = boot_router()

    @router.on(v2_0_1.AuthorizeRequest)
    async def authorize(
        station: Station, request: v2_0_1.AuthorizeRequest
    ) -> v2_0_1.AuthorizeResponse:
        raise CallError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "no such token", {"x": 1})

    async with running_station(router) as (_station, fake):
        await boot(fake)
        request = v2_0_1.AuthorizeRequest(
            id_token=v2_0_1.IdTokenType(id_token="T", type=v2_0_1.IdTokenEnumType.ISO14443)
        )
        assert error_of(await fake.exchange(request)) == (
            "PropertyConstraintViolation",
            "no such token",
            {"x": 1},
        )


async def test_known_action_without_handler_is_not_supported(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (_station, fake):
        await boot(fake)
        request = v2_0_1.AuthorizeRequest(
            id_token=v2_0_1.IdTokenType(id_token="T", type=v2_0_1.IdTokenEnumType.ISO14443)
        )
        assert error_of(await fake.exchange(request))[0] == "NotSupported"
        # DataTransfer has a default: the answer of a receiver without the vendor's extension
        answer = await fake.exchange(v2_0_1.DataTransferRequest(vendor_id="acme"))
        assert isinstance(answer, v2_0_1.DataTransferResponse)
        assert answer.status is v2_0_1.DataTransferStatusEnumType.UNKNOWN_VENDOR_ID


async def test_boot_without_handler_is_not_supported(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_station(Router()) as (station, fake):
        assert error_of(await fake.exchange(boot_request(V201)))[0] == "NotSupported"
        assert station.state is StationState.CONNECTED
    assert any("set_default_boot" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("version", ALL)
async def test_heartbeat_auto_answer(version: Version, autojump_clock: Any) -> None:
    async with running_station(boot_router(), version) as (station, fake):
        await boot(fake)
        before = datetime.datetime.now(datetime.UTC)
        response: Any = await fake.exchange(heartbeat(version))
        assert response.current_time.tzinfo is not None
        assert abs(response.current_time - before) < datetime.timedelta(seconds=5)
        assert station.statistics().heartbeats_answered == 1


async def test_heartbeat_handler_wins(autojump_clock: Any) -> None:
    router = boot_router()

    @router.on(v2_0_1.HeartbeatRequest)
    async def beat(station: Station, request: v2_0_1.HeartbeatRequest) -> v2_0_1.HeartbeatResponse:
        return v2_0_1.HeartbeatResponse(current_time=NOW)

    async with running_station(router) as (_station, fake):
        await boot(fake)
        response = await fake.exchange(heartbeat(V201))
        assert isinstance(response, v2_0_1.HeartbeatResponse)
        assert response.current_time == NOW


async def test_last_seen(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        assert station.last_seen is None
        await trio.sleep(7)
        await boot(fake)
        assert station.last_seen == trio.current_time()
        assert station.last_seen_at is not None
        await trio.sleep(3)
        await fake.send_raw([3, "unknown", {}])  # any frame counts, even a dropped one
        await trio.sleep(0.5)
        assert trio.current_time() - station.last_seen == 0.5


async def test_excess_calls_answered_generic_error(autojump_clock: Any) -> None:
    release = trio.Event()
    router = waiting_router(release)

    config = StationConfig(handler_queue_size=1)
    async with running_station(router, config=config) as (_station, fake):
        await boot(fake)
        # a misbehaving station: three CALLs without waiting for the answers
        for i in range(3):
            await fake.send_raw([2, f"d{i}", "DataTransfer", {"vendorId": "v"}])
        # one runs, one waits in the queue, the third is answered at once
        first = json.loads(await fake.transport.get_message())
        assert first[:3] == [4, "d2", "GenericError"]
        release.set()
        replies = [json.loads(await fake.transport.get_message()) for _ in range(2)]
        assert [(r[0], r[1]) for r in replies] == [(3, "d0"), (3, "d1")]


async def test_send_handler_2_1(autojump_clock: Any) -> None:
    router = Router()
    answers = iter(["Pending", "Accepted"])
    got: list[v2_1.NotifyPeriodicEventStream] = []

    @router.on(v2_1.BootNotificationRequest)
    async def on_boot(
        station: Station, request: v2_1.BootNotificationRequest
    ) -> v2_1.BootNotificationResponse:
        status = v2_1.RegistrationStatusEnumType(next(answers))
        return v2_1.BootNotificationResponse(current_time=NOW, interval=0, status=status)

    @router.on_send(v2_1.NotifyPeriodicEventStream)
    async def stream(station: Station, message: v2_1.NotifyPeriodicEventStream) -> None:
        got.append(message)

    payload = {
        "id": 1,
        "pending": 0,
        "basetime": "2024-01-01T00:00:00Z",
        "data": [{"t": 0, "v": "1"}],
    }
    async with running_station(router, Version.V21) as (station, fake):
        await boot(fake, "Pending")
        await fake.send_raw([6, "s1", "NotifyPeriodicEventStream", payload])
        await trio.sleep(1)
        assert got == []  # dropped while Pending, and never answered
        await boot(fake, "Accepted")
        await fake.send_raw([6, "s2", "NotifyPeriodicEventStream", payload])
        await trio.sleep(1)
        assert [m.id for m in got] == [1]
        with pytest.raises(LocalProtocolError):
            await station.send(got[0])  # a station-only SEND
        assert await fake.nothing_arrives()


# -- extra handlers ------------------------------------------------------------------------


async def test_slow_extra_handler_never_blocks_and_drops_are_counted(
    autojump_clock: Any,
) -> None:
    seen: list[Exchange] = []

    async def slow(station: Station, exchange: Exchange) -> None:
        seen.append(exchange)
        await trio.sleep_forever()

    async with running_station(boot_router()) as (station, fake):
        station.add_extra_handler(slow, buffer=1)
        start = trio.current_time()
        await boot(fake)
        for _ in range(5):
            assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
        assert trio.current_time() == start  # nothing waited
        await (
            trio.testing.wait_all_tasks_blocked()
        )  # the last exchange is reported after its answer
        stats = station.statistics()
        # 6 exchanges: one taken by the handler, one buffered, four dropped
        assert stats.extra_dropped == 4
        assert len(seen) == 1
        assert seen[0].action == "BootNotification"
        assert seen[0].direction is Direction.STATION_TO_CSMS
        assert seen[0].ok


async def test_failing_extra_handler_keeps_running_then_is_removed(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def failing(station: Station, exchange: Exchange) -> None:
        calls.append(exchange.action)
        raise RuntimeError("extra broke")

    config = StationConfig(extra_handler_max_failures=3)
    async with running_station(boot_router(), config=config) as (station, fake):
        station.add_extra_handler(failing)
        await boot(fake)
        for _ in range(4):
            await fake.exchange(heartbeat(V201))
            await trio.testing.wait_all_tasks_blocked()
        assert len(calls) == 3
        assert station.statistics().extra_errors == 3
        assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
    assert any("removed after 3 consecutive failures" in r.getMessage() for r in caplog.records)


async def test_extra_handler_sees_both_directions(autojump_clock: Any) -> None:
    seen: list[Exchange] = []

    async def record(station: Station, exchange: Exchange) -> None:
        seen.append(exchange)

    async with running_station(boot_router()) as (station, fake):
        station.add_extra_handler(record)
        await fake.exchange(heartbeat(V201))  # refused: SecurityError
        await boot(fake)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station.call, reset())
            await fake.answer(await fake.expect_call(), reset_ok())
        await trio.testing.wait_all_tasks_blocked()
    assert [(e.action, e.direction, e.ok) for e in seen] == [
        ("Heartbeat", Direction.STATION_TO_CSMS, False),
        ("BootNotification", Direction.STATION_TO_CSMS, True),
        ("Reset", Direction.CSMS_TO_STATION, True),
    ]
    assert isinstance(seen[0].error, CallError)
    assert seen[0].error.code is ErrorCode.SECURITY_ERROR
    assert isinstance(seen[2].response, v2_0_1.ResetResponse)


# -- lifecycle ---------------------------------------------------------------------------------


async def test_resumed_station_needs_no_boot(autojump_clock: Any) -> None:
    accepted = RegistrationStatus.ACCEPTED
    async with running_station(boot_router(), initial_status=accepted) as (station, fake):
        assert station.state is StationState.RESUMED
        assert station.is_accepted
        assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
        assert station.state is StationState.ACCEPTED


async def test_aclose_is_idempotent_and_closes_transport(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        await station.aclose(4000, "bye")
        await station.aclose()
        assert fake.transport.closed is not None
        assert (fake.transport.closed.code, fake.transport.closed.reason) == (4000, "bye")
        with pytest.raises(RuntimeError):
            await station.run()


async def test_handler_closing_its_own_station(autojump_clock: Any) -> None:
    router = boot_router()

    @router.on(v2_0_1.DataTransferRequest)
    async def close_me(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        await station.aclose(1000, "done")
        raise AssertionError("not reached")

    async with running_station(router) as (station, fake):
        await boot(fake)
        await fake.start(v2_0_1.DataTransferRequest(vendor_id="x"))
        await station.wait_closed()
        assert fake.transport.closed is not None
        assert fake.transport.closed.reason == "done"


async def test_bad_frames_are_answered_by_the_core(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        await fake.send_raw([2, "x1", "NoSuchAction", {}])
        frame = await fake.transport.get_message()
        assert '"NotImplemented"' in frame
        await trio.testing.wait_all_tasks_blocked()
        assert station.statistics().calls_refused == 1


async def test_peer_gone_while_calls_are_queued(autojump_clock: Any) -> None:
    router = boot_router()

    @router.on(v2_0_1.DataTransferRequest)
    async def slow(
        station: Station, request: v2_0_1.DataTransferRequest
    ) -> v2_0_1.DataTransferResponse:
        await trio.sleep(1)
        return v2_0_1.DataTransferResponse(status=v2_0_1.DataTransferStatusEnumType.ACCEPTED)

    async with running_station(router) as (station, fake):
        await boot(fake)
        for i in range(4):
            await fake.send_raw([2, f"d{i}", "DataTransfer", {"vendorId": "v"}])
        await fake.transport.aclose()
        await station.wait_closed()  # ends cleanly: no crash, nothing left running
        assert not station.connected


async def test_a_call_before_the_connection_is_served_waits_for_it(autojump_clock: Any) -> None:
    # what the CSMS hands out while a replaced connection closes: registered, not yet served
    ours, theirs = memory_transport_pair()
    station = Station("CS1", V201, ours, Router(), initial_status=RegistrationStatus.ACCEPTED)
    fake = FakeStation(theirs, V201)
    answered: list[v2_0_1.GetVariablesResponse] = []

    async def caller() -> None:
        answered.append(await station.call(get_variables(), call_timeout=30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await trio.sleep(5)  # the call waits: nothing is sent, nothing fails
        assert answered == []
        await nursery.start(station.run)
        incoming = await fake.expect_call()
        await fake.answer(incoming, get_variables_response())
        await trio.testing.wait_all_tasks_blocked()
        assert len(answered) == 1
        nursery.cancel_scope.cancel()


async def test_a_call_to_a_connection_never_served_fails_after_its_timeout(
    autojump_clock: Any,
) -> None:
    ours, _theirs = memory_transport_pair()
    station = Station("CS1", V201, ours, Router())
    started = trio.current_time()
    with pytest.raises(ConnectionLostError):
        await station.call(get_variables(), call_timeout=7)
    assert trio.current_time() - started == pytest.approx(7)
    # closed before it was served: a call fails at once
    await station.aclose()
    async with trio.open_nursery() as nursery:
        await nursery.start(station.run)
    started = trio.current_time()
    with pytest.raises(ConnectionLostError):
        await station.call(get_variables(), call_timeout=7)
    assert trio.current_time() == started
