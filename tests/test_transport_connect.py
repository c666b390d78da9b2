"""The station-side connector (``websocket_connector``) over real sockets on 127.0.0.1: what it
reports when a connection cannot be made, and what it hands over when it can.  The transport
itself is held to the common contract in test_transport_conformance.py."""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio
import trio.testing
import trustme

from ocpp_trio.errors import ConnectFailedError, TransportClosedError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.connect import websocket_connector
from ocpp_trio.transport.server import (
    ConnectionRequest,
    Rejection,
    ServerConfig,
    ServerInfo,
    StationConnection,
    serve_ocpp_websocket,
)

FAST = ServerConfig(ping_interval=0, close_timeout=0.5, handshake_timeout=2)


async def greet(station: StationConnection) -> None:
    await station.transport.send_message(f"{station.identity}|{station.version}")
    await station.transport.get_message()


async def serve(nursery: trio.Nursery, **kwargs: object) -> ServerInfo:
    kwargs.setdefault("config", FAST)
    info: ServerInfo = await nursery.start(
        partial(serve_ocpp_websocket, greet, "127.0.0.1", 0, **kwargs)
    )
    return info


async def test_a_connection_reports_who_is_at_the_other_end(nursery: trio.Nursery) -> None:
    info = await serve(nursery)
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}/ocpp/", "CS*7")
    async with connect([Version.V16, Version.V201]) as transport:
        assert await transport.get_message() == "CS*7|2.0.1"
        assert transport.info.subprotocol == "ocpp2.0.1"
        assert transport.info.remote == f"127.0.0.1:{info.port}"
        assert transport.info.path == "/ocpp/CS%2A7"
    assert transport.closed is not None
    assert (transport.closed.code, transport.closed.reason) == (1001, "station going away")


async def test_a_refusal_carries_the_http_status_and_body(nursery: trio.Nursery) -> None:
    async def check(request: ConnectionRequest) -> Rejection | None:
        return Rejection(401, "who are you?", (("WWW-Authenticate", 'Basic realm="OCPP"'),))

    info = await serve(nursery, check_request=check)
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}", "CS1", password="x")
    with pytest.raises(ConnectFailedError) as failed:
        async with connect([Version.V201]):
            pytest.fail("connected")  # pragma: no cover
    assert failed.value.status == 401
    assert str(failed.value) == "the CSMS refused the connection: HTTP 401 who are you?"


async def test_an_untrusted_certificate_says_so(nursery: trio.Nursery) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    info = await serve(nursery, ssl_context=server_context)
    client_context = ssl.create_default_context()
    trustme.CA().configure_trust(client_context)  # another CA
    connect = websocket_connector(
        f"wss://127.0.0.1:{info.port}", "CS1", ssl_context=client_context, connect_timeout=5
    )
    with pytest.raises(ConnectFailedError) as failed:
        async with connect([Version.V201]):
            pytest.fail("connected")  # pragma: no cover
    message = str(failed.value)
    assert f"TLS handshake with 127.0.0.1:{info.port} failed: certificate verify failed: " in (
        message
    )
    assert "timed out" not in message
    assert failed.value.status is None


async def test_a_server_that_never_answers_is_a_timeout(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()  # accepts, says nothing

    nursery.start_soon(trio.serve_listeners, silent, listeners)
    connect = websocket_connector(f"ws://127.0.0.1:{port}", "CS1", connect_timeout=0.2)
    with pytest.raises(ConnectFailedError, match=rf"handshake with 127\.0\.0\.1:{port} timed out"):
        async with connect([Version.V201]):
            pytest.fail("connected")  # pragma: no cover


async def test_an_unreachable_server() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))  # bound, never listening
        port = sock.getsockname()[1]
        connect = websocket_connector(f"ws://127.0.0.1:{port}", "CS1")
        with pytest.raises(ConnectFailedError, match=rf"could not connect to 127\.0\.0\.1:{port}"):
            async with connect([Version.V201]):
                pytest.fail("connected")  # pragma: no cover


async def test_no_agreed_version(nursery: trio.Nursery) -> None:
    info = await serve(nursery, config=ServerConfig(ping_interval=0, versions=["1.6"]))
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}", "CS1")
    with pytest.raises(ConnectFailedError) as failed:
        async with connect([Version.V21]):
            pytest.fail("connected")  # pragma: no cover
    assert failed.value.status == 400
    assert "no supported OCPP subprotocol" in str(failed.value)
    config = ServerConfig(ping_interval=0, upgrade_without_subprotocol=True, versions=["1.6"])
    info = await serve(nursery, config=config)
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}", "CS1")
    async with connect([Version.V21]) as transport:
        assert transport.info.subprotocol is None  # the caller decides what to do


async def test_the_body_s_own_exception_comes_out_as_it_is(nursery: trio.Nursery) -> None:
    info = await serve(nursery)
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}", "CS1")
    with pytest.raises(KeyError):
        async with connect([Version.V201]):
            raise KeyError("mine")


async def test_a_cancelled_station_still_says_goodbye(nursery: trio.Nursery) -> None:
    closes: list[tuple[int, str]] = []
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        try:
            await station.transport.get_message()
        except TransportClosedError as exc:
            closes.append((exc.close_code, exc.close_reason))
            done.set()

    info: ServerInfo = await nursery.start(
        partial(serve_ocpp_websocket, handler, "127.0.0.1", 0, config=FAST)
    )
    connect = websocket_connector(f"ws://127.0.0.1:{info.port}", "CS1")
    with trio.CancelScope() as scope:
        async with connect([Version.V201]):
            scope.cancel()
            await trio.sleep_forever()
    with trio.fail_after(5):
        await done.wait()
    assert closes == [(1001, "station going away")]


def test_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        websocket_connector("http://127.0.0.1:9000", "CS1")
    with pytest.raises(ValueError, match="wss://"):
        websocket_connector("ws://127.0.0.1:9000", "CS1", ssl_context=ssl.create_default_context())
    with pytest.raises(ValueError, match="send_timeout"):
        websocket_connector("ws://127.0.0.1:9000", "CS1", send_timeout=0)
