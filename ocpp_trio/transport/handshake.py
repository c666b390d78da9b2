"""The HTTP side of the server's opening handshake: the upgrade request, read with h11, the checks
that make it a WebSocket upgrade (RFC 6455 §4.2.1), and plain-text refusals.

The request is parsed here, before wsproto sees it, so that every refusal gets its exact status:
400 for a malformed request, 405 for a method other than GET, 426 for a request that is not a
WebSocket upgrade (or asks for another WebSocket version), and whatever the server's own checks
decide (identity, ``check_request``, subprotocol).  Only a request the server accepts is handed
to wsproto (``WSConnection.initiate_upgrade_connection``), which answers it with the 101.
"""

from __future__ import annotations

import base64
import binascii
import http
from collections.abc import Iterable, Sequence
from typing import Final

import attrs
import h11
import trio

__all__ = [
    "Refusal",
    "early_data",
    "header_tokens",
    "read_request",
    "refusal_response",
    "send_refusal",
    "upgrade_refusal",
]

#: Bytes read at a time while the request's head is incomplete.
_CHUNK: Final = 4096
#: The request head may not be longer (h11 answers 431 beyond it).
MAX_REQUEST_HEAD: Final = 16 * 1024
#: After a refusal, how long and how much to read of what the client still sends.
_LINGER_SECONDS: Final = 1.0
_LINGER_BYTES: Final = 64 * 1024


@attrs.frozen
class Refusal:
    """An HTTP error answer to an upgrade request: status, ``text/plain`` body, extra headers."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


def new_connection() -> h11.Connection:
    """An h11 server connection for one upgrade request."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)


async def read_request(stream: trio.abc.Stream, connection: h11.Connection) -> h11.Request | None:
    """Read the request's head; ``None`` when the peer leaves first.

    Raises:
        h11.RemoteProtocolError: the request is malformed or its head too long (its
            ``error_status_hint`` is the status to answer with).
    """
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is not h11.NEED_DATA:
            return None  # the peer closed its side
        try:
            data = await stream.receive_some(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        connection.receive_data(bytes(data))


def early_data(connection: h11.Connection) -> bytes:
    """What the client sent after its upgrade request without waiting for the answer (WebSocket
    frames, which RFC 6455 says it should not send yet, but which must not be lost).

    Once :func:`read_request` returned an upgrade request, h11 stops after it and keeps the
    rest; a request whose body is still coming has nothing to hand over.
    """
    event = connection.next_event()
    while event is not h11.PAUSED:
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return b""
        event = connection.next_event()
    return bytes(connection.trailing_data[0])


def header_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """The comma-separated tokens of every ``name`` header (lower-case name), in order."""
    return [
        token.strip()
        for key, value in headers
        if key == name
        for token in value.decode("latin-1").split(",")
        if token.strip()
    ]


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def upgrade_refusal(request: h11.Request) -> Refusal | None:
    """What to answer a request that is not a valid WebSocket upgrade; ``None`` for a valid one."""
    if request.method != b"GET":
        return Refusal(405, "a WebSocket is opened with GET", (("Allow", "GET"),))
    if request.http_version != b"1.1":
        return Refusal(400, "a WebSocket upgrade needs HTTP/1.1")
    headers = list(request.headers)
    upgrade = {t.lower() for t in header_tokens(headers, b"upgrade")}
    connection = {t.lower() for t in header_tokens(headers, b"connection")}
    if "websocket" not in upgrade or "upgrade" not in connection:
        return Refusal(
            426, "this endpoint serves OCPP over WebSocket only", (("Upgrade", "websocket"),)
        )
    version = _header(headers, b"sec-websocket-version")
    if version is None:
        return Refusal(400, "missing Sec-WebSocket-Version")
    if version.strip() != b"13":
        return Refusal(
            426, "unsupported WebSocket version (13 only)", (("Sec-WebSocket-Version", "13"),)
        )
    key = _header(headers, b"sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid_key = False
    if not valid_key:
        return Refusal(400, "missing or malformed Sec-WebSocket-Key")
    return None


def refusal_response(connection: h11.Connection, refusal: Refusal, *, head: bool = False) -> bytes:
    """The whole HTTP response for ``refusal`` (the connection is closed after it); with
    ``head`` (the request was HEAD), its head alone.

    Raises:
        h11.LocalProtocolError: an extra header is not valid HTTP (name or value).
    """
    body = refusal.body.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *refusal.headers,
    ]
    try:
        phrase = http.HTTPStatus(refusal.status).phrase
    except ValueError:
        phrase = ""
    parts = (
        connection.send(h11.Response(status_code=refusal.status, headers=headers, reason=phrase)),
        b"" if head else connection.send(h11.Data(data=body)),
        connection.send(h11.EndOfMessage()),
    )
    return b"".join(p for p in parts if p)


async def send_refusal(stream: trio.abc.Stream, response: bytes) -> None:
    """Send a refusal, then let the client read it before the connection is closed.

    Closing a socket with unread input makes the kernel reset the connection, and the client may
    then lose the response it has not read yet (a refused request whose head was too long, or
    that came with a body).  So the server stops writing and reads what the client still sends
    until it closes its side, for at most a second and 64 KiB, even while the server shuts down.
    """
    try:
        await stream.send_all(response)
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _LINGER_SECONDS):
            drained = 0
            while drained < _LINGER_BYTES:
                data = await stream.receive_some(_CHUNK)
                if not data:
                    return
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
