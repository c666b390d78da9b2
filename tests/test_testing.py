"""The public testing helpers: FakeStation against a CSMS and against a lone Station."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from helpers.station import boot_router

from ocpp_trio import CSMS, CallError, ErrorCode, RegistrationStatus, Version, open_csms
from ocpp_trio.messages import Request, Response, v1_6, v2_0_1
from ocpp_trio.testing import FakeStation, open_fake_station, open_station_pair


async def test_boot_and_call_a_csms_in_a_few_lines(csms: CSMS, autojump_clock: Any) -> None:
    async with open_fake_station(csms, "CS1") as fake:
        answer = await fake.boot()
        assert isinstance(answer, v2_0_1.BootNotificationResponse)
        assert answer.status is v2_0_1.RegistrationStatusEnumType.ACCEPTED
        beat = await fake.call(v2_0_1.HeartbeatRequest())
        assert isinstance(beat, v2_0_1.HeartbeatResponse)
        station = csms.get_station("CS1")
        assert station is not None
        assert station.is_accepted
    await trio.testing.wait_all_tasks_blocked()
    assert csms.get_station("CS1") is None  # closing the fake ended the connection


async def test_a_call_cancelled_while_sending_frees_the_slot(
    csms: CSMS, autojump_clock: Any
) -> None:
    """Cancelled in the send (before the CALL is surely out), a call gives up its slot, as
    when it is cancelled waiting for the answer: the next call goes out."""
    async with open_fake_station(csms, "CS1") as fake:
        await fake.boot()
        with trio.CancelScope() as scope:
            scope.cancel()
            await fake.exchange(v2_0_1.HeartbeatRequest())
        assert scope.cancelled_caught
        assert fake.rpc.statistics().calls_abandoned == 1
        beat = await fake.call(v2_0_1.HeartbeatRequest())
        assert isinstance(beat, v2_0_1.HeartbeatResponse)


@pytest.mark.parametrize("version", [Version.V16, Version.V201])
async def test_a_callerror_is_raised_or_returned(version: Version, autojump_clock: Any) -> None:
    async with open_station_pair(boot_router(), version) as (_station, fake):
        # not booted yet: every other CALL is refused with SecurityError
        request: Request[Any] = (
            v1_6.HeartbeatRequest() if version is Version.V16 else v2_0_1.HeartbeatRequest()
        )
        with pytest.raises(CallError) as caught:
            await fake.call(request)
        assert caught.value.code is ErrorCode.SECURITY_ERROR
        refused = await fake.exchange(request)
        assert isinstance(refused, CallError)
        assert refused.code is ErrorCode.SECURITY_ERROR
        await fake.boot()
        assert not isinstance(await fake.exchange(request), CallError)


async def test_csms_calls_answered_by_a_handler(csms: CSMS, autojump_clock: Any) -> None:
    seen: list[str] = []

    async def answer(request: Request[Any]) -> Response:
        seen.append(request.ACTION)
        if isinstance(request, v2_0_1.ResetRequest):
            return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)
        raise CallError(ErrorCode.NOT_SUPPORTED, "not here")

    async with open_fake_station(csms, "CS1", handler=answer) as fake, trio.open_nursery() as n:
        await fake.boot()
        n.start_soon(fake.serve)
        station = csms.get_station("CS1")
        assert station is not None
        reset = await station.call(v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE))
        assert reset.status is v2_0_1.ResetStatusEnumType.ACCEPTED
        with pytest.raises(CallError) as caught:
            await station.call(v2_0_1.ClearCacheRequest())
        assert caught.value.code is ErrorCode.NOT_SUPPORTED
        assert seen == ["Reset", "ClearCache"]
        n.cancel_scope.cancel()


async def test_csms_calls_answered_one_by_one(autojump_clock: Any) -> None:
    async with open_station_pair(boot_router()) as (station, fake):
        await fake.boot()
        async with trio.open_nursery() as nursery:
            results: list[Response] = []

            async def clear() -> None:
                results.append(await station.call(v2_0_1.ClearCacheRequest()))

            nursery.start_soon(clear)
            call = await fake.expect_call()
            assert isinstance(call.request, v2_0_1.ClearCacheRequest)
            await fake.answer(
                call, v2_0_1.ClearCacheResponse(status=v2_0_1.ClearCacheStatusEnumType.REJECTED)
            )
        assert results == [
            v2_0_1.ClearCacheResponse(status=v2_0_1.ClearCacheStatusEnumType.REJECTED)
        ]


async def test_serve_needs_a_handler(autojump_clock: Any) -> None:
    async with open_station_pair(boot_router()) as (_station, fake):
        with pytest.raises(ValueError, match="handler"):
            await fake.serve()


async def test_pending_station_and_raw_frames(autojump_clock: Any) -> None:
    async with open_station_pair(boot_router("Pending", 10)) as (station, fake):
        answer = await fake.boot()
        assert getattr(answer, "status", None) == "Pending"
        assert station.status is RegistrationStatus.PENDING
        await fake.send_raw('[2,"x1","NoSuchAction",{}]')
        frame = await fake.transport.get_message()
        assert '"NotImplemented"' in str(frame)
        assert await fake.nothing_arrives(5)


def test_the_memory_transport_is_reexported() -> None:
    from ocpp_trio import memory_transport_pair
    from ocpp_trio.testing import memory_transport_pair as again

    assert again is memory_transport_pair
    assert FakeStation.__module__ == "ocpp_trio.testing.fake_station"


async def test_the_serving_docs_example(autojump_clock: Any) -> None:
    """docs/serving.md "Testing your CSMS", with the router the docs leave to the reader."""
    router = boot_router()
    async with (
        open_csms(router, None, None) as csms,  # no listener
        open_fake_station(csms, "CS1") as fake,
    ):
        with pytest.raises(CallError) as refused:  # a CALLERROR is raised...
            await fake.call(v2_0_1.HeartbeatRequest())
        assert refused.value.code is ErrorCode.SECURITY_ERROR
        boot = await fake.boot()  # a BootNotification of the fake's version
        assert getattr(boot, "status", None) == "Accepted"
        answer = await fake.exchange(v2_0_1.HeartbeatRequest())  # ...or returned
        assert isinstance(answer, v2_0_1.HeartbeatResponse)
        assert csms.get_station("CS1") is not None
