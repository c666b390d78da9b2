"""The WebSocket server over real sockets on 127.0.0.1: the HTTP upgrade, negotiation,
identities, limits, failures.

Clients are trio-websocket's own (an implementation independent of the server's), except where a
test needs a peer that misbehaves at the WebSocket level (never reads), a raw wsproto client, or
at the HTTP level, raw bytes read back with h11.  What every transport must do (ordering, close,
timeouts, keepalive, large frames, cancellation) is in test_transport_conformance.py.
"""

from __future__ import annotations

import logging
import socket
import ssl
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import h11
import pytest
import trio
import trio.testing
import trustme
from helpers.server import FAST, echo
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from ocpp_trio.errors import InvalidIdentityError, TransportClosedError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import CloseReason
from ocpp_trio.transport.server import (
    ConnectionRequest,
    Rejection,
    ServerConfig,
    ServerInfo,
    StationConnection,
    check_identity_for_version,
    identity_from_path,
    select_client_preference,
    serve_ocpp_websocket,
)

ALL = ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]
# Short timeouts keep every test well under two seconds of real time.

Handler = Callable[[StationConnection], Awaitable[None]]


async def start(nursery: trio.Nursery, handler: Handler = echo, **kwargs: Any) -> ServerInfo:
    kwargs.setdefault("config", FAST)
    info: ServerInfo = await nursery.start(
        partial(serve_ocpp_websocket, handler, "127.0.0.1", 0, **kwargs)
    )
    return info


