"""The HTTP/1.1 side of the admin API on h11: reading one request, answering it, routing by
the OpenAPI description, and the checks on hosts and addresses."""

from __future__ import annotations

import http
import ipaddress
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import attrs
import h11
import trio

__all__ = [
    "HttpError",
    "Route",
    "Routes",
    "Text",
    "host_allowed",
    "is_loopback",
    "linger",
    "parse_object",
    "peer_address",
    "query_names",
    "read_body",
    "read_head",
    "respond",
]


class HttpError(Exception):
    """An answer with an error status: ``{"error": message, **extra}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body: dict[str, Any] = {"error": message, **extra}


@attrs.frozen
class Text:
    """An answer that is not JSON (``/metrics``)."""

    data: bytes
    content_type: str


# -- routing by the description ------------------------------------------------------------------


@attrs.frozen
class Route:
    """A request matched to a path of the description."""

    path: str
    params: Mapping[str, str]
    operations: Mapping[str, Mapping[str, Any]]

    def allowed(self) -> str:
        """The ``Allow`` header: the path's methods, and HEAD wherever GET is."""
        methods = {method.upper() for method in self.operations}
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    def operation(self, method: str) -> Mapping[str, Any] | None:
        """The operation for ``method`` (HEAD: the GET one), ``None`` when there is none."""
        wanted = "get" if method == "HEAD" else method.lower()
        return self.operations.get(wanted)


class Routes:
    """The paths of an OpenAPI description, matched segment by segment (a ``{name}`` segment
    matches any non-empty segment, percent-decoded)."""

    def __init__(self, paths: Mapping[str, Mapping[str, Any]]) -> None:
        self._paths = [
            (path, path.split("/")[1:], operations) for path, operations in paths.items()
        ]

    def match(self, path: str) -> Route | None:
        """The route of a request path, ``None`` when no path matches.

        Raises:
            HttpError: 400 for a path that is not valid UTF-8 once decoded.
        """
        given = path.split("/")[1:]
        for template, parts, operations in self._paths:
            if len(parts) != len(given):
                continue
            params: dict[str, str] = {}
            for part, segment in zip(parts, given, strict=True):
                if part.startswith("{") and part.endswith("}"):
                    if not segment:
                        break
                    try:
                        params[part[1:-1]] = urllib.parse.unquote(segment, errors="strict")
                    except UnicodeDecodeError:
                        raise HttpError(400, "the path is not valid UTF-8") from None
                elif part != segment:
                    break
            else:
                return Route(template, params, operations)
        return None


def parse_object(body: bytes, keys: set[str], *, allow_empty: bool = False) -> dict[str, Any]:
    """The JSON object of ``body`` with no key outside ``keys``; a 400 :class:`HttpError` for
    anything else (``allow_empty``: an empty body is ``{}``)."""
    if allow_empty and not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HttpError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    unknown = set(data) - keys
    if unknown:
        raise HttpError(400, f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    return data


def query_names(operation: Mapping[str, Any]) -> frozenset[str]:
    """The query parameters an operation takes."""
    return frozenset(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")


# -- reading and answering -------------------------------------------------------------------


async def read_head(
    stream: trio.abc.Stream, conn: h11.Connection, *, max_head: int, max_body: int
) -> h11.Request:
    """The request line and headers (a 431/413 :class:`HttpError` beyond the limits)."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            # h11 bounds a head that arrives in pieces; one that came whole is measured here
            head = len(event.method) + len(event.target) + 12
            head += sum(len(name) + len(value) + 4 for name, value in event.headers)
            if head > max_head:
                raise HttpError(431, f"request head over {max_head} bytes")
            length = dict(event.headers).get(b"content-length")
            if length is not None and int(length) > max_body:
                raise HttpError(413, f"request body over {max_body} bytes")
            return event
        if isinstance(event, h11.ConnectionClosed):
            raise trio.ClosedResourceError("the client went away")


async def read_body(stream: trio.abc.Stream, conn: h11.Connection, *, limit: int) -> bytes:
    """The request body (a 413 :class:`HttpError` beyond ``limit`` bytes)."""
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise HttpError(413, f"request body over {limit} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.ClosedResourceError("the client went away")


async def respond(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    status: int,
    body: Mapping[str, Any] | Text,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    write_timeout: float,
    head_only: bool = False,
) -> None:
    """Send the answer (``head_only``: its headers alone, for a HEAD request), then nothing
    more: the connection is closed after it."""
    if isinstance(body, Text):
        data, content_type = body.data, body.content_type
    else:
        data = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        content_type = "application/json; charset=utf-8"
    all_headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *headers,
    ]
    try:
        with trio.move_on_after(write_timeout):
            reason = http.HTTPStatus(status).phrase.encode("ascii")
            out = conn.send(h11.Response(status_code=status, headers=all_headers, reason=reason))
            if not head_only:
                out += conn.send(h11.Data(data=data)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            await stream.send_all(out)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client broke the exchange or went away; nothing left to tell it


# After answering a request that was not read whole, the rest is read and dropped for a
# moment before closing: closing with unread data resets the connection, and the client may
# lose the answer.
_LINGER_SECONDS: Final = 0.2
_LINGER_BYTES: Final = 256 * 1024


async def linger(stream: trio.abc.Stream) -> None:
    """Read and drop what the client still sends, briefly (see above)."""
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            drained = 0
            while drained < _LINGER_BYTES:
                data = await stream.receive_some(65536)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


# -- who may ask -------------------------------------------------------------------------------


def peer_address(stream: trio.abc.Stream) -> str:
    """The client's address, ``"unknown"`` when not a socket."""
    if isinstance(stream, trio.SocketStream):
        try:
            return str(stream.socket.getpeername()[0])
        except OSError:
            pass
    return "unknown"


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header names this server: an IP address, ``localhost``, or a name
    the operator allowed.  A DNS-rebinding page reaches us under its own host name."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if not name:
        return False
    if name == "localhost" or name in {h.lower() for h in allowed}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback address."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False
