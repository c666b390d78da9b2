"""The in-memory transport pairs: what only they do (bounded buffers, binary frames, pickling of
the close error). The contract every transport keeps is in test_transport_conformance.py."""

from __future__ import annotations

import pickle

import pytest
import trio
import trio.testing

from ocpp_trio.errors import ConnectionLostError, TransportClosedError
from ocpp_trio.transport.base import (
    CloseCode,
    CloseReason,
    ConnectionInfo,
    Transport,
    memory_transport_pair,
)


async def test_send_and_receive_both_ways():
    a, b = memory_transport_pair()
    await a.send_message("from a")
    await b.send_message("from b")
    assert await b.get_message() == "from a"
    assert await a.get_message() == "from b"
    assert a.closed is None
    assert b.closed is None


async def test_order_is_kept():
    a, b = memory_transport_pair(max_buffer=8)
    for i in range(8):
        await a.send_message(str(i))
    assert [await b.get_message() for _ in range(8)] == [str(i) for i in range(8)]


async def test_binary_frames_arrive_as_bytes():
    a, b = memory_transport_pair()
    await a.send_binary(b"\x00\x01")
    assert await b.get_message() == b"\x00\x01"


async def test_info_defaults_and_custom():
    custom = ConnectionInfo(remote="10.0.0.1:4000", path="/ocpp/CS1", subprotocol="ocpp1.6")
    a, b = memory_transport_pair(info_b=custom)
    assert a.info == ConnectionInfo()
    assert a.info.remote == "memory"
    assert b.info is custom


async def test_close_propagates_code_and_reason_to_the_peer():
    a, b = memory_transport_pair()
    await a.aclose(CloseCode.POLICY_VIOLATION, "duplicate connection")
    for end in (a, b):
        assert end.closed == CloseReason(1008, "duplicate connection")
    with pytest.raises(TransportClosedError) as info:
        await b.get_message()
    assert info.value.close_code == 1008
    assert info.value.close_reason == "duplicate connection"
    with pytest.raises(ConnectionLostError):
        await b.send_message("too late")
    with pytest.raises(ConnectionLostError):
        await a.send_message("too late")
    with pytest.raises(ConnectionLostError):
        await a.get_message()


async def test_closed_error_is_a_broken_resource_error_and_pickles():
    a, b = memory_transport_pair()
    await b.aclose()
    with pytest.raises(trio.BrokenResourceError) as info:
        await a.send_message("x")
    assert isinstance(info.value, ConnectionLostError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.close_code, copy.close_reason) == (1000, "")
    assert "1000" in str(info.value)


async def test_messages_sent_before_the_peer_closed_can_still_be_read():
    a, b = memory_transport_pair()
    await a.send_message("one")
    await a.send_message("two")
    await a.aclose(1000, "bye")
    assert await b.get_message() == "one"
    assert await b.get_message() == "two"
    with pytest.raises(TransportClosedError):
        await b.get_message()


async def test_closing_discards_what_we_had_not_read():
    a, b = memory_transport_pair()
    await a.send_message("unread")
    await b.aclose()
    with pytest.raises(TransportClosedError):
        await b.get_message()


async def test_aclose_is_idempotent_and_the_first_close_wins():
    a, b = memory_transport_pair()
    await a.aclose(1001, "going away")
    await a.aclose(1011, "second")
    await b.aclose(1000, "third")
    assert a.closed == b.closed == CloseReason(1001, "going away")


async def test_close_wakes_blocked_receivers_on_both_ends():
    a, b = memory_transport_pair()
    errors: list[int] = []

    async def receive(end: Transport) -> None:
        with pytest.raises(TransportClosedError) as info:
            await end.get_message()
        errors.append(info.value.close_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive, a)
        nursery.start_soon(receive, b)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose(4000, "private")
    assert errors == [4000, 4000]


async def test_bounded_buffer_applies_backpressure(autojump_clock):
    a, b = memory_transport_pair(max_buffer=2)
    await a.send_message("1")
    await a.send_message("2")
    with trio.move_on_after(1) as scope:
        await a.send_message("3")
    assert scope.cancelled_caught
    assert await b.get_message() == "1"
    await a.send_message("4")  # there is room again
    assert [await b.get_message(), await b.get_message()] == ["2", "4"]


async def test_zero_buffer_is_a_rendezvous(autojump_clock):
    a, b = memory_transport_pair(max_buffer=0)
    got: list[str | bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_message, "hand over")
        await trio.sleep(5)  # the sender waits for a reader, however long
        got.append(await b.get_message())
    assert got == ["hand over"]


async def test_cancelled_receive_loses_nothing(autojump_clock):
    a, b = memory_transport_pair()
    with trio.move_on_after(1):
        await b.get_message()
    await a.send_message("after the cancel")
    assert await b.get_message() == "after the cancel"


async def test_cancelled_blocked_send_delivers_nothing(autojump_clock):
    a, b = memory_transport_pair(max_buffer=1)
    await a.send_message("kept")
    with trio.move_on_after(1) as scope:
        await a.send_message("dropped")
    assert scope.cancelled_caught
    assert await b.get_message() == "kept"
    await a.send_message("next")
    assert await b.get_message() == "next"


async def test_peer_close_wakes_a_sender_blocked_on_a_full_buffer(autojump_clock):
    a, b = memory_transport_pair(max_buffer=0)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            with pytest.raises(TransportClosedError) as info:
                await a.send_message("never read")
            assert info.value.close_reason == "reader left"

        nursery.start_soon(send)
        await trio.sleep(1)
        await b.aclose(1000, "reader left")


async def test_own_close_wakes_own_blocked_sender(autojump_clock):
    a, _b = memory_transport_pair(max_buffer=0)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            with pytest.raises(TransportClosedError):
                await a.send_message("never read")

        nursery.start_soon(send)
        await trio.sleep(1)
        await a.aclose()


def test_negative_buffer_is_refused():
    with pytest.raises(ValueError, match="max_buffer"):
        memory_transport_pair(max_buffer=-1)


def test_close_reason_str():
    assert str(CloseReason(1000)) == "1000"
    assert str(CloseReason(1009, "too big")) == "1009 too big"