@asynccontextmanager
async def station(
    info: ServerInfo,
    path: str = "/ocpp/CS001",
    subprotocols: Sequence[str] = ALL,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client connection whose TCP stream the test owns.

    trio-websocket's own client (open_websocket_url) leaves its socket open when the server
    closes first or rejects the handshake; under ``filterwarnings = error`` the ResourceWarning
    would fail the run, so the test closes the stream itself.
    """
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    if ssl_context is None:
        stream = await trio.open_tcp_stream("127.0.0.1", info.port)
    else:
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", info.port, ssl_context=ssl_context, https_compatible=True
        )
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(2):
            ws = await wrap_client_stream(
                nursery,
                stream,
                f"127.0.0.1:{info.port}",
                path,
                subprotocols=subprotocols,
                extra_headers=extra_headers,
            )
        try:
            yield ws
        finally:
            with trio.move_on_after(2):
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def hello(info: ServerInfo, path: str = "/ocpp/CS001", subprotocols=ALL) -> str:
    """Connect, return the echo handler's greeting, check one round trip."""
    async with station(info, path, subprotocols) as ws:
        greeting = await ws.get_message()
        await ws.send_message("ping?")
        assert await ws.get_message() == "ping?"
        assert isinstance(greeting, str)
        return greeting


async def rejection_of(
    info: ServerInfo,
    path: str,
    subprotocols: Sequence[str] = ALL,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> ConnectionRejected:
    """The server's refusal of an upgrade request (the rejection comes out of trio-websocket's
    reader task, hence inside an exception group)."""
    rejected: list[ConnectionRejected] = []
    try:
        async with station(info, path, subprotocols, extra_headers=extra_headers):
            pytest.fail("upgraded")  # pragma: no cover
    except* ConnectionRejected as group:
        rejected.extend(e for e in group.exceptions if isinstance(e, ConnectionRejected))
    [rejection] = rejected
    assert rejection.body  # the reason is in the body
    return rejection


async def status_of_rejection(info: ServerInfo, path: str, subprotocols=ALL) -> int:
    return (await rejection_of(info, path, subprotocols)).status_code


@asynccontextmanager
async def raw_station(
    info: ServerInfo, path: str = "/ocpp/CS001", *, small_receive_buffer: bool = False
) -> AsyncIterator[trio.SocketStream]:
    """A station that upgrades, then does nothing at all: no reads, no pongs."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if small_receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", info.port))
    stream = trio.SocketStream(sock)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(Request(host="127.0.0.1", target=path, subprotocols=["ocpp1.6"]))
        )
        while True:
            ws.receive_data(await stream.receive_some(4096))
            if any(isinstance(event, AcceptConnection) for event in ws.events()):
                break
        yield stream


# --------------------------------------------------------------------------------------------
# Subprotocol negotiation


@pytest.mark.parametrize("version", list(Version))
async def test_each_version_alone(nursery, version):
    info = await start(nursery)
    async with station(info, subprotocols=[version.subprotocol]) as ws:
        assert ws.subprotocol == version.subprotocol
        assert await ws.get_message() == f"CS001|{version}"


async def test_default_picks_the_newest_offered(nursery):
    info = await start(nursery)
    assert await hello(info, subprotocols=["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]) == "CS001|2.1"
    assert await hello(info, subprotocols=["ocpp2.0.1", "ocpp1.6"]) == "CS001|2.0.1"


async def test_default_picks_the_newest_enabled(nursery):
    config = attrs.evolve(FAST, versions=[Version.V16, Version.V201])
    info = await start(nursery, config=config)
    assert await hello(info, subprotocols=["ocpp2.1", "ocpp1.6", "ocpp2.0.1"]) == "CS001|2.0.1"


async def test_custom_selector_sync(nursery):
    info = await start(nursery, select_version=select_client_preference)
    assert await hello(info, subprotocols=["ocpp1.6", "ocpp2.1"]) == "CS001|1.6"


async def test_custom_selector_async_sees_request_and_enabled_offers(nursery):
    seen: list[tuple[ConnectionRequest, Sequence[Version]]] = []

    async def pick(request: ConnectionRequest, offered: Sequence[Version]) -> Version | None:
        await trio.lowlevel.checkpoint()
        seen.append((request, offered))
        return Version.V201

    config = attrs.evolve(FAST, versions=[Version.V201, Version.V21])
    info = await start(nursery, config=config, select_version=pick)
    offered = ["ocpp1.6", "ocpp2.0.1", "foo", "ocpp2.1"]
    assert await hello(info, "/ocpp/CS001?x=1", subprotocols=offered) == "CS001|2.0.1"
    [(request, candidates)] = seen
    assert candidates == (Version.V201, Version.V21)
    assert request.offered_versions == (Version.V16, Version.V201, Version.V21)
    assert request.offered_subprotocols == tuple(offered)
    assert request.identity == "CS001"
    assert request.path == "/ocpp/CS001"
    assert request.remote.startswith("127.0.0.1:")
    assert request.tls is False
    assert request.peer_certificate is None


@pytest.mark.parametrize("offered", [[], ["ocpp1.5"], ["ocpp2.1"]], ids=["none", "unknown", "off"])
async def test_no_agreed_version_is_refused_with_400(nursery, offered, caplog):
    config = attrs.evolve(FAST, versions=[Version.V16])
    reached: list[StationConnection] = []

    async def handler(station: StationConnection) -> None:
        reached.append(station)  # pragma: no cover

    info = await start(nursery, handler, config=config)
    rejection = await rejection_of(info, "/ocpp/CS001", offered)
    assert rejection.status_code == 400
    assert b"no supported OCPP subprotocol" in rejection.body
    assert not reached
    stats = info.statistics()
    assert (stats.no_subprotocol, stats.handshakes_rejected) == (1, 1)
    assert any("no supported subprotocol" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("offered", [[], ["ocpp1.5"], ["ocpp2.1"]], ids=["none", "unknown", "off"])
async def test_no_agreed_version_can_upgrade_then_close_1002(nursery, offered, caplog):
    config = attrs.evolve(FAST, versions=[Version.V16], upgrade_without_subprotocol=True)
    reached: list[StationConnection] = []

    async def handler(station: StationConnection) -> None:
        reached.append(station)  # pragma: no cover

    info = await start(nursery, handler, config=config)
    async with station(info, subprotocols=offered) as ws:
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1002
    assert not reached
    assert info.statistics().no_subprotocol == 1
    assert any("no supported subprotocol" in r.getMessage() for r in caplog.records)


async def test_selector_refusing_all_is_a_400_or_a_1002(nursery):
    info = await start(nursery, select_version=lambda request, offered: None)
    assert await status_of_rejection(info, "/CS1") == 400
    config = attrs.evolve(FAST, upgrade_without_subprotocol=True)
    info = await start(nursery, select_version=lambda request, offered: None, config=config)
    async with station(info) as ws:
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1002


async def test_selector_choosing_an_unoffered_version_is_a_500(nursery, caplog):
    info = await start(nursery, select_version=lambda request, offered: Version.V21)
    assert await status_of_rejection(info, "/CS1", ["ocpp1.6"]) == 500
    assert any(r.levelno == logging.ERROR for r in caplog.records)


# --------------------------------------------------------------------------------------------
# Station identity


@pytest.mark.parametrize(
    ("path", "identity", "subprotocols"),
    [
        ("/CS001", "CS001", ALL),
        ("/ocpp/CS001", "CS001", ALL),
        ("/ocpp/CS001/", "CS001", ALL),
        ("/ocpp//CS001?version=1.6", "CS001", ALL),
        ("/ocpp/cs-1_a=b+c|d@e.f*", "cs-1_a=b+c|d@e.f*", ALL),  # every identifierString sign
        ("/ocpp/CS%2A1", "CS*1", ALL),
        ("/RDAM%20123", "RDAM 123", ["ocpp1.6"]),  # 1.6 sets no character set
        ("/ocpp/%C3%A9t%C3%A9", "\u00e9t\u00e9", ["ocpp1.6"]),
    ],
)
async def test_identity_over_the_wire(nursery, path, identity, subprotocols):
    info = await start(nursery)
    version = Version.from_subprotocol(max(subprotocols))
    assert await hello(info, path, subprotocols) == f"{identity}|{version}"


@pytest.mark.parametrize(
    ("path", "subprotocols", "status"),
    [
        ("/", ALL, 404),
        ("/ocpp/CS:01", ["ocpp2.0.1"], 400),
        ("/ocpp/CS:01", ["ocpp2.1"], 400),
        ("/" + "A" * 49, ["ocpp2.0.1"], 400),
        ("/" + "A" * 129, ["ocpp1.6"], 400),
        ("/ocpp/bad%zz", ALL, 400),
        ("/ocpp/bad%", ALL, 400),
        ("/ocpp/bad%FF", ALL, 400),
        ("/ocpp/a%2Fb", ALL, 400),
        ("/ocpp/a%00b", ALL, 400),
        ("/ocpp/%20%20", ALL, 400),
        # outside the 2.x identifierString character set
        ("/RDAM%20123", ["ocpp2.0.1"], 400),
        ("/RDAM%20123", ["ocpp2.1", "ocpp2.0.1"], 400),
        ("/ocpp/%C3%A9t%C3%A9", ["ocpp2.1"], 400),
        ("/ocpp/CS%231", ["ocpp2.0.1"], 400),
        ("/ocpp/CS%2C1", ["ocpp2.0.1"], 400),
    ],
)
async def test_invalid_identity_is_refused_before_the_upgrade(nursery, path, subprotocols, status):
    reached: list[str] = []

    async def handler(station: StationConnection) -> None:
        reached.append(station.identity)  # pragma: no cover

    info = await start(nursery, handler)
    rejection = await rejection_of(info, path, subprotocols)
    assert rejection.status_code == status
    assert (b"content-type", b"text/plain; charset=utf-8") in rejection.headers
    assert not reached
    assert info.statistics().handshakes_rejected == 1


async def test_the_2x_identity_is_checked_for_the_chosen_version(nursery):
    """An identity fine on 1.6 only: refused when 2.x is chosen, served when 1.6 is."""
    info = await start(nursery, select_version=select_client_preference)
    assert await hello(info, "/RDAM%20123", ["ocpp1.6", "ocpp2.0.1"]) == "RDAM 123|1.6"
    assert await status_of_rejection(info, "/RDAM%20123", ["ocpp2.0.1", "ocpp1.6"]) == 400


async def test_colon_and_long_identities_are_fine_on_1_6(nursery):
    info = await start(nursery)
    assert await hello(info, "/ocpp/CS:01", ["ocpp1.6"]) == "CS:01|1.6"
    assert await hello(info, "/" + "A" * 128, ["ocpp1.6"]) == "A" * 128 + "|1.6"
    assert await hello(info, "/" + "A" * 48, ["ocpp2.0.1"]) == "A" * 48 + "|2.0.1"


async def test_path_prefix(nursery):
    info = await start(nursery, config=attrs.evolve(FAST, path_prefix="/ocpp"))
    assert await hello(info, "/ocpp/v16/CS7") == "CS7|2.1"
    assert await status_of_rejection(info, "/other/CS7") == 404
    assert await status_of_rejection(info, "/ocppx/CS7") == 404
    assert await status_of_rejection(info, "/ocpp/") == 404


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        ("/CS1", "/", "CS1"),
        ("/a/b/c/CS1//", "/", "CS1"),
        ("/CS1?q=/x/y#frag", "/", "CS1"),
        ("/RDAM%20123", "/", "RDAM 123"),
        ("/ocpp/CS1", "/ocpp/", "CS1"),
        ("/ocpp/CS1", "/ocpp", "CS1"),
        ("/ocpp", "/ocpp", 404),
        ("/ocp/CS1", "/ocpp", 404),
        ("", "/", 404),
        ("//", "/", 404),
        ("/%41%42", "/", "AB"),
        ("/%4", "/", 400),
        ("/%e9", "/", 400),
        ("/a%0Ab", "/", 400),
        ("/a%7Fb", "/", 400),
        ("/a%C2%85b", "/", 400),  # U+0085, a C1 control character
    ],
)
def test_identity_from_path(path, prefix, expected):
    if isinstance(expected, int):
        with pytest.raises(InvalidIdentityError) as info:
            identity_from_path(path, path_prefix=prefix)
        assert info.value.status_code == expected
    else:
        assert identity_from_path(path, path_prefix=prefix) == expected


def test_identity_length_limits():
    assert identity_from_path("/" + "x" * 10, max_length=10) == "x" * 10
    with pytest.raises(InvalidIdentityError):
        identity_from_path("/" + "x" * 11, max_length=10)
    check_identity_for_version("x" * 200 + ":", Version.V16)
    check_identity_for_version("x" * 48, Version.V21)
    for version in (Version.V201, Version.V21):
        with pytest.raises(InvalidIdentityError):
            check_identity_for_version("x" * 49, version)
        with pytest.raises(InvalidIdentityError):
            check_identity_for_version("a:b", version)


IDENTIFIER_STRING = set(string.ascii_letters + string.digits + "*-_=+|@.")


@given(st.text(min_size=1, max_size=48))
def test_2x_identities_are_identifier_strings(identity):
    """Accepted on 2.x exactly when every character is in the identifierString set (less
    ``:``); 1.6 takes them all."""
    check_identity_for_version(identity, Version.V16)
    for version in (Version.V201, Version.V21):
        if set(identity) <= IDENTIFIER_STRING:
            check_identity_for_version(identity, version)
        else:
            with pytest.raises(InvalidIdentityError) as info:
                check_identity_for_version(identity, version)
            assert info.value.status_code == 400


# --------------------------------------------------------------------------------------------
# check_request (where authentication goes)


async def test_check_request_can_refuse_with_status_and_headers(nursery):
    seen: list[ConnectionRequest] = []

    async def check(request: ConnectionRequest) -> Rejection | None:
        seen.append(request)
        if request.header("Authorization") == "Basic secret":
            return None
        return Rejection(401, "bad credentials", (("WWW-Authenticate", 'Basic realm="ocpp"'),))

    info = await start(nursery, check_request=check)
    rejected = await rejection_of(info, "/ocpp/CS001", extra_headers=[(b"Authorization", b"x")])
    assert rejected.status_code == 401
    assert rejected.body == b"bad credentials"
    assert (b"www-authenticate", b'Basic realm="ocpp"') in rejected.headers
    assert seen[-1].header("authorization") == "x"
    async with station(
        info, subprotocols=["ocpp1.6"], extra_headers=[(b"Authorization", b"Basic secret")]
    ) as ws:
        assert await ws.get_message() == "CS001|1.6"
    assert seen[-1].header("authorization") == "Basic secret"


async def test_check_request_raising_is_a_500_and_the_server_lives_on(nursery, caplog):
    async def check(request: ConnectionRequest) -> Rejection | None:
        if request.identity == "BOOM":
            raise RuntimeError("store is down")
        return None

    info = await start(nursery, check_request=check)
    assert await status_of_rejection(info, "/BOOM") == 500
    assert "store is down" in caplog.text
    assert await hello(info, "/CS2") == "CS2|2.1"


def test_rejection_needs_an_error_status():
    with pytest.raises(ValueError, match="300-599"):
        Rejection(200)


# --------------------------------------------------------------------------------------------
# Handlers, limits, failures


async def test_handler_return_closes_with_1000(nursery):
    async def handler(station: StationConnection) -> None:
        await station.transport.send_message("bye")

    info = await start(nursery, handler)
    async with station(info) as ws:
        assert await ws.get_message() == "bye"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1000


async def test_handler_exception_closes_only_that_connection_with_1011(nursery, caplog):
    async def handler(station: StationConnection) -> None:
        if station.identity == "BAD":
            raise ValueError("handler bug")
        await echo(station)

    info = await start(nursery, handler)
    async with station(info, "/GOOD") as good:
        assert await good.get_message() == "GOOD|2.1"
        async with station(info, "/BAD") as bad:
            with pytest.raises(ConnectionClosed) as closed:
                await bad.get_message()
        assert closed.value.reason.code == 1011
        await good.send_message("still here")
        assert await good.get_message() == "still here"
    assert await hello(info, "/AFTER") == "AFTER|2.1"
    assert info.statistics().handler_errors == 1
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "ocpp_trio.server"
    assert record.exc_info is not None


async def test_peer_close_reaches_the_handler_with_code_and_reason(nursery):
    closes: list[tuple[int, str, CloseReason | None]] = []
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        with pytest.raises(TransportClosedError) as info:
            await station.transport.get_message()
        closes.append((info.value.close_code, info.value.close_reason, station.transport.closed))
        done.set()

    info = await start(nursery, handler)
    async with station(info) as ws:
        await ws.aclose(4001, "rebooting")
    with trio.fail_after(1):
        await done.wait()
    assert closes == [(4001, "rebooting", CloseReason(4001, "rebooting"))]
    assert info.statistics().handler_errors == 0


async def test_connection_lost_escaping_the_handler_is_not_a_handler_error(nursery, caplog):
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        try:
            async with trio.open_nursery() as tasks:  # a runtime's tasks, say
                tasks.start_soon(station.transport.get_message)
        finally:
            done.set()

    info = await start(nursery, handler)
    async with station(info) as ws:
        await ws.aclose(1000, "bye")
    with trio.fail_after(1):
        await done.wait()
    assert info.statistics().handler_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_oversize_frame_closes_with_1009_and_others_go_on(nursery, caplog):
    closes: list[int] = []

    async def handler(station: StationConnection) -> None:
        try:
            await echo(station)
        except TransportClosedError as exc:
            closes.append(exc.close_code)
            raise

    info = await start(nursery, handler, config=attrs.evolve(FAST, max_message_size=1000))
    async with station(info, "/OTHER") as other:
        assert await other.get_message() == "OTHER|2.1"
        async with station(info, "/BIG") as big:
            assert await big.get_message() == "BIG|2.1"
            await big.send_message("x" * 1000)  # at the limit: fine
            assert await big.get_message() == "x" * 1000
            await big.send_message("x" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                await big.get_message()
        assert closed.value.reason.code == 1009
        await other.send_message("unaffected")
        assert await other.get_message() == "unaffected"
    assert closes[0] == 1009
    assert any(r.levelno == logging.WARNING and "1009" in r.getMessage() for r in caplog.records)
    assert info.statistics().handler_errors == 0


async def test_binary_frames_reach_the_handler_as_bytes(nursery):
    got: list[str | bytes] = []

    async def handler(station: StationConnection) -> None:
        got.append(await station.transport.get_message())

    info = await start(nursery, handler)
    async with station(info) as ws:
        await ws.send_message(b"\x01\x02")
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    assert got == [b"\x01\x02"]


async def test_a_peer_that_never_reads_cannot_hold_the_server(nursery):
    config = attrs.evolve(FAST, send_timeout=0.5)
    outcome: list[CloseReason | None] = []
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        if station.identity != "DEAF":
            await echo(station)
            return
        try:
            while True:
                await station.transport.send_message("x" * 65536)
        except TransportClosedError:
            outcome.append(station.transport.closed)
            done.set()

    info = await start(nursery, handler, config=config)
    async with raw_station(info, "/DEAF", small_receive_buffer=True):
        await trio.testing.wait_all_tasks_blocked()  # DEAF's handler is stuck in a send
        # Another station is served normally while DEAF's handler is stuck.
        assert await hello(info, "/LIVELY") == "LIVELY|2.1"
        with trio.fail_after(5):
            await done.wait()
    assert outcome == [CloseReason(1006, "send timed out after 0.5 s")]


async def test_handshake_timeout_drops_a_silent_client(nursery):
    info = await start(nursery, config=attrs.evolve(FAST, handshake_timeout=0.2))
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        with trio.fail_after(1):
            assert await stream.receive_some(100) == b""
    assert info.statistics().handshakes_failed == 1
    assert await hello(info) == "CS001|2.1"


async def test_server_cancel_closes_stations_with_1001(nursery):
    server_scope = trio.CancelScope()

    async def run_server(*, task_status: trio.TaskStatus[ServerInfo]) -> None:
        with server_scope:
            await serve_ocpp_websocket(echo, "127.0.0.1", 0, config=FAST, task_status=task_status)

    info: ServerInfo = await nursery.start(run_server)
    async with station(info) as ws:
        assert await ws.get_message() == "CS001|2.1"
        assert info.statistics().connections_active == 1
        server_scope.cancel()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1001
    assert closed.value.reason.reason == "server shutting down"
    assert info.statistics().connections_active == 0


async def test_handler_nursery_runs_the_connections():
    async with trio.open_nursery() as outer, trio.open_nursery() as handlers:
        info = await start(outer, handler_nursery=handlers)
        assert await hello(info) == "CS001|2.1"
        outer.cancel_scope.cancel()
        handlers.cancel_scope.cancel()


async def test_statistics_and_connection_info(nursery):
    infos: list[Any] = []

    async def handler(station: StationConnection) -> None:
        infos.append(station.transport.info)
        await echo(station)

    info = await start(nursery, handler)
    assert info.addresses == (("127.0.0.1", info.port),)
    assert await hello(info, "/ocpp/CS9?a=b", ["ocpp1.6"]) == "CS9|1.6"
    [connection_info] = infos
    assert connection_info.subprotocol == "ocpp1.6"
    assert connection_info.path == "/ocpp/CS9?a=b"
    assert connection_info.remote.startswith("127.0.0.1:")
    assert ("upgrade", "websocket") in connection_info.headers
    stats = info.statistics()
    assert stats.connections_accepted == 1
    assert stats.handler_errors == stats.handshakes_rejected == stats.no_subprotocol == 0


def test_server_config_validation():
    assert ServerConfig().versions == (Version.V16, Version.V201, Version.V21)
    assert ServerConfig(versions=["2.0.1"]).versions == (Version.V201,)
    with pytest.raises(ValueError, match="at least one"):
        ServerConfig(versions=[])
    with pytest.raises(ValueError, match="send_timeout"):
        ServerConfig(send_timeout=0)
    with pytest.raises(ValueError, match="ping_interval"):
        ServerConfig(ping_interval=-1)
    with pytest.raises(ValueError, match="path_prefix"):
        ServerConfig(path_prefix="ocpp")


# --------------------------------------------------------------------------------------------
# TLS


async def test_tls_exposes_the_client_certificate(nursery):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ca.issue_cert("CS-TLS", common_name="CS-TLS").configure_cert(client_context)
    seen: list[ConnectionRequest] = []

    async def check(request: ConnectionRequest) -> Rejection | None:
        seen.append(request)
        return None

    info = await start(nursery, ssl_context=server_context, check_request=check)
    async with station(
        info, "/CS-TLS", subprotocols=["ocpp2.0.1"], ssl_context=client_context
    ) as ws:
        assert await ws.get_message() == "CS-TLS|2.0.1"
    [request] = seen
    assert request.tls
    assert request.peer_certificate is not None
    assert (("commonName", "CS-TLS"),) in request.peer_certificate["subject"]


async def test_the_tls_handshake_counts_in_the_handshake_timeout(nursery, caplog):
    caplog.set_level(logging.INFO, logger="ocpp_trio")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    config = attrs.evolve(FAST, handshake_timeout=0.2)
    info = await start(nursery, config=config, ssl_context=server_context)
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        with trio.fail_after(5):  # no TLS ClientHello: dropped at the handshake timeout
            assert await stream.receive_some(100) == b""
    assert info.statistics().handshakes_failed == 1
    assert "no WebSocket upgrade within 0.2 s" in caplog.text


# --------------------------------------------------------------------------------------------
# Reading


async def test_messages_queue_in_order_while_the_handler_is_busy(nursery):
    got: list[str | bytes] = []
    all_sent = trio.Event()
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        await all_sent.wait()  # not reading: the messages wait in the socket
        for _ in range(50):
            got.append(await station.transport.get_message())
        done.set()
        await station.transport.get_message()

    info = await start(nursery, handler)
    async with station(info) as ws:
        for n in range(50):
            await ws.send_message(f"m{n}")
        all_sent.set()
        with trio.fail_after(5):
            await done.wait()
    assert got == [f"m{n}" for n in range(50)]


def masked_text_frame(text: str) -> bytes:
    """One client text frame, built by hand (wsproto builds none before the 101)."""
    payload, mask = text.encode(), b"\x01\x02\x03\x04"
    assert len(payload) < 126
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    )


async def test_a_frame_sent_with_the_upgrade_request_is_not_lost(nursery):
    """A client should wait for the 101; one that does not still loses nothing it sent after."""
    got: list[str | bytes] = []
    done = trio.Event()

    async def handler(station: StationConnection) -> None:
        got.append(await station.transport.get_message())
        done.set()

    info = await start(nursery, handler)
    request = b"GET /ocpp/CS7 HTTP/1.1\r\n" + UPGRADE + b"Sec-WebSocket-Version: 13\r\n\r\n"
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        await stream.send_all(request + masked_text_frame("early"))
        with trio.fail_after(5):
            await done.wait()
    assert got == ["early"]


# --------------------------------------------------------------------------------------------
# The HTTP side of the upgrade: exact statuses, text/plain bodies


async def http_exchange(info: ServerInfo, request: bytes) -> tuple[h11.Response, bytes]:
    """Send raw ``request`` bytes; the server's response and body (read with h11)."""
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        await stream.send_all(request)
        client = h11.Connection(h11.CLIENT)
        method = "HEAD" if request.startswith(b"HEAD ") else "GET"
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        response: h11.Response | None = None
        body = b""
        with trio.fail_after(5):
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        assert response is not None
        return response, body


UPGRADE = (
    b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "status", "header"),
    [
        (b"POST /CS1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, (b"allow", b"GET")),
        (b"HEAD /CS1 HTTP/1.1\r\nHost: x\r\n\r\n", 405, (b"allow", b"GET")),
        (b"GET /CS1 HTTP/1.1\r\nHost: x\r\n\r\n", 426, (b"upgrade", b"websocket")),
        (
            b"GET /CS1 HTTP/1.1\r\n" + UPGRADE + b"Sec-WebSocket-Version: 8\r\n\r\n",
            426,
            (b"sec-websocket-version", b"13"),
        ),
        (b"GET /CS1 HTTP/1.1\r\n" + UPGRADE + b"\r\n", 400, None),  # no version
        (
            b"GET /CS1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
            400,
            None,
        ),
        (b"GARBAGE\r\n\r\n", 400, None),
        (b"GET /CS1 HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 40_000 + b"\r\n\r\n", 431, None),
        (b"GET / HTTP/1.1\r\n" + UPGRADE + b"Sec-WebSocket-Version: 13\r\n\r\n", 404, None),
    ],
    ids=[
        "post",
        "head",
        "not-an-upgrade",
        "websocket-8",
        "no-version",
        "bad-key",
        "garbage",
        "head-too-long",
        "no-identity",
    ],
)
async def test_http_refusals(nursery, request_bytes, status, header):
    info = await start(nursery)
    response, body = await http_exchange(info, request_bytes)
    assert response.status_code == status
    headers = list(response.headers)
    assert (b"content-type", b"text/plain; charset=utf-8") in headers
    assert body or request_bytes.startswith(b"HEAD ")  # says why
    if header is not None:
        assert header in headers
    assert info.statistics().handshakes_rejected == 1
    assert await hello(info) == "CS001|2.1"  # and the server lives on


async def test_a_raw_upgrade_is_accepted(nursery):
    info = await start(nursery)
    request = b"GET /ocpp/CS7 HTTP/1.1\r\n" + UPGRADE + b"Sec-WebSocket-Version: 13\r\n\r\n"
    async with await trio.open_tcp_stream("127.0.0.1", info.port) as stream:
        await stream.send_all(request)
        with trio.fail_after(5):
            head = await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example
    assert b"Sec-WebSocket-Protocol: ocpp1.6" in head


async def test_a_rejection_with_an_invalid_header_is_a_500(nursery, caplog):
    async def check(request: ConnectionRequest) -> Rejection | None:
        return Rejection(401, "no", (("WWW-Authenticate", "bad\r\nvalue"),))

    info = await start(nursery, check_request=check)
    assert await status_of_rejection(info, "/CS1") == 500
    assert "cannot send the refusal" in caplog.text
