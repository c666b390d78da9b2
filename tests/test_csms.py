"""The CSMS object: registry, duplicate connections, lifecycle events, entry tiers."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from helpers.station import FakeStation, boot_request, boot_router, heartbeat

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig, DuplicatePolicy, open_csms, serve_csms, start_csms
from ocpp_trio.errors import CSMSError
from ocpp_trio.messages import v2_0_1
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
from ocpp_trio.runtime.station import Station
from ocpp_trio.transport.base import memory_transport_pair

V201 = Version.V201


async def connect(
    csms: CSMS, nursery: trio.Nursery, identity: str = "CS1", version: Version = V201
) -> tuple[Station | None, FakeStation]:
    ours, theirs = memory_transport_pair()
    station: Station | None = await nursery.start(
        partial(csms.serve_station, ours, identity, version)
    )
    return station, FakeStation(theirs, version)


async def boot(fake: FakeStation, expected: str = "Accepted") -> None:
    response = await fake.exchange(boot_request(fake.version))
    assert str(getattr(response, "status", None)) == expected, response


def kinds(events: list[StationEvent]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for e in events:
        if isinstance(e, Connected | Accepted):
            out.append((type(e).__name__, e.resumed))
        elif isinstance(e, BootAnswered):
            out.append(("BootAnswered", e.status))
        else:
            out.append(("Disconnected", e.reason))
    return out


async def test_registry_and_lifecycle_events(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    seen: list[StationEvent] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)

        async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with csms.subscribe() as events:
                task_status.started()
                async for event in events:
                    seen.append(event)

        await nursery.start(listen)
        station, fake = await connect(csms, nursery)
        assert station is not None
        assert csms.get_station("CS1") is station
        assert dict(csms.stations) == {"CS1": station}
        await boot(fake)
        await fake.transport.aclose()
        await station.wait_closed()
        assert csms.get_station("CS1") is None
        assert csms.remembered_status("CS1") is RegistrationStatus.ACCEPTED
        nursery.cancel_scope.cancel()
    assert kinds(seen) == [
        ("Connected", False),
        ("BootAnswered", RegistrationStatus.ACCEPTED),
        ("Accepted", False),
        ("Disconnected", DisconnectReason.CLOSED_BY_PEER),
    ]
    assert all(e.identity == "CS1" and e.version is V201 for e in seen)


async def test_reconnect_resumes_accepted_station(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)
        async with csms.subscribe() as events:
            station, fake = await connect(csms, nursery)
            await boot(fake)
            await fake.transport.aclose()
            assert station is not None
            await station.wait_closed()
            station, fake = await connect(csms, nursery)
            assert station is not None
            assert station.state is StationState.RESUMED
            # no BootNotification needed: the station is served as accepted at once
            assert isinstance(await fake.exchange(heartbeat(V201)), v2_0_1.HeartbeatResponse)
            got = [await events.receive() for _ in range(6)]
        assert kinds(got)[-2:] == [("Connected", True), ("Accepted", True)]
        nursery.cancel_scope.cancel()


async def test_pending_remembered_across_reconnect(autojump_clock: Any) -> None:
    csms = CSMS(boot_router("Pending", 0))
    async with trio.open_nursery() as nursery:
        station, fake = await connect(csms, nursery)
        await boot(fake, "Pending")
        await fake.transport.aclose()
        assert station is not None
        await station.wait_closed()
        station, fake = await connect(csms, nursery)
        assert station is not None
        assert station.state is StationState.PENDING
        nursery.cancel_scope.cancel()


async def test_seeded_status_for_recovery(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    csms.remember_status("CS9", RegistrationStatus.ACCEPTED)
    async with trio.open_nursery() as nursery:
        station, _fake = await connect(csms, nursery, "CS9")
        assert station is not None
        assert station.is_accepted
        nursery.cancel_scope.cancel()


async def test_duplicate_connection_replaces_old(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        async with csms.subscribe() as events:
            old, old_fake = await connect(csms, nursery)
            await boot(old_fake)
            new, _new_fake = await connect(csms, nursery)
            assert old is not None
            assert new is not None
            assert not old.connected
            assert old_fake.transport.closed is not None
            assert (old_fake.transport.closed.code, old_fake.transport.closed.reason) == (
                1000,
                "replaced by a new connection",
            )
            assert csms.get_station("CS1") is new
            assert new.state is StationState.RESUMED  # the old one's acceptance carries over
            got = [await events.receive() for _ in range(5)]
        disconnected = got[3]
        assert isinstance(disconnected, Disconnected)
        assert disconnected.reason is DisconnectReason.REPLACED
        assert isinstance(got[4], Connected)
        assert csms.statistics().connections_replaced == 1
        nursery.cancel_scope.cancel()


async def test_racing_duplicates_never_two_live_sessions(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        fakes = []
        for _ in range(4):
            ours, theirs = memory_transport_pair()
            nursery.start_soon(csms.serve_station, ours, "CS1", V201)
            fakes.append(FakeStation(theirs, V201))
        await trio.sleep(1)
        live = [f for f in fakes if f.transport.closed is None]
        assert len(live) == 1
        station = csms.get_station("CS1")
        assert station is not None
        assert station.connected
        nursery.cancel_scope.cancel()


async def test_duplicate_connection_refused_by_policy(autojump_clock: Any) -> None:
    csms = CSMS(boot_router(), config=CSMSConfig(duplicate_connections=DuplicatePolicy.REFUSE))
    async with trio.open_nursery() as nursery:
        old, _old_fake = await connect(csms, nursery)
        new, new_fake = await connect(csms, nursery)
        assert new is None
        assert new_fake.transport.closed is not None
        assert new_fake.transport.closed.code == 1008
        assert old is not None
        assert old.connected
        assert csms.get_station("CS1") is old
        assert csms.statistics().connections_refused == 1
        nursery.cancel_scope.cancel()


async def test_slow_subscriber_never_blocks_stations(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        async with csms.subscribe(buffer=1) as events:
            start = trio.current_time()
            for i in range(3):
                _station, fake = await connect(csms, nursery, f"CS{i}")
                await boot(fake)
            assert trio.current_time() == start
            await trio.testing.wait_all_tasks_blocked()  # boot events follow the answer
            assert events.dropped == 8  # 9 events, one buffered
            assert csms.statistics().events.dropped == 8
            first = await events.receive()
            assert isinstance(first, Connected)
        nursery.cancel_scope.cancel()


async def test_csms_wide_extra_handler(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    seen: list[tuple[str, str]] = []

    async def record(station: Station, exchange: Exchange) -> None:
        seen.append((station.identity, exchange.action))

    csms.add_extra_handler(record)
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)
        for identity in ("A", "B"):
            _station, fake = await connect(csms, nursery, identity)
            await boot(fake)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [("A", "BootNotification"), ("B", "BootNotification")]
        nursery.cancel_scope.cancel()


async def test_aclose_closes_stations_and_subscriptions(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        async with csms.subscribe() as events:
            station, fake = await connect(csms, nursery)
            await csms.aclose()
            assert fake.transport.closed is not None
            assert fake.transport.closed.code == 1001
            assert station is not None
            assert not station.connected
            remaining = [event async for event in events]  # ends: the broadcast is closed
            assert isinstance(remaining[-1], Disconnected)
        late, late_fake = await connect(csms, nursery, "late")
        assert late is None
        assert late_fake.transport.closed is not None


# -- entry tiers over real sockets ----------------------------------------------------------


async def ws_boot(port: int, identity: str = "CS1") -> list[Any]:
    url = f"ws://127.0.0.1:{port}/ocpp/{identity}"
    async with trio_websocket.open_websocket_url(url, subprotocols=["ocpp2.0.1"]) as ws:
        payload = boot_request(V201).to_json()
        await ws.send_message(json.dumps([2, "b1", "BootNotification", payload]))
        reply: list[Any] = json.loads(await ws.get_message())
        return reply


async def test_open_csms_serves_websocket() -> None:
    async with open_csms(boot_router(), "127.0.0.1", 0) as csms:
        assert csms.server_info is not None
        reply = await ws_boot(csms.server_info.port)
        assert reply[0] == 3
        assert reply[2]["status"] == "Accepted"


async def test_serve_csms_with_nursery_start() -> None:
    async with trio.open_nursery() as nursery:
        csms: CSMS = await nursery.start(serve_csms, boot_router(), "127.0.0.1", 0)
        assert csms.server_info is not None
        assert (await ws_boot(csms.server_info.port))[2]["status"] == "Accepted"
        nursery.cancel_scope.cancel()


async def test_start_csms_in_callers_nursery() -> None:
    async with trio.open_nursery() as nursery:
        csms = await start_csms(nursery, boot_router("Pending", 10), "127.0.0.1", 0)
        assert csms.server_info is not None
        assert (await ws_boot(csms.server_info.port))[2]["status"] == "Pending"
        nursery.cancel_scope.cancel()


# -- the ExceptionGroup policy ---------------------------------------------------------------


async def failing_run(self: CSMS, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await trio.sleep(1)
    raise RuntimeError("background boom")


async def test_open_csms_lets_own_exception_through_unwrapped(autojump_clock: Any) -> None:
    with pytest.raises(KeyError) as info:
        async with open_csms(boot_router(), None, None):
            raise KeyError("mine")
    assert info.value.args == ("mine",)


async def test_open_csms_background_failure_is_one_library_error(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CSMS, "run", failing_run)
    with pytest.raises(CSMSError) as info:
        async with open_csms(boot_router(), None, None):
            await trio.sleep(10)
    cause = info.value.__cause__
    assert isinstance(cause, BaseExceptionGroup)
    assert cause.subgroup(RuntimeError) is not None


async def test_open_csms_both_failures_give_library_error(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CSMS, "run", failing_run)

    async def body() -> None:
        async with open_csms(boot_router(), None, None):
            try:
                await trio.sleep(10)
            finally:
                raise KeyError("mine too")  # a body failing while it is cancelled

    with pytest.raises(CSMSError) as info:
        await body()
    cause = info.value.__cause__
    assert isinstance(cause, BaseExceptionGroup)
    assert cause.subgroup(RuntimeError) is not None
    assert cause.subgroup(KeyError) is not None


async def test_open_csms_cancellation_passes_through(autojump_clock: Any) -> None:
    with trio.move_on_after(5) as scope:
        async with open_csms(boot_router(), None, None):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() == 5


async def test_open_csms_bind_error_is_raised_as_is() -> None:
    async with open_csms(boot_router(), "127.0.0.1", 0) as csms:
        assert csms.server_info is not None
        port = csms.server_info.port

        async def enter() -> None:
            async with open_csms(boot_router(), "127.0.0.1", port):
                pass

        with pytest.raises(OSError, match="in use"):
            await enter()


async def test_serve_csms_bind_error_is_raised_as_is() -> None:
    async with trio.open_nursery() as nursery:
        csms: CSMS = await nursery.start(serve_csms, boot_router(), "127.0.0.1", 0)
        assert csms.server_info is not None
        with pytest.raises(OSError, match="in use"):
            await nursery.start(serve_csms, boot_router(), "127.0.0.1", csms.server_info.port)
        nursery.cancel_scope.cancel()


async def test_serve_csms_lets_groups_propagate(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CSMS, "run", failing_run)
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_csms, boot_router(), None, None)
    assert info.value.subgroup(RuntimeError) is not None
