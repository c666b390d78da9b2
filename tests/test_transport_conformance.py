"""The Transport contract, checked against every implementation.

``local`` is the implementation under test, ``remote`` its peer:

* ``memory``: the two ends of ``memory_transport_pair``;
* ``server``: the server side of a WebSocket connection (``serve_ocpp_websocket``), with the
  station side (``websocket_connector``) as the peer; ``client``: the other way round;
* ``server-tls`` and ``client-tls``: the same over TLS (trustme certificates).

The WebSocket ends run over real sockets on 127.0.0.1.  The tests only use the ``Transport``
protocol, except where a peer must misbehave at the WebSocket level (never answer pings): that
peer is a bare wsproto connection (:class:`RawPeer`).  Nothing here waits a fixed time: tasks
are synchronised with events and ``wait_all_tasks_blocked``; the only real time that passes is
the timeouts under test.

Reusable: :func:`open_pair` gives ``(local, remote)`` for any of :data:`KINDS`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import attrs
import pytest
import trio
import trio.testing
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)

from ocpp_trio.errors import ConnectionLostError, TransportClosedError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import CloseReason, Transport, memory_transport_pair
from ocpp_trio.transport.connect import websocket_connector
from ocpp_trio.transport.server import ServerConfig, StationConnection, serve_ocpp_websocket

KINDS = ["memory", "server", "client", "server-tls", "client-tls"]
WEBSOCKET_KINDS = [k for k in KINDS if k != "memory"]


@attrs.frozen(kw_only=True)
class Limits:
    """The settings of both ends of a pair (the memory pair has none of them)."""

    max_message_size: int = 16 * 1024 * 1024
    send_timeout: float = 10.0
    close_timeout: float = 2.0
    ping_interval: float = 0.0
    ping_timeout: float = 10.0


@attrs.frozen
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def make_tls() -> Tls:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)


@asynccontextmanager
async def open_pair(
    kind: str, limits: Limits = Limits()
) -> AsyncIterator[tuple[Transport, Transport]]:
    """``(local, remote)``: ``local`` is the implementation ``kind`` names, ``remote`` its peer.
    Both are closed on the way out; a test using them fails after 30 s instead of hanging."""
    with trio.fail_after(30):
        async with _open_pair(kind, limits) as pair:
            yield pair


@asynccontextmanager
async def _open_pair(kind: str, limits: Limits) -> AsyncIterator[tuple[Transport, Transport]]:
    if kind == "memory":
        a, b = memory_transport_pair()
        yield a, b
        return
    tls = make_tls() if kind.endswith("-tls") else None
    config = ServerConfig(
        max_message_size=limits.max_message_size,
        send_timeout=limits.send_timeout,
        close_timeout=limits.close_timeout,
        ping_interval=limits.ping_interval,
        ping_timeout=limits.ping_timeout,
        handshake_timeout=5,
    )
    handed, received = trio.open_memory_channel[Transport](1)
    release = trio.Event()

    async def handler(station: StationConnection) -> None:
        await handed.send(station.transport)
        await release.wait()

    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            partial(
                serve_ocpp_websocket,
                handler,
                "127.0.0.1",
                0,
                config=config,
                ssl_context=tls.server if tls else None,
            )
        )
        scheme = "wss" if tls else "ws"
        connect = websocket_connector(
            f"{scheme}://127.0.0.1:{info.port}/ocpp",
            "CS1",
            ssl_context=tls.client if tls else None,
            max_message_size=limits.max_message_size,
            send_timeout=limits.send_timeout,
            close_timeout=limits.close_timeout,
            ping_interval=limits.ping_interval,
            ping_timeout=limits.ping_timeout,
        )
        async with connect([Version.V201]) as client:
            with trio.fail_after(5):
                server = await received.receive()
            try:
                yield (server, client) if kind.startswith("server") else (client, server)
            finally:
                release.set()
        nursery.cancel_scope.cancel()


def kinds(*which: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("kind", list(which) or KINDS)


async def drain(transport: Transport) -> tuple[list[str | bytes], TransportClosedError]:
    """Every message until the close, and the close."""
    got: list[str | bytes] = []
    while True:
        try:
            got.append(await transport.get_message())
        except TransportClosedError as exc:
            return got, exc


# --------------------------------------------------------------------------------------------
# Messages


@kinds()
async def test_messages_arrive_in_order_both_ways(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        for n in range(10):
            await local.send_message(f"l{n}")
            await remote.send_message(f"r{n}")
        assert [await remote.get_message() for _ in range(10)] == [f"l{n}" for n in range(10)]
        assert [await local.get_message() for _ in range(10)] == [f"r{n}" for n in range(10)]
        assert local.closed is None
        assert remote.closed is None


@kinds()
async def test_text_is_unicode(kind: str) -> None:
    text = "été ✓ \U0001f50c " * 100
    async with open_pair(kind) as (local, remote):
        await local.send_message(text)
        assert await remote.get_message() == text


@kinds()
async def test_each_send_is_a_checkpoint(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        for n in range(10):
            with trio.testing.assert_checkpoints():
                await local.send_message(str(n))
        assert [await remote.get_message() for _ in range(10)] == [str(n) for n in range(10)]
        await local.aclose()
        with trio.testing.assert_checkpoints(), pytest.raises(ConnectionLostError):
            await local.send_message("closed")


@kinds()
async def test_a_send_cancelled_before_it_starts_sends_nothing(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        with trio.CancelScope() as scope:
            scope.cancel()
            await local.send_message("never")
        assert scope.cancelled_caught
        await local.send_message("after")
        assert await remote.get_message() == "after"
        assert local.closed is None


@kinds()
async def test_get_message_is_a_checkpoint_and_a_cancelled_wait_loses_nothing(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        await remote.send_message("one")
        await remote.send_message("two")
        with trio.testing.assert_checkpoints():
            assert await local.get_message() == "one"
        with trio.testing.assert_checkpoints():
            assert await local.get_message() == "two"
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def wait() -> None:
                with scope:
                    await local.get_message()

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
        await remote.send_message("after the cancel")
        assert await local.get_message() == "after the cancel"


def frames_of(sender: int) -> list[str]:
    """Small frames and frames larger than any socket buffer, each one recognisable."""
    return [f"{sender}:{n}:" + "abcdefgh" * (400_000 if n % 2 else 4) for n in range(4)]


@kinds()
async def test_large_frames_from_several_tasks_arrive_whole(kind: str) -> None:
    senders = 4
    finished: list[int] = []

    async def send_all(transport: Transport, sender: int) -> None:
        for frame in frames_of(sender):
            await transport.send_message(frame)
        finished.append(sender)

    async with open_pair(kind) as (local, remote), trio.open_nursery() as nursery:
        for sender in range(senders):
            nursery.start_soon(send_all, local, sender)
        await trio.testing.wait_all_tasks_blocked()
        if kind != "memory":  # the frames are more than the socket buffers hold
            assert len(finished) < senders
        got = [await remote.get_message() for _ in range(senders * 4)]
    for sender in range(senders):  # every frame whole, each sender's in its order
        assert [m for m in got if isinstance(m, str) and m.startswith(f"{sender}:")] == (
            frames_of(sender)
        )


@kinds()
async def test_cancelling_a_blocked_send_never_delivers_part_of_a_frame(kind: str) -> None:
    big = "z" * 1_000_000
    completed: list[str] = []
    async with open_pair(kind) as (local, remote):
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                n = 0
                while True:
                    message = f"{n}:{big}"
                    await local.send_message(message)
                    completed.append(message)
                    n += 1

            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()  # blocked: the peer does not read
            nursery.cancel_scope.cancel()
        assert [await remote.get_message() for _ in completed] == completed  # none cut
        try:
            await local.send_message("after")
        except TransportClosedError:
            # WebSocket: part of the frame may be out, so the connection was aborted
            assert local.closed == CloseReason(1006, "send cancelled mid-frame")
            with pytest.raises(TransportClosedError) as info:
                await remote.get_message()
            assert info.value.close_code == 1006
        else:  # the cancelled message had not started: nothing of it was sent
            assert local.closed is None
            assert await remote.get_message() == "after"


@kinds()
async def test_a_send_cancelled_while_waiting_its_turn_sends_nothing(kind: str) -> None:
    big = "b" * 3_000_000  # more than the socket buffers (or the memory pair) hold at once
    async with open_pair(kind) as (local, remote), trio.open_nursery() as nursery:
        for n in range(20 if kind == "memory" else 1):  # fill the memory pair's buffer
            nursery.start_soon(local.send_message, f"{n}:{big}")
            await trio.testing.wait_all_tasks_blocked()
        waiting = trio.CancelScope()

        async def send_small() -> None:
            with waiting:
                await local.send_message("never")

        nursery.start_soon(send_small)
        await trio.testing.wait_all_tasks_blocked()  # waiting for its turn
        waiting.cancel()
        await trio.testing.wait_all_tasks_blocked()
        got: list[str | bytes] = []

        async def read() -> None:
            while not got or got[-1] != "after":
                got.append(await remote.get_message())

        nursery.start_soon(read)
        await local.send_message("after")  # after the big ones, which the reader drains
    assert "never" not in got
    assert all(m == "after" or (isinstance(m, str) and m.endswith(big)) for m in got)


# --------------------------------------------------------------------------------------------
# Closing


@kinds()
@pytest.mark.parametrize("closer", ["local", "remote"])
async def test_close_with_code_and_reason_reaches_the_other_end(kind: str, closer: str) -> None:
    async with open_pair(kind) as (local, remote):
        first, other = (local, remote) if closer == "local" else (remote, local)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, other)  # reading, as the runtime always is
            await first.aclose(4001, "rebooting")
        for end in (first, other):
            assert end.closed == CloseReason(4001, "rebooting")
            with pytest.raises(TransportClosedError) as info:
                await end.get_message()
            assert (info.value.close_code, info.value.close_reason) == (4001, "rebooting")
            with pytest.raises(ConnectionLostError):
                await end.send_message("too late")


@kinds()
async def test_messages_sent_before_the_close_are_still_read(kind: str) -> None:
    async with open_pair(kind) as (local, remote), trio.open_nursery() as nursery:
        result: list[tuple[list[str | bytes], TransportClosedError]] = []

        async def read() -> None:
            result.append(await drain(remote))

        await local.send_message("one")
        await local.send_message("two")
        nursery.start_soon(read)
        await local.aclose(1000, "bye")
    [(got, closed)] = result
    assert got == ["one", "two"]
    assert (closed.close_code, closed.close_reason) == (1000, "bye")


@kinds()
async def test_our_close_discards_what_we_had_not_read(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        await remote.send_message("unread")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, remote)
            await local.aclose(1000)
        with pytest.raises(TransportClosedError):
            await local.get_message()


@kinds()
async def test_aclose_is_idempotent_and_the_first_close_wins(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, remote)
            await local.aclose(1001, "going away")
        await local.aclose(1011, "second")
        await remote.aclose(1000, "third")
        assert local.closed == remote.closed == CloseReason(1001, "going away")


@kinds()
async def test_our_close_wakes_our_blocked_reader(kind: str) -> None:
    async with open_pair(kind) as (local, remote), trio.open_nursery() as nursery:
        codes: list[int] = []

        async def read() -> None:
            with pytest.raises(TransportClosedError) as info:
                await local.get_message()
            codes.append(info.value.close_code)

        nursery.start_soon(read)
        nursery.start_soon(drain, remote)
        await trio.testing.wait_all_tasks_blocked()
        await local.aclose(4000, "private")
    assert codes == [4000]


@kinds(*WEBSOCKET_KINDS)
async def test_a_reserved_close_code_aborts_the_connection(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        await local.aclose(1006, "pulled the plug")  # 1006 may not be sent
        assert local.closed == CloseReason(1006, "pulled the plug")
        with pytest.raises(TransportClosedError) as info:
            await remote.get_message()
        assert (info.value.close_code, info.value.close_reason) == (1006, "")


@kinds()
async def test_closed_error_is_a_broken_resource_error(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, local)
            await remote.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await local.send_message("x")


# --------------------------------------------------------------------------------------------
# Limits and timeouts (WebSocket only)


@kinds(*WEBSOCKET_KINDS)
async def test_a_message_over_the_size_limit_closes_with_1009(kind: str) -> None:
    async with open_pair(kind, Limits(max_message_size=1000)) as (local, remote):
        await remote.send_message("x" * 1000)  # at the limit: fine
        assert await local.get_message() == "x" * 1000
        await remote.send_message("é" * 500)  # 1000 bytes of UTF-8
        assert await local.get_message() == "é" * 500
        await remote.send_message("é" * 501)  # 1002 bytes
        with pytest.raises(TransportClosedError) as info:
            await local.get_message()
        assert info.value.close_code == 1009
        assert local.closed == CloseReason(1009, "message over 1000 bytes")
        got, closed = await drain(remote)
        assert (got, closed.close_code) == ([], 1009)


@kinds(*WEBSOCKET_KINDS)
async def test_a_peer_that_stops_reading_is_aborted_after_the_send_timeout(kind: str) -> None:
    async def flood(transport: Transport) -> None:
        while True:
            await transport.send_message("x" * 1_000_000)

    async with open_pair(kind, Limits(send_timeout=0.5)) as (local, _remote):
        with pytest.raises(TransportClosedError) as info:
            await flood(local)  # the remote never reads
        assert (info.value.close_code, info.value.close_reason) == (
            1006,
            "send timed out after 0.5 s",
        )
        assert local.closed == CloseReason(1006, "send timed out after 0.5 s")


@kinds(*WEBSOCKET_KINDS)
async def test_a_peer_that_vanishes_is_seen_as_1006(kind: str) -> None:
    async with open_pair(kind) as (local, remote):
        await remote.aclose(1006)  # drops the TCP connection, no close frame
        with pytest.raises(TransportClosedError) as info:
            await local.get_message()
        assert info.value.close_code == 1006
        assert local.closed == CloseReason(1006, "")


@kinds(*WEBSOCKET_KINDS)
async def test_only_one_task_may_wait_for_messages(kind: str) -> None:
    async with open_pair(kind) as (local, remote), trio.open_nursery() as nursery:
        nursery.start_soon(local.get_message)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await local.get_message()
        await remote.send_message("for the first")


# --------------------------------------------------------------------------------------------
# Keepalive, against a bare wsproto peer that answers pings or not


@attrs.define
class RawPeer:
    """The other end of one WebSocket connection, driven by hand with wsproto."""

    stream: trio.abc.Stream
    ws: WSConnection
    answer_pings: bool = True
    pings: int = 0
    ping_seen: trio.Event = attrs.Factory(trio.Event)

    async def run(self) -> None:
        """Read until the connection ends, answering pings (or not) and the close."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await self.stream.receive_some(65536):
                self.ws.receive_data(data)
                for event in self.ws.events():
                    await self.on(event)

    async def on(self, event: Event) -> None:
        if isinstance(event, Ping):
            self.pings += 1
            self.ping_seen.set()
            self.ping_seen = trio.Event()
            if self.answer_pings:
                await self.stream.send_all(self.ws.send(event.response()))
        elif isinstance(event, TextMessage):
            await self.stream.send_all(self.ws.send(TextMessage(data=event.data)))
        elif isinstance(event, CloseConnection):
            await self.stream.send_all(self.ws.send(event.response()))


