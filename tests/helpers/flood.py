"""Login attempts for the flood tests: in-process requests and real upgrades."""

from __future__ import annotations

import base64
import secrets

import trio
from trio_websocket import wrap_client_stream

from helpers.station import FakeStation, boot_request
from helpers.websocket import TrioWebSocketPeer
from ocpp_trio import Version
from ocpp_trio.transport.server import ConnectionRequest

V16, V201, V21 = Version.V16, Version.V201, Version.V21


def login(identity: str, secret: str | bytes, remote: str = "10.0.0.1:5000") -> ConnectionRequest:
    raw = secret if isinstance(secret, bytes) else secret.encode()
    token = base64.b64encode(identity.encode() + b":" + raw).decode()
    return ConnectionRequest(
        identity=identity,
        path=f"/{identity}",
        offered_versions=(V201,),
        offered_subprotocols=("ocpp2.0.1",),
        headers=(("authorization", f"Basic {token}"),),
        remote=remote,
    )


async def attempt_status(port: int, identity: str, secret: str, source: str) -> int:
    """The HTTP status of one upgrade attempt from ``source``."""
    async with await trio.open_tcp_stream("127.0.0.1", port, local_address=source) as stream:
        await stream.send_all(upgrade_request(identity, secret))
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


async def good_login(port: int, identity: str, source: str) -> float:
    """Connect and boot as ``identity`` with the good password; seconds the upgrade took."""
    started = trio.current_time()
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    async with stream, trio.open_nursery() as nursery:
        token = base64.b64encode(f"{identity}:{GOOD_PW}".encode()).decode()
        ws = await wrap_client_stream(
            nursery,
            stream,
            "127.0.0.1",
            f"/{identity}",
            subprotocols=["ocpp2.0.1"],
            extra_headers=[(b"Authorization", f"Basic {token}".encode())],
        )
        took = trio.current_time() - started
        fake = FakeStation(TrioWebSocketPeer(ws), V201)  # type: ignore[arg-type]
        assert getattr(await fake.call(boot_request(V201)), "status", None) == "Accepted"
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return took


GOOD_PW = "the-good-password-0001"


def upgrade_request(identity: str, secret: str) -> bytes:
    token = base64.b64encode(f"{identity}:{secret}".encode()).decode()
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return (
        f"GET /{identity} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: ocpp2.0.1\r\nAuthorization: Basic {token}\r\n\r\n"
    ).encode()
