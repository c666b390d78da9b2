"""Opening a station's WebSocket connection to a CSMS: URL, subprotocols, Basic auth, TLS.

:func:`websocket_connector` returns a *connector*: a function that, given the versions to
offer, opens one connection as an async context manager yielding a
:class:`~ocpp_trio.Transport`.  The charge point calls it for every (re)connection.  Any other
connector with the same shape works too (the tests use memory transport pairs).

The TCP (or TLS) stream is opened and owned here, not by trio-websocket: its own client leaves
the socket open when the server refuses the handshake or closes first, and ``async with
stream`` is what guarantees the socket is closed on every path.
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio
import trio_websocket

from ocpp_trio.errors import ConnectFailedError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import ConnectionInfo, Transport, WebSocketTransport

__all__ = [
    "Connector",
    "basic_auth_header",
    "station_url",
    "websocket_connector",
]

#: Opens one connection offering the given versions (in order of preference).
Connector = Callable[[Sequence[Version]], AbstractAsyncContextManager[Transport]]


@attrs.frozen
class _Target:
    secure: bool
    host: str
    port: int
    resource: str
    host_header: str


def station_url(url: str, identity: str) -> str:
    """The URL a station connects to: ``url`` plus ``/`` and the percent-encoded identity.

    ``station_url("ws://csms.example:9000/ocpp", "CS 1")`` is
    ``"ws://csms.example:9000/ocpp/CS%201"``.
    """
    return url.rstrip("/") + "/" + urllib.parse.quote(identity, safe="")


def _target(url: str, identity: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r}: the CSMS URL must start with ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    path = parts.path.rstrip("/") + "/" + urllib.parse.quote(identity, safe="")
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default = (secure and port == 443) or (not secure and port == 80)
    return _Target(secure, host, port, path, shown if default else f"{shown}:{port}")


def basic_auth_header(identity: str, password: str | bytes) -> tuple[bytes, bytes]:
    """The ``Authorization`` header of security profiles 1 and 2: Basic ``identity:password``.

    A ``bytes`` password (1.6 ``AuthorizationKey`` as raw bytes) is sent as is, a ``str`` one
    as UTF-8.
    """
    secret = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    token = base64.b64encode(identity.encode("utf-8") + b":" + secret)
    return b"Authorization", b"Basic " + token


def websocket_connector(
    url: str,
    identity: str,
    *,
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    max_message_size: int = 1024 * 1024,
    send_timeout: float = 10.0,
    close_timeout: float = 5.0,
) -> Connector:
    """A connector for the CSMS at ``url`` (``ws://`` or ``wss://``) as station ``identity``.

    Args:
        url: the CSMS endpoint; the percent-encoded identity is appended as the last path
            segment.
        identity: the station's identity (also the Basic-auth user name).
        password: sends ``Authorization: Basic`` (security profiles 1 and 2).
        ssl_context: for ``wss://``; by default :func:`ssl.create_default_context` (the system's
            CAs). Load a client certificate into it for security profile 3.
        connect_timeout: seconds for TCP, TLS and the WebSocket handshake together.
        max_message_size: the largest message accepted from the CSMS, in characters.
        send_timeout: see :class:`~ocpp_trio.transport.base.WebSocketTransport`.
        close_timeout: see :class:`~ocpp_trio.transport.base.WebSocketTransport`.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL, or ``ssl_context`` is given
            for ``ws://``.
    """
    target = _target(url, identity)
    if ssl_context is not None and not target.secure:
        raise ValueError(f"{url!r}: an ssl_context needs a wss:// URL")
    headers = [basic_auth_header(identity, password)] if password is not None else []

    @asynccontextmanager
    async def connect(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        stream = await _open_stream(target, ssl_context, connect_timeout)
        opened = False
        async with stream:
            try:
                async with trio.open_nursery() as outer:
                    # The WebSocket reader must outlive a cancellation of the body, or the
                    # close handshake could only time out: it runs in a shielded nursery, and
                    # a watcher in the unshielded one forwards the caller's cancellation to
                    # the body alone.
                    body_scope = trio.CancelScope()
                    outer.start_soon(_forward_cancellation, body_scope)
                    transport: WebSocketTransport | None = None
                    async with trio.open_nursery() as readers:
                        readers.cancel_scope.shield = True
                        try:
                            with body_scope:
                                with trio.fail_after(connect_timeout):
                                    connection = await trio_websocket.wrap_client_stream(
                                        readers,
                                        stream,
                                        target.host_header,
                                        target.resource,
                                        subprotocols=[v.subprotocol for v in versions],
                                        extra_headers=list(headers),
                                        max_message_size=max_message_size,
                                    )
                                opened = True
                                transport = WebSocketTransport(
                                    connection,
                                    info=_info(target, connection),
                                    stream=stream,
                                    send_timeout=send_timeout,
                                    close_timeout=close_timeout,
                                )
                                yield transport
                        finally:
                            if transport is not None:
                                await transport.aclose(1001, "station going away")
                            readers.cancel_scope.cancel()
                    outer.cancel_scope.cancel()
            except* trio_websocket.ConnectionRejected as group:
                rejection = _first_leaf(group)
                assert isinstance(rejection, trio_websocket.ConnectionRejected)
                body = (rejection.body or b"")[:200].decode("utf-8", "replace").strip()
                status = rejection.status_code
                raise ConnectFailedError(
                    f"the CSMS refused the connection: HTTP {status} {body}".rstrip(), status
                ) from None
            except* (
                OSError,
                trio.BrokenResourceError,
                trio.TooSlowError,
                trio_websocket.HandshakeError,
            ) as group:
                if opened:
                    raise  # not ours to reinterpret: the connection was open
                raise ConnectFailedError(
                    f"WebSocket handshake with {target.host}:{target.port} failed: "
                    f"{_describe(group)}"
                ) from None

    return connect


async def _forward_cancellation(scope: trio.CancelScope) -> None:
    try:
        await trio.sleep_forever()
    finally:
        scope.cancel()


def _info(target: _Target, connection: trio_websocket.WebSocketConnection) -> ConnectionInfo:
    return ConnectionInfo(
        remote=f"{target.host}:{target.port}",
        path=target.resource,
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in connection.handshake_headers
        ),
        subprotocol=connection.subprotocol,
    )


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _describe(group: BaseExceptionGroup[BaseException]) -> str:
    leaf = _first_leaf(group)
    if isinstance(leaf, trio.TooSlowError):
        return "timed out"
    return f"{type(leaf).__name__}: {leaf}".rstrip(": ")


async def _open_stream(
    target: _Target, ssl_context: ssl.SSLContext | None, seconds: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    try:
        with trio.fail_after(seconds):
            if not target.secure:
                return await trio.open_tcp_stream(target.host, target.port)
            context = ssl_context or ssl.create_default_context()
            return await trio.open_ssl_over_tcp_stream(
                target.host, target.port, ssl_context=context, https_compatible=True
            )
    except trio.TooSlowError:
        raise ConnectFailedError(
            f"could not connect to {target.host}:{target.port} within {seconds} s"
        ) from None
    except OSError as exc:
        raise ConnectFailedError(
            f"could not connect to {target.host}:{target.port}: {exc}"
        ) from exc
