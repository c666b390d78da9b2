"""The server's own TCP listeners (``ocpp_trio.transport.listen``) over real sockets on
127.0.0.1: they accept like trio's listeners, remember each connection's standard-library
socket, close cleanly, and the server hands that socket to every plain-TCP WebSocket transport
(the direct write path the conformance suite then exercises as ``server``)."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from helpers.tls import Pki
from wsproto import ConnectionType, WSConnection

from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import ConnectionInfo
from ocpp_trio.transport.connect import websocket_connector
from ocpp_trio.transport.listen import SocketListener, open_socket_listeners
from ocpp_trio.transport.server import ServerConfig, StationConnection, serve_ocpp_websocket
from ocpp_trio.transport.websocket import WebSocketTransport


def _port(listener: SocketListener) -> int:
    return int(listener.socket.getsockname()[1])


@asynccontextmanager
async def accepted() -> AsyncIterator[tuple[SocketListener, trio.SocketStream, trio.SocketStream]]:
    """A listener on 127.0.0.1 and one connection to it: ``(listener, client, server)``, the
    two ends closed on the way out, then the listener."""
    (listener,) = await open_socket_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", _port(listener))
        server = await listener.accept()
        async with client, server:
            yield listener, client, server


async def test_accepted_streams_carry_their_socket_and_talk_both_ways() -> None:
    async with accepted() as (listener, client, server):
        raw = listener.raw_socket(server)
        assert raw is not None
        assert isinstance(server, trio.SocketStream)
        assert raw.fileno() == server.socket.fileno()
        assert raw.getblocking() is False
        # the listener knows only what it accepted
        assert listener.raw_socket(client) is None
        left, _right = trio.testing.memory_stream_pair()
        assert listener.raw_socket(left) is None
        await client.send_all(b"ping")
        assert await server.receive_some(4) == b"ping"
        raw.send(b"pong")  # writing to the kept socket is writing to the stream
        assert await client.receive_some(4) == b"pong"


async def test_the_kept_socket_goes_with_its_stream() -> None:
    (listener,) = await open_socket_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", _port(listener))
        server = await listener.accept()
        raw = listener.raw_socket(server)
        assert raw is not None
        await server.aclose()
        await client.aclose()
        assert raw.fileno() == -1  # closing the stream closed the very same socket
        with pytest.raises(OSError, match="Bad file descriptor"):
            raw.send(b"x")
        # the listener does not keep a connection alive once its stream is gone
        kept = weakref.ref(server.socket)
        del server
        gc.collect()
        assert kept() is None


async def test_closing_wakes_a_waiting_accept_and_refuses_later_ones() -> None:
    (listener,) = await open_socket_listeners(0, host="127.0.0.1")
    failed = trio.Event()

    async def wait_for_one() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()
        failed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_one)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()
        with trio.fail_after(5):
            await failed.wait()
    assert listener.socket.fileno() == -1
    await listener.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()


async def test_accept_is_a_checkpoint_even_when_a_connection_is_waiting() -> None:
    (listener,) = await open_socket_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", _port(listener))
        async with client:
            with trio.CancelScope() as scope:
                scope.cancel()
                await listener.accept()
            assert scope.cancelled_caught
            # the cancelled accept took nothing: the waiting connection is the next one
            with trio.fail_after(5):
                server = await listener.accept()
            async with server:
                await client.send_all(b"x")
                assert await server.receive_some(1) == b"x"


async def test_a_transport_refuses_a_socket_that_is_not_its_streams() -> None:
    async with accepted() as (listener, _client, server):
        other = socket.socket()
        with other, pytest.raises(ValueError, match="raw_socket"):
            WebSocketTransport(
                server,
                WSConnection(ConnectionType.SERVER),
                info=ConnectionInfo(),
                max_message_size=1024,
                raw_socket=other,
            )
        memory, _ = trio.testing.memory_stream_pair()
        with pytest.raises(ValueError, match="raw_socket"):
            WebSocketTransport(
                memory,
                WSConnection(ConnectionType.SERVER),
                info=ConnectionInfo(),
                max_message_size=1024,
                raw_socket=listener.raw_socket(server),
            )


@pytest.mark.parametrize("tls", [False, True])
async def test_the_server_writes_plain_connections_through_the_kept_socket(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, pki: Pki, tls: bool
) -> None:
    """Plain TCP connections get their socket (the conformance suite's ``server`` kind then
    covers the direct write path); TLS connections cannot (the bytes must go through TLS)."""
    found: list[socket.socket | None] = []
    original = SocketListener.raw_socket

    def spy(self: SocketListener, stream: trio.abc.Stream) -> socket.socket | None:
        raw = original(self, stream)
        found.append(raw)
        return raw

    monkeypatch.setattr(SocketListener, "raw_socket", spy)

    async def echo(station: StationConnection) -> None:
        await station.transport.send_message(await station.transport.get_message())
        await station.transport.get_message()

    info = await nursery.start(
        partial(
            serve_ocpp_websocket,
            echo,
            "127.0.0.1",
            0,
            config=ServerConfig(ping_interval=0, close_timeout=0.5),
            ssl_context=pki.server_context() if tls else None,
        )
    )
    scheme = "wss" if tls else "ws"
    connect = websocket_connector(
        f"{scheme}://127.0.0.1:{info.port}", "CS1", ssl_context=pki.client() if tls else None
    )
    with trio.fail_after(10):
        async with connect([Version.V201]) as transport:
            await transport.send_message("x" * 300_000)  # more than one socket buffer
            assert await transport.get_message() == "x" * 300_000
    assert len(found) == 1
    assert (found[0] is None) is tls
