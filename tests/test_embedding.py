"""The embedding API of a Station: raw (untyped) CALLs, work scheduled after an answer, and the
handler's way to the CSMS and its store without module globals."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from helpers.station import NOW, boot_router, running_station

from ocpp_trio import (
    CSMS,
    CallError,
    CallTimeoutError,
    CSMSConfig,
    ErrorCode,
    Exchange,
    LocalProtocolError,
    MemoryStore,
    RemoteProtocolError,
    StateError,
    Station,
    open_csms,
)
from ocpp_trio.messages import v2_0_1
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.testing import FakeStation, open_fake_station

ACCEPTED = RegistrationStatus.ACCEPTED
GET_VARIABLES = {
    "getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    ]
}
GET_VARIABLES_ANSWER = {
    "getVariableResult": [
        {
            "attributeStatus": "Accepted",
            "attributeValue": "300",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
        }
    ]
}


@asynccontextmanager
async def accepted_station() -> AsyncIterator[tuple[Station, FakeStation, list[Exchange]]]:
    """A Station accepted from the start, with an extra handler recording its exchanges."""
    seen: list[Exchange] = []

    async def extra(station: Station, exchange: Exchange) -> None:
        seen.append(exchange)

    async with running_station(boot_router(), initial_status=ACCEPTED) as (station, fake):
        station.add_extra_handler(extra)
        yield station, fake, seen


async def next_frame(fake: FakeStation) -> list[Any]:
    frame: list[Any] = json.loads(await fake.transport.get_message())
    return frame


# -- call_raw ----------------------------------------------------------------------------


async def test_call_raw_sends_the_payload_as_given_and_returns_the_answer_as_it_came(
    autojump_clock: Any,
) -> None:
    async with accepted_station() as (station, fake, seen):
        async with trio.open_nursery() as nursery:
            answers: list[dict[str, Any]] = []

            async def call() -> None:
                answers.append(await station.call_raw("GetVariables", GET_VARIABLES))

            nursery.start_soon(call)
            frame = await next_frame(fake)
            assert frame[0] == 2
            assert frame[2:] == ["GetVariables", GET_VARIABLES]
            await fake.send_raw([3, frame[1], GET_VARIABLES_ANSWER])
        assert answers == [GET_VARIABLES_ANSWER]
        # validated: the machines learned the value, the extra handlers saw typed messages
        await station.machines.settle()
        await trio.testing.wait_all_tasks_blocked()
        assert [e.action for e in seen] == ["GetVariables"]
        assert isinstance(seen[0].response, v2_0_1.GetVariablesResponse)
        values = [
            v for v in station.machines.device_model if v.variable.name == "HeartbeatInterval"
        ]
        assert values


async def test_call_raw_checks_the_request_before_sending(autojump_clock: Any) -> None:
    async with accepted_station() as (station, fake, _):
        with pytest.raises(LocalProtocolError, match="getVariableData"):
            await station.call_raw("GetVariables", {"getVariableData": "nope"})
        with pytest.raises(LocalProtocolError, match="unknown action can only be sent"):
            await station.call_raw("AcmeUnlockLid", {})
        with pytest.raises(LocalProtocolError, match="may not send"):
            await station.call_raw("BootNotification", {}, validate=False)
        assert await fake.nothing_arrives()


async def test_call_raw_checks_the_answer(autojump_clock: Any) -> None:
    async with accepted_station() as (station, fake, _):
        async with trio.open_nursery() as nursery:
            failures: list[BaseException] = []

            async def call() -> None:
                with pytest.raises(RemoteProtocolError) as caught:
                    await station.call_raw("GetVariables", GET_VARIABLES)
                failures.append(caught.value)

            nursery.start_soon(call)
            frame = await next_frame(fake)
            await fake.send_raw([3, frame[1], {"getVariableResult": "broken"}])
        assert len(failures) == 1


async def test_call_raw_without_validation(autojump_clock: Any) -> None:
    async with accepted_station() as (station, fake, seen):
        async with trio.open_nursery() as nursery:
            answers: list[dict[str, Any]] = []

            async def call() -> None:
                answers.append(await station.call_raw("AcmeUnlockLid", {"lid": 3}, validate=False))
                # a known action with a payload its schema refuses goes out all the same
                answers.append(await station.call_raw("Reset", {"type": 1}, validate=False))

            nursery.start_soon(call)
            frame = await next_frame(fake)
            assert frame[2:] == ["AcmeUnlockLid", {"lid": 3}]
            await fake.send_raw([3, frame[1], {"opened": True, "odd": [1, None]}])
            frame = await next_frame(fake)
            assert frame[2:] == ["Reset", {"type": 1}]
            await fake.send_raw([3, frame[1], {"status": 42}])
        assert answers == [{"opened": True, "odd": [1, None]}, {"status": 42}]
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []  # no typed messages to show


async def test_call_raw_errors_and_timeout_are_those_of_call(autojump_clock: Any) -> None:
    async with accepted_station() as (station, fake, _):
        async with trio.open_nursery() as nursery:

            async def refused() -> None:
                with pytest.raises(CallError) as caught:
                    await station.call_raw("AcmeUnlockLid", {}, validate=False)
                assert caught.value.code is ErrorCode.NOT_IMPLEMENTED

            nursery.start_soon(refused)
            frame = await next_frame(fake)
            await fake.send_raw([4, frame[1], "NotImplemented", "", {}])
        before = trio.current_time()
        with pytest.raises(CallTimeoutError):
            await station.call_raw("GetVariables", GET_VARIABLES, call_timeout=5)
        assert trio.current_time() - before == 5
        await next_frame(fake)  # the CALL that was not answered
        # the slot is free again: one CALL at a time, queued in order
        async with trio.open_nursery() as nursery:
            order: list[str] = []

            async def call(action: str) -> None:
                await station.call_raw(action, {}, validate=False)
                order.append(action)

            nursery.start_soon(call, "A")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "B")
            first = await next_frame(fake)
            assert fake.transport.closed is None
            assert await fake.nothing_arrives(1)  # B waits for A's answer
            await fake.send_raw([3, first[1], {}])
            second = await next_frame(fake)
            await fake.send_raw([3, second[1], {}])
        assert [first[2], second[2]] == ["A", "B"]
        assert order == ["A", "B"]


async def test_call_raw_obeys_the_registration_rules(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        with pytest.raises(StateError):
            await station.call_raw("AcmeUnlockLid", {}, validate=False)
        assert await fake.nothing_arrives()


# -- after_answer ------------------------------------------------------------------------


def signing_router(done: list[str], *, fail: bool = False) -> Any:
    router = boot_router()

    async def send_certificate(station: Station, csr: str) -> None:
        answer = await station.call(
            v2_0_1.CertificateSignedRequest(certificate_chain=f"chain for {csr}")
        )
        done.append(answer.status.value)

    @router.on(v2_0_1.SignCertificateRequest)
    async def sign(
        station: Station, request: v2_0_1.SignCertificateRequest
    ) -> v2_0_1.SignCertificateResponse:
        station.after_answer(send_certificate, station, request.csr)
        if fail:
            raise CallError(ErrorCode.GENERIC_ERROR, "changed my mind")
        return v2_0_1.SignCertificateResponse(status=v2_0_1.GenericStatusEnumType.ACCEPTED)

    return router


def signed(status: v2_0_1.CertificateSignedStatusEnumType) -> v2_0_1.CertificateSignedResponse:
    return v2_0_1.CertificateSignedResponse(status=status)


async def test_after_answer_runs_once_the_answer_is_on_the_wire(autojump_clock: Any) -> None:
    done: list[str] = []
    async with running_station(signing_router(done), initial_status=ACCEPTED) as (_, fake):
        # the very next frame after the CALL is its answer: the follow-up comes after it
        answer = await fake.call_raw(v2_0_1.SignCertificateRequest(csr="CSR"))
        assert answer[0] == 3
        assert answer[2] == {"status": "Accepted"}
        call = await fake.expect_call()
        assert isinstance(call.request, v2_0_1.CertificateSignedRequest)
        assert call.request.certificate_chain == "chain for CSR"
        await fake.answer(call, signed(v2_0_1.CertificateSignedStatusEnumType.ACCEPTED))
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["Accepted"]


async def test_after_answer_is_dropped_when_the_handler_fails(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ocpp_trio")
    done: list[str] = []
    router = signing_router(done, fail=True)
    async with running_station(router, initial_status=ACCEPTED) as (_, fake):
        answer = await fake.call_raw(v2_0_1.SignCertificateRequest(csr="CSR"))
        assert answer[0] == 4
        assert await fake.nothing_arrives()
    assert done == []
    assert any("dropped" in r.getMessage() for r in caplog.records)


async def test_after_answer_failures_are_logged_and_the_station_lives_on(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[str] = []
    async with running_station(signing_router(done), initial_status=ACCEPTED) as (station, fake):
        await fake.call_raw(v2_0_1.SignCertificateRequest(csr="CSR"))
        call = await fake.expect_call()
        await fake.answer_error(call, ErrorCode.INTERNAL_ERROR, "no")
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert station.connected
        # the next one works
        await fake.call_raw(v2_0_1.SignCertificateRequest(csr="CSR2"))
        call = await fake.expect_call()
        await fake.answer(call, signed(v2_0_1.CertificateSignedStatusEnumType.REJECTED))
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["Rejected"]
    failed = [
        r for r in caplog.records if "after answering SignCertificate failed" in r.getMessage()
    ]
    assert len(failed) == 1
    assert "InternalError" in failed[0].getMessage()


async def test_after_answer_outside_a_handler(autojump_clock: Any) -> None:
    async with running_station(boot_router(), initial_status=ACCEPTED) as (station, _):

        async def nothing() -> None:
            pass

        with pytest.raises(RuntimeError, match="from a handler"):
            station.after_answer(nothing)


# -- the handler's context ---------------------------------------------------------------


async def test_handlers_reach_the_csms_and_its_store(autojump_clock: Any) -> None:
    store = MemoryStore()
    router = boot_router()
    reached: list[tuple[CSMS, object, Station | None]] = []

    @router.on(v2_0_1.HeartbeatRequest)
    async def heartbeat(
        station: Station, request: v2_0_1.HeartbeatRequest
    ) -> v2_0_1.HeartbeatResponse:
        csms = station.csms
        assert isinstance(csms, CSMS)  # narrows the protocol to the whole CSMS
        reached.append((csms, station.store, csms.get_station(station.identity)))
        return v2_0_1.HeartbeatResponse(current_time=NOW)

    async with (
        open_csms(router, None, None, config=CSMSConfig(store=store)) as csms,
        open_fake_station(csms, "CS1") as fake,
    ):
        await fake.boot()
        await fake.call(v2_0_1.HeartbeatRequest())
        station = csms.get_station("CS1")
        assert reached == [(csms, store, station)]
        assert station is not None
        assert station.csms.store is store


async def test_a_station_on_its_own_has_no_csms(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, _):
        assert station.store is None
        with pytest.raises(RuntimeError, match="not served by a CSMS"):
            station.csms  # noqa: B018 - the property raises


# -- the sans-IO layer under call_raw ----------------------------------------------------


def test_rpc_raw_calls() -> None:
    from ocpp_trio.protocol.rpc import CallCompleted, RawCallCompleted, RpcConnection

    csms = RpcConnection("2.0.1", role="csms")
    message_id, text, request = csms.start_raw_call("AcmeThing", {"x": 1}, validate=False)
    assert request is None
    assert json.loads(text) == [2, message_id, "AcmeThing", {"x": 1}]
    with pytest.raises(LocalProtocolError, match="still outstanding"):
        csms.start_raw_call("AcmeThing", {}, validate=False)
    events = csms.receive(json.dumps([3, message_id, {"whatever": [1]}])).events
    assert events == [RawCallCompleted(message_id, "AcmeThing", {"whatever": [1]})]
    # validated: typed both ways, and the answer's JSON kept as it came
    message_id, text, request = csms.start_raw_call("GetVariables", GET_VARIABLES)
    assert isinstance(request, v2_0_1.GetVariablesRequest)
    (event,) = csms.receive(json.dumps([3, message_id, GET_VARIABLES_ANSWER])).events
    assert isinstance(event, CallCompleted)
    assert isinstance(event.response, v2_0_1.GetVariablesResponse)
    assert event.payload == GET_VARIABLES_ANSWER
    with pytest.raises(LocalProtocolError):  # not JSON: nothing changes
        csms.start_raw_call("AcmeThing", {"x": float("nan")}, validate=False)
    assert csms.outstanding is None
