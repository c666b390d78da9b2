"""permessage-deflate (RFC 7692): negotiated on 2.x only, no context takeover, bounded inflation.

The stations here are raw wsproto clients with wsproto's own ``PerMessageDeflate`` (an
implementation independent of ours; trio-websocket's client cannot compress), over real sockets
on 127.0.0.1 where the server is under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import pytest
import trio
from helpers.server import FAST, echo
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.deflate import BoundedPerMessageDeflate
from ocpp_trio.transport.server import ServerConfig, ServerInfo, serve_ocpp_websocket


async def start(nursery: trio.Nursery, config: ServerConfig = FAST) -> ServerInfo:
    info: ServerInfo = await nursery.start(
        partial(serve_ocpp_websocket, echo, "127.0.0.1", 0, config=config)
    )
    return info


@attrs.define
class Client:
    stream: trio.SocketStream
    ws: WSConnection
    extension: PerMessageDeflate
    accepted: AcceptConnection
    raw_sent: int = 0

    async def send(self, text: str) -> None:
        data = self.ws.send(TextMessage(data=text))
        self.raw_sent += len(data)
        await self.stream.send_all(data)

    async def event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.ws.receive_data(data)

    async def text(self) -> str:
        parts = []
        while True:
            event = await self.event()
            assert isinstance(event, TextMessage), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts)


@asynccontextmanager
async def client(
    info: ServerInfo, version: Version, *, offer: bool = True, **parameters: int | bool
) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream("127.0.0.1", info.port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        extension = PerMessageDeflate(**parameters)  # type: ignore[arg-type]
        request = Request(
            host="127.0.0.1",
            target="/ocpp/CS001",
            subprotocols=[version.subprotocol],
            extensions=[extension] if offer else [],
        )
        await stream.send_all(ws.send(request))
        accepted = None
        while accepted is None:
            ws.receive_data(await stream.receive_some(65536))
            for event in ws.events():
                assert not isinstance(event, RejectConnection), event
                if isinstance(event, AcceptConnection):
                    accepted = event
                    break
        yield Client(stream, ws, extension, accepted)


@pytest.mark.parametrize("version", [Version.V201, Version.V21])
async def test_2x_negotiates_deflate_without_context_takeover(nursery, version):
    info = await start(nursery)
    async with client(info, version) as c:
        assert c.accepted.subprotocol == version.subprotocol
        assert c.extension.enabled()
        # the server asked both ends to compress each message on its own
        assert c.extension.client_no_context_takeover
        assert c.extension.server_no_context_takeover
        assert await c.text() == f"CS001|{version}"
        for n in range(3):  # several messages: each one starts a fresh context
            payload = f'[2,"m{n}","Heartbeat",{{"pad":"{"x" * 2000}"}}]'
            await c.send(payload)
            assert await c.text() == payload
        assert c.raw_sent < 3 * 300  # it really was compressed (3 x 2 KB of text)


async def test_1_6_does_not_negotiate_deflate(nursery):
    info = await start(nursery)
    async with client(info, Version.V16) as c:
        assert not c.extension.enabled()
        assert await c.text() == "CS001|1.6"
        await c.send('[2,"1","Heartbeat",{}]')
        assert await c.text() == '[2,"1","Heartbeat",{}]'


async def test_deflate_can_be_turned_off(nursery):
    info = await start(nursery, attrs.evolve(FAST, permessage_deflate=False))
    async with client(info, Version.V201) as c:
        assert not c.extension.enabled()
        assert await c.text() == "CS001|2.0.1"


async def test_no_offer_no_compression(nursery):
    info = await start(nursery)
    async with client(info, Version.V201, offer=False) as c:
        assert not c.extension.enabled()
        await c.send("hello")
        assert await c.text() == "CS001|2.0.1"
        assert await c.text() == "hello"


async def test_a_deflate_bomb_closes_with_1009_and_other_stations_live_on(nursery):
    info = await start(nursery, attrs.evolve(FAST, max_message_size=10_000))
    async with client(info, Version.V201) as bystander, client(info, Version.V201) as bomber:
        assert await bystander.text() == "CS001|2.0.1"
        assert await bomber.text() == "CS001|2.0.1"
        await bomber.send("a" * 20_000_000)  # about 20 KB on the wire
        assert bomber.raw_sent < 100_000
        event = await bomber.event()
        assert isinstance(event, CloseConnection), event
        assert event.code == 1009
        assert event.reason == "message over 10000 bytes"
        await bystander.send("still here")
        assert await bystander.text() == "still here"


async def test_the_station_may_ask_for_a_smaller_server_window(nursery):
    info = await start(nursery)
    async with client(info, Version.V21, server_max_window_bits=10) as c:
        assert c.extension.enabled()
        assert c.extension.server_max_window_bits == 10
        assert await c.text() == "CS001|2.1"
        payload = "".join(f"{n:05d}" for n in range(4000))  # 20 KB, repeats beyond 1 KB apart
        await c.send(payload)
        assert await c.text() == payload  # inflated by wsproto with a 1 KB window


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot keep to it
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
    ],
)
def test_offers_we_cannot_honour_are_declined(offer):
    assert BoundedPerMessageDeflate(1000).accept(offer) is None


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "server_no_context_takeover; client_no_context_takeover"),
        (
            "permessage-deflate; client_max_window_bits",
            "server_no_context_takeover; client_no_context_takeover",
        ),
        (
            'permessage-deflate; server_max_window_bits="12"; client_max_window_bits=9',
            "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
        ),
    ],
)
def test_offers_are_answered_without_context_takeover(offer, answer):
    extension = BoundedPerMessageDeflate(1000)
    assert extension.accept(offer) == answer
    assert extension.enabled()


def _handshake(bound: int) -> tuple[WSConnection, WSConnection]:
    """An in-memory client/server pair that negotiated the bounded extension."""
    client_ws = WSConnection(ConnectionType.CLIENT)
    server_ws = WSConnection(ConnectionType.SERVER)
    server_ws.receive_data(
        client_ws.send(Request(host="h", target="/x", extensions=[PerMessageDeflate()]))
    )
    assert isinstance(next(server_ws.events()), Request)
    extension = BoundedPerMessageDeflate(bound)
    client_ws.receive_data(server_ws.send(AcceptConnection(extensions=[extension])))
    assert isinstance(next(client_ws.events()), AcceptConnection)
    assert extension.enabled()
    return client_ws, server_ws


@pytest.mark.parametrize("size", [0, 1, 999, 1000])
def test_bounded_inflation_accepts_up_to_the_bound(size):
    client_ws, server_ws = _handshake(1000)
    for text in ("b" * size, "c" * size):  # twice: the context is fresh each time
        server_ws.receive_data(client_ws.send(TextMessage(data=text)))
        events = list(server_ws.events())
        assert "".join(e.data for e in events if isinstance(e, TextMessage)) == text


@pytest.mark.parametrize("size", [1001, 10_000_000])
def test_bounded_inflation_fails_the_connection_past_the_bound(size):
    client_ws, server_ws = _handshake(1000)
    server_ws.receive_data(client_ws.send(TextMessage(data="z" * size)))
    events = list(server_ws.events())
    # nothing beyond the bound is delivered, and wsproto fails the connection with 1009
    inflated = "".join(e.data for e in events if isinstance(e, TextMessage))
    assert len(inflated) <= 1000
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [1009]


def test_a_control_frame_inside_a_compressed_message_is_not_inflated():
    client_ws, server_ws = _handshake(1000)
    wire = client_ws.send(TextMessage(data="first half ", message_finished=False))
    wire += client_ws.send(Ping(payload=b"ping"))
    wire += client_ws.send(TextMessage(data="second half"))
    server_ws.receive_data(wire)
    events = list(server_ws.events())
    assert [e.payload for e in events if isinstance(e, Ping)] == [b"ping"]
    assert "".join(e.data for e in events if isinstance(e, TextMessage)) == (
        "first half second half"
    )


def test_corrupt_deflate_data_fails_the_connection_with_1007():
    _, server_ws = _handshake(1000)
    frame = bytes([0xC1, 0x80 | 4]) + b"\0\0\0\0" + b"\xff\xff\xff\xff"  # RSV1, garbage
    server_ws.receive_data(frame)
    assert [e.code for e in server_ws.events() if isinstance(e, CloseConnection)] == [1007]
