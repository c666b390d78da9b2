"""Opening a station's WebSocket connection to a CSMS: URL, subprotocols, Basic auth, TLS.

:func:`websocket_connector` returns a *connector*: a function that, given the versions to
offer, opens one connection as an async context manager yielding a
:class:`~ocpp_trio.Transport`.  The charge point calls it for every (re)connection.  Any other
connector with the same shape works too (the tests use memory transport pairs).

The connection is the server's own layer seen from the other end: a TCP stream
(``trio.open_tcp_stream``), TLS over it (``trio.SSLStream``, handshake done here so that a
certificate problem is reported as one), wsproto's client handshake, then a
:class:`~ocpp_trio.transport.websocket.WebSocketTransport` with a
:class:`~ocpp_trio.transport.websocket.Watchdog` of its own for the send timeout and the
optional keepalive pings.  The stream is owned here and closed on every path.
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import ProtocolError

from ocpp_trio.errors import ConnectFailedError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import ConnectionInfo, Transport
from ocpp_trio.transport.websocket import RECEIVE_SIZE, Watchdog, WebSocketTransport

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
    ping_interval: float = 0.0,
    ping_timeout: float = 20.0,
) -> Connector:
    """A connector for the CSMS at ``url`` (``ws://`` or ``wss://``) as station ``identity``.

    Each connection is closed with 1001 ("station going away") when the block using it ends,
    cancelled or not (bounded by ``close_timeout``).

    Args:
        url: the CSMS endpoint; the percent-encoded identity is appended as the last path
            segment.
        identity: the station's identity (also the Basic-auth user name).
        password: sends ``Authorization: Basic`` (security profiles 1 and 2).
        ssl_context: for ``wss://``; by default :func:`ssl.create_default_context` (the
            system's CAs).  Trust a private CA with ``context.load_verify_locations(cafile)``;
            load a client certificate into it for security profile 3.
        connect_timeout: seconds for TCP, TLS and the WebSocket handshake together.
        max_message_size: the largest message accepted from the CSMS, in bytes (UTF-8); a
            larger one closes the connection with 1009.
        send_timeout: seconds one message's write may stay blocked (the CSMS stopped reading)
            before the connection is aborted.
        close_timeout: seconds the close handshake may take.
        ping_interval: seconds without anything from the CSMS before a keepalive ping; ``0``
            (the default) sends none.
        ping_timeout: seconds after the ping before the connection is aborted.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL, or ``ssl_context`` is given
            for ``ws://``.

    The connector raises :class:`~ocpp_trio.ConnectFailedError` when the connection cannot be
    opened: the address cannot be reached, TLS fails (``"certificate verify failed: ..."``
    when the CSMS's certificate is not trusted), the CSMS refuses the upgrade (``status`` is
    its HTTP status, the message quotes the body), or all that takes longer than
    ``connect_timeout``.
    """
    target = _target(url, identity)
    if ssl_context is not None and not target.secure:
        raise ValueError(f"{url!r}: an ssl_context needs a wss:// URL")
    headers = [basic_auth_header(identity, password)] if password is not None else []
    watchdog_settings = {
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "send_timeout": send_timeout,
    }
    Watchdog(**watchdog_settings)  # refuse bad values now, not at the first connection

    @asynccontextmanager
    async def connect(versions: Sequence[Version]) -> AsyncIterator[Transport]:
        stream = await _open_stream(target, ssl_context, connect_timeout)
        async with stream:
            with trio.move_on_after(connect_timeout) as timer:
                ws, accepted = await _handshake(stream, target, versions, headers)
            if timer.cancelled_caught:
                raise ConnectFailedError(
                    f"WebSocket handshake with {target.host}:{target.port} timed out"
                )
            transport = WebSocketTransport(
                stream,
                ws,
                info=ConnectionInfo(
                    remote=f"{target.host}:{target.port}",
                    path=target.resource,
                    headers=tuple(
                        (name.decode("latin-1").lower(), value.decode("latin-1"))
                        for name, value in accepted.extra_headers
                    ),
                    subprotocol=accepted.subprotocol,
                ),
                max_message_size=max_message_size,
                close_timeout=close_timeout,
            )
            watchdog = Watchdog(**watchdog_settings)
            watchdog.watch(transport)
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(watchdog.run)
                    try:
                        yield transport
                    finally:
                        # shielded: a cancelled station still says goodbye (bounded)
                        with trio.CancelScope(shield=True):
                            await transport.aclose(1001, "station going away")
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # the watchdog raises nothing: this is the body's own exception, let out as is
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise

    return connect


async def _handshake(
    stream: trio.abc.Stream,
    target: _Target,
    versions: Sequence[Version],
    headers: list[tuple[bytes, bytes]],
) -> tuple[WSConnection, AcceptConnection]:
    """Send the upgrade request and read the answer.

    Raises:
        ConnectFailedError: refused (with the HTTP status), a malformed answer, or the
            connection lost.
    """
    where = f"{target.host}:{target.port}"
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host=target.host_header,
        target=target.resource,
        subprotocols=[v.subprotocol for v in versions],
        extra_headers=list(headers),
    )
    try:
        await stream.send_all(ws.send(request))
        return ws, await _answer(stream, ws, where)
    except ConnectFailedError:  # (a BrokenResourceError too)
        raise
    except ProtocolError as exc:
        raise ConnectFailedError(f"WebSocket handshake with {where} failed: {exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ConnectFailedError(
            f"WebSocket handshake with {where} failed: {exc.__cause__ or exc}"
        ) from None


async def _answer(stream: trio.abc.Stream, ws: WSConnection, where: str) -> AcceptConnection:
    """Read the server's answer: the 101, or a refusal and its body."""
    rejection: RejectConnection | None = None
    body = bytearray()
    while True:
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return event
            if isinstance(event, RejectConnection):
                rejection = event
                if not event.has_body:
                    raise _refused(event.status_code, b"")
            elif isinstance(event, RejectData):
                body += event.data[: _BODY_QUOTED - len(body)]
                if event.body_finished:
                    raise _refused(rejection.status_code if rejection else 0, body)
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            if rejection is not None:
                raise _refused(rejection.status_code, body)
            raise ConnectFailedError(
                f"WebSocket handshake with {where} failed: the CSMS closed the connection"
            )
        ws.receive_data(bytes(data))


#: Bytes of a refusal's body quoted in the error.
_BODY_QUOTED = 200


def _refused(status: int, body: bytes | bytearray) -> ConnectFailedError:
    text = bytes(body[:_BODY_QUOTED]).decode("utf-8", "replace").strip()
    return ConnectFailedError(
        f"the CSMS refused the connection: HTTP {status} {text}".rstrip(), status
    )


async def _open_stream(
    target: _Target, ssl_context: ssl.SSLContext | None, seconds: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """TCP, and TLS over it with its handshake done, within ``seconds``."""
    where = f"{target.host}:{target.port}"
    try:
        with trio.fail_after(seconds):
            tcp = await trio.open_tcp_stream(target.host, target.port)
            if not target.secure:
                return tcp
            stream = trio.SSLStream(
                tcp,
                ssl_context or ssl.create_default_context(),
                server_hostname=target.host,
                https_compatible=True,
            )
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return stream
    except trio.TooSlowError:
        raise ConnectFailedError(f"could not connect to {where} within {seconds} s") from None
    except trio.BrokenResourceError as exc:
        raise ConnectFailedError(
            f"TLS handshake with {where} failed: {_tls_problem(exc.__cause__ or exc)}"
        ) from exc
    except OSError as exc:
        raise ConnectFailedError(f"could not connect to {where}: {exc}") from exc


def _tls_problem(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, said plainly."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc) or type(exc).__name__