@asynccontextmanager
async def raw_client_pair(
    limits: Limits, *, answer_pings: bool
) -> AsyncIterator[tuple[Transport, RawPeer]]:
    """The server side (``serve_ocpp_websocket``) against a raw wsproto client."""
    handed, received = trio.open_memory_channel[Transport](1)
    release = trio.Event()

    async def handler(station: StationConnection) -> None:
        await handed.send(station.transport)
        await release.wait()

    config = ServerConfig(ping_interval=limits.ping_interval, ping_timeout=limits.ping_timeout)
    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            partial(serve_ocpp_websocket, handler, "127.0.0.1", 0, config=config)
        )
        stream = await trio.open_tcp_stream("127.0.0.1", info.port)
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(
                ws.send(Request(host="127.0.0.1", target="/CS1", subprotocols=["ocpp2.0.1"]))
            )
            while not any(isinstance(e, AcceptConnection) for e in ws.events()):
                ws.receive_data(await stream.receive_some(65536))
            peer = RawPeer(stream, ws, answer_pings)
            nursery.start_soon(peer.run)
            try:
                yield await received.receive(), peer
            finally:
                release.set()
        finally:
            nursery.cancel_scope.cancel()
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def raw_server_pair(
    limits: Limits, *, answer_pings: bool
) -> AsyncIterator[tuple[Transport, RawPeer]]:
    """The station side (``websocket_connector``) against a raw wsproto server."""
    peers, get_peer = trio.open_memory_channel[RawPeer](1)

    async def serve(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        async with stream:
            while not any(isinstance(e, Request) for e in ws.events()):
                ws.receive_data(await stream.receive_some(65536))
            await stream.send_all(ws.send(AcceptConnection(subprotocol="ocpp2.0.1")))
            peer = RawPeer(stream, ws, answer_pings)
            await peers.send(peer)
            await peer.run()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        connect = websocket_connector(
            f"ws://127.0.0.1:{port}",
            "CS1",
            ping_interval=limits.ping_interval,
            ping_timeout=limits.ping_timeout,
        )
        async with connect([Version.V201]) as local:
            yield local, await get_peer.receive()
        nursery.cancel_scope.cancel()


def with_raw_peer(
    kind: str, limits: Limits, *, answer_pings: bool
) -> AbstractAsyncContextManager[tuple[Transport, RawPeer]]:
    """Our ``kind`` end (``server`` or ``client``) with ``limits``, and a raw peer reading in a
    task of its own."""
    if kind == "server":
        return raw_client_pair(limits, answer_pings=answer_pings)
    return raw_server_pair(limits, answer_pings=answer_pings)


@kinds("server", "client")
async def test_keepalive_aborts_a_peer_that_does_not_answer_pings(kind: str) -> None:
    limits = Limits(ping_interval=0.1, ping_timeout=0.2)
    async with with_raw_peer(kind, limits, answer_pings=False) as (local, peer):
        with trio.fail_after(5), pytest.raises(TransportClosedError) as info:
            await local.get_message()
        assert (info.value.close_code, info.value.close_reason) == (1006, "no pong within 0.2 s")
        assert local.closed == CloseReason(1006, "no pong within 0.2 s")
        assert peer.pings == 1


@kinds("server", "client")
async def test_keepalive_keeps_a_peer_that_answers(kind: str) -> None:
    limits = Limits(ping_interval=0.05, ping_timeout=0.1)
    async with with_raw_peer(kind, limits, answer_pings=True) as (local, peer):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(local.get_message)  # reading, so the pongs are seen
            with trio.fail_after(5):
                while peer.pings < 4:  # several ping intervals, each answered
                    await peer.ping_seen.wait()
            nursery.cancel_scope.cancel()
        assert local.closed is None
        await local.send_message("alive")
        assert await local.get_message() == "alive"  # the raw peer echoes


@kinds("server", "client")
async def test_a_talking_peer_is_alive_even_without_pongs(kind: str) -> None:
    """Anything received is a sign of life: a peer that never answers pings but talks is kept."""
    limits = Limits(ping_interval=0.1, ping_timeout=0.1)
    async with with_raw_peer(kind, limits, answer_pings=False) as (local, _peer):
        start = trio.current_time()
        n = 0
        with trio.fail_after(10):
            while trio.current_time() - start < 5 * (limits.ping_interval + limits.ping_timeout):
                await local.send_message(str(n))  # the raw peer echoes it
                assert await local.get_message() == str(n)
                n += 1
        assert local.closed is None
