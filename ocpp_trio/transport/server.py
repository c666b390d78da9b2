"""Serving OCPP-J over WebSocket: station identity from the path, subprotocol negotiation, limits.

Each TCP connection is served in its own task and goes through these steps, all before the
WebSocket upgrade and all within ``ServerConfig.handshake_timeout``:

0. Over TLS, complete the TLS handshake (client certificate checks included); a failure is
   logged at WARNING and the connection dropped.
1. Read the HTTP upgrade request.
2. Resolve the station identity: the last non-empty path segment, percent-decoded
   (:func:`identity_from_path`). An invalid one is refused with HTTP 400, a missing one with 404.
3. ``check_request`` (the application's hook, e.g. HTTP Basic auth): a :class:`Rejection` refuses
   the upgrade with its status and headers.
4. Choose the version among those the client offered that the server enables
   (``select_version``; by default the newest, :func:`select_newest`). On 2.x the identity must
   also be an ``identifierString``: at most 48 characters and no ``:``.
5. Upgrade. When no version could be chosen, the upgrade still completes, *without* a
   subprotocol, and the connection is closed at once with 1002, as all three OCPP-J versions
   require.

Then ``handler(StationConnection)`` runs, while the task that hosts trio-websocket's reader
pings every ``ping_interval`` seconds and aborts the connection when no pong comes within
``ping_timeout``.
When the handler returns the connection is closed with 1000; when it raises, the error is logged
and only that connection is closed, with 1011. Which station may be connected twice is the
runtime's business, not this module's.
"""

from __future__ import annotations

import logging
import re
import ssl
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, NoReturn

import attrs
import trio
import trio_websocket

from ocpp_trio.errors import ConnectionLostError, InvalidIdentityError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import (
    CloseCode,
    ConnectionInfo,
    Transport,
    WebSocketTransport,
    _format_endpoint,
)
from ocpp_trio.transport.deflate import accept_with_deflate, offers_deflate

__all__ = [
    "ConnectionRequest",
    "Rejection",
    "RequestChecker",
    "ServerConfig",
    "ServerInfo",
    "ServerStatistics",
    "StationConnection",
    "StationHandler",
    "VersionSelector",
    "check_identity_for_version",
    "identity_from_path",
    "select_client_preference",
    "select_newest",
    "serve_ocpp_websocket",
]

logger = logging.getLogger("ocpp_trio.server")

#: Longest identity on 2.x, where it is an identifierString[48].
MAX_IDENTITY_LENGTH_V2 = 48
_NEWEST_FIRST = (Version.V21, Version.V201, Version.V16)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_RECEIVE_BUFFER = 64 * 1024
# trio-websocket's queue between its reader task and get_message(); 1 keeps it bounded and small.
_MESSAGE_QUEUE_SIZE = 1


# --------------------------------------------------------------------------------------------
# Configuration and the objects handed to the application


def _to_versions(value: Iterable[Version]) -> tuple[Version, ...]:
    versions = tuple(Version(v) for v in value)
    if not versions:
        raise ValueError("ServerConfig.versions must enable at least one version")
    return versions


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def _absolute_path(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"{attribute.name} must start with '/', not {value!r}")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How the WebSocket server behaves; every timeout is in seconds.

    Attributes:
        versions: the OCPP versions offered to stations (default all three).
        max_message_size: the largest message accepted, in characters of a text frame (bytes of
            a binary one). A larger one closes the connection with 1009. The default, 4 MiB, is
            far above the largest schema field (2.1 ``signedMeterData``, 32768).
        ping_interval: seconds between the server's keepalive pings; ``0`` disables them.
        ping_timeout: seconds to wait for a pong before aborting the connection.
        handshake_timeout: seconds from TCP accept (TLS included) to the WebSocket upgrade,
            ``check_request`` and ``select_version`` included; a slower client is dropped.
        send_timeout: seconds one message send may take before the connection is aborted (a
            peer that stops reading must not hold a task forever).
        close_timeout: seconds to wait for the peer's close frame when closing.
        path_prefix: requests whose path does not start with it are refused with 404; the
            default ``"/"`` accepts any path. The identity is the last non-empty segment after it.
        max_identity_length_v16: the longest identity accepted on 1.6, which sets no limit
            (2.x: 48, fixed by the spec).
        permessage_deflate: accept the permessage-deflate compression (RFC 7692) a 2.x
            station offers, as 2.x requires of a CSMS (never on 1.6, which advises against
            it). Both ends then compress each message on its own (no context takeover), and a
            message that inflates beyond ``max_message_size`` closes the connection with 1009.
    """

    versions: tuple[Version, ...] = attrs.field(default=tuple(Version), converter=_to_versions)
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    ping_interval: float = attrs.field(default=30.0, validator=_non_negative)
    ping_timeout: float = attrs.field(default=20.0, validator=_positive)
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    close_timeout: float = attrs.field(default=5.0, validator=_non_negative)
    path_prefix: str = attrs.field(default="/", validator=_absolute_path)
    max_identity_length_v16: int = attrs.field(default=128, validator=_positive)
    permessage_deflate: bool = True


@attrs.frozen(kw_only=True)
class ConnectionRequest:
    """A station's WebSocket upgrade request, as the application's hooks see it.

    Attributes:
        identity: the station identity, percent-decoded.
        path: the request path, still percent-encoded, without the query string.
        offered_versions: the versions we know among those the client offered, in its order.
        offered_subprotocols: every ``Sec-WebSocket-Protocol`` token the client sent, in order.
        headers: ``(lower-case name, value)`` pairs, values decoded as ISO-8859-1 (``Host`` and
            ``Sec-WebSocket-Protocol`` are not included).
        remote: the peer's ``address:port``.
        tls: whether the connection came over TLS.
        peer_certificate: the client certificate (``ssl.SSLSocket.getpeercert()`` form) when the
            TLS context asked for one and it validated; else ``None``.
    """

    identity: str
    path: str
    offered_versions: tuple[Version, ...]
    offered_subprotocols: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    remote: str
    tls: bool = False
    peer_certificate: dict[str, Any] | None = attrs.field(default=None, hash=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@attrs.frozen
class Rejection:
    """What ``check_request`` returns to refuse an upgrade.

    Attributes:
        status_code: the HTTP status, 300-599 (e.g. 401, 403, 404).
        reason: sent as the ``text/plain`` response body.
        headers: extra response headers, e.g. ``(("WWW-Authenticate", 'Basic realm="ocpp"'),)``.
    """

    status_code: int = attrs.field()
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @status_code.validator
    def _check_status(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if not 300 <= value <= 599:
            raise ValueError(f"a rejection needs an HTTP status in 300-599, not {value}")


@attrs.frozen(kw_only=True)
class StationConnection:
    """An upgraded station connection, handed to the handler.

    Attributes:
        identity: the station identity (percent-decoded).
        version: the negotiated OCPP version, the only source of the version.
        transport: the connection; the server closes it when the handler returns.
        request: the upgrade request it came from.
    """

    identity: str
    version: Version
    transport: Transport
    request: ConnectionRequest


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """Counters of a running server (a snapshot).

    Attributes:
        connections_active: stations whose handler is running now.
        connections_accepted: upgrades with a negotiated version, since start.
        handshakes_rejected: requests refused with an HTTP error (identity, ``check_request``).
        handshakes_failed: connections dropped before the upgrade (timeout, peer gone, malformed
            HTTP).
        no_subprotocol: upgrades closed with 1002 because no version could be agreed.
        handler_errors: handlers that raised.
    """

    connections_active: int
    connections_accepted: int
    handshakes_rejected: int
    handshakes_failed: int
    no_subprotocol: int
    handler_errors: int


@attrs.define
class _Counters:
    connections_active: int = 0
    connections_accepted: int = 0
    handshakes_rejected: int = 0
    handshakes_failed: int = 0
    no_subprotocol: int = 0
    handler_errors: int = 0


@attrs.frozen(kw_only=True)
class ServerInfo:
    """What :func:`serve_ocpp_websocket` reports through ``task_status.started()``.

    Attributes:
        addresses: the ``(host, port)`` pairs listened on.
    """

    addresses: tuple[tuple[str, int], ...]
    _counters: _Counters = attrs.field(alias="counters", eq=False, repr=False)

    @property
    def port(self) -> int:
        """The port listened on (useful after binding port 0).

        Raises:
            RuntimeError: the listeners ended up on different ports.
        """
        ports = {port for _, port in self.addresses}
        if len(ports) != 1:
            raise RuntimeError(f"listening on several ports: {sorted(ports)}")
        return ports.pop()

    def statistics(self) -> ServerStatistics:
        """A snapshot of the server's counters."""
        return ServerStatistics(**attrs.asdict(self._counters))


StationHandler = Callable[[StationConnection], Awaitable[None]]
"""Serves one upgraded station connection; the connection is closed when it returns."""

VersionSelector = Callable[
    [ConnectionRequest, Sequence[Version]], Version | Awaitable[Version | None] | None
]
"""Chooses the version for a request among the offered ones (sync or async). It gets the offered
versions the server enables, in the client's order, never empty; ``None`` refuses them all (the
connection is then closed with 1002)."""

RequestChecker = Callable[[ConnectionRequest], Awaitable[Rejection | None]]
"""Checks a request before the upgrade (authentication goes here): ``None`` lets it through, a
:class:`Rejection` refuses it."""


def select_newest(request: ConnectionRequest, offered: Sequence[Version]) -> Version | None:
    """The default :data:`VersionSelector`: the newest offered version, whatever the client's order.

    A station offering ``ocpp1.6, ocpp2.0.1`` thus gets 2.0.1, its best protocol the server
    speaks. ocpp-go does the opposite and honours the client's order; use
    :func:`select_client_preference` for that.
    """
    return next((v for v in _NEWEST_FIRST if v in offered), None)


def select_client_preference(
    request: ConnectionRequest, offered: Sequence[Version]
) -> Version | None:
    """A :data:`VersionSelector` honouring the client's order: its first offered version."""
    return offered[0] if offered else None


# --------------------------------------------------------------------------------------------
# Station identity


def identity_from_path(path: str, *, path_prefix: str = "/", max_length: int = 128) -> str:
    """The station identity in an upgrade request target: its last non-empty path segment.

    The query string is ignored. The segment is percent-decoded as strict UTF-8; the result must
    be non-empty, not only whitespace, free of control characters and ``/``, and at most
    ``max_length`` characters. The rules particular to 2.x are :func:`check_identity_for_version`.

    Raises:
        InvalidIdentityError: 404 when the path is outside ``path_prefix`` or has no segment,
            400 when the segment is malformed.
    """
    path = path.partition("?")[0].partition("#")[0]
    prefix = path_prefix if path_prefix.endswith("/") else path_prefix + "/"
    if not (path + "/").startswith(prefix):
        raise InvalidIdentityError(404, f"path must start with {prefix!r}")
    segments = [segment for segment in path[len(prefix) :].split("/") if segment]
    if not segments:
        raise InvalidIdentityError(404, "no station identity in the path")
    raw = segments[-1]
    if _BAD_PERCENT.search(raw):
        raise InvalidIdentityError(400, "invalid percent-encoding in the station identity")
    try:
        identity = urllib.parse.unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentityError(400, "station identity is not valid UTF-8") from None
    if not identity.strip():
        raise InvalidIdentityError(400, "station identity is blank")
    if "/" in identity or any(unicodedata.category(c) == "Cc" for c in identity):
        raise InvalidIdentityError(400, "station identity contains '/' or control characters")
    if len(identity) > max_length:
        raise InvalidIdentityError(400, f"station identity is longer than {max_length} characters")
    return identity


def check_identity_for_version(identity: str, version: Version) -> None:
    """Check the rules the version adds: on 2.x at most 48 characters and no ``:`` (it is the
    Basic-auth username). 1.6 adds none.

    Raises:
        InvalidIdentityError: (400) the identity breaks a rule of ``version``.
    """
    if version is Version.V16:
        return
    if len(identity) > MAX_IDENTITY_LENGTH_V2:
        raise InvalidIdentityError(
            400, f"OCPP {version} station identity is longer than {MAX_IDENTITY_LENGTH_V2}"
        )
    if ":" in identity:
        raise InvalidIdentityError(400, f"OCPP {version} station identity must not contain ':'")


# --------------------------------------------------------------------------------------------
# Serving


async def serve_ocpp_websocket(
    handler: StationHandler,
    host: str | None,
    port: int,
    *,
    config: ServerConfig | None = None,
    select_version: VersionSelector | None = None,
    check_request: RequestChecker | None = None,
    ssl_context: ssl.SSLContext | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve OCPP-J over WebSocket on ``host:port`` until cancelled.

    Use with ``info: ServerInfo = await nursery.start(serve_ocpp_websocket, handler, host,
    port)``; it reports once the listeners are bound (``info.port`` gives the port when binding
    port 0). Each accepted connection is served in its own task (in ``handler_nursery`` when
    given): see the module docs for the steps before ``handler(StationConnection)`` runs.

    Waits for: cancellation; it never returns.
    Cancellation: stops accepting, cancels every connection task; each open connection gets a
    1001 close, bounded by ``close_timeout``.
    Closes: every connection it accepted, whatever the handler did.
    Exceptions: a handler's exception (``ConnectionLostError`` excepted) is logged and closes its
    connection with 1011; it never reaches this function. Errors binding the listeners
    (``OSError``) escape before ``task_status.started()``.

    Args:
        handler: serves one station; the connection is closed when it returns.
        host: the interface to bind (``None``: all interfaces).
        port: the port to bind, ``0`` for any free port.
        config: limits and timeouts (default ``ServerConfig()``).
        select_version: chooses the version (default :func:`select_newest`).
        check_request: refuses requests before the upgrade (default: none refused).
        ssl_context: serve ``wss://`` with this server-side TLS context.
        handler_nursery: the nursery connection tasks run in (default: one of this function).
        task_status: for ``nursery.start``.
    """
    server = _Server(
        handler,
        config or ServerConfig(),
        select_version or select_newest,
        check_request,
    )
    if ssl_context is None:
        plain = await trio.open_tcp_listeners(port, host=host)
        addresses = tuple(_address(listener.socket) for listener in plain)
        serve = partial(trio.serve_listeners, server.handle_stream, plain)
    else:
        secure = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
        addresses = tuple(_address(_socket_of(listener.transport_listener)) for listener in secure)
        serve = partial(trio.serve_listeners, server.handle_stream, secure)
    info = ServerInfo(addresses=addresses, counters=server.counters)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, handler_nursery=handler_nursery))
        logger.info(
            "serving OCPP %s on %s",
            ", ".join(v.value for v in server.config.versions),
            ", ".join(f"{'wss' if ssl_context else 'ws'}://{h}:{p}" for h, p in addresses),
        )
        task_status.started(info)
    raise AssertionError("unreachable: serve_listeners never returns")  # pragma: no cover


def _socket_of(listener: trio.abc.Listener[trio.SocketStream]) -> trio.socket.SocketType:
    if not isinstance(listener, trio.SocketListener):  # pragma: no cover - trio always does
        raise TypeError(f"expected a SocketListener, not {listener!r}")
    return listener.socket


def _address(sock: trio.socket.SocketType) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


@attrs.frozen
class _Accepted:
    connection: trio_websocket.WebSocketConnection
    request: ConnectionRequest
    version: Version | None


class _Server:
    """The per-connection logic of :func:`serve_ocpp_websocket`."""

    def __init__(
        self,
        handler: StationHandler,
        config: ServerConfig,
        select_version: VersionSelector,
        check_request: RequestChecker | None,
    ) -> None:
        self.handler = handler
        self.config = config
        self.select_version = select_version
        self.check_request = check_request
        self.counters = _Counters()

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one TCP (or TLS) connection; never raises except ``Cancelled``.

        trio-websocket's reader task runs in a nursery shielded from outside cancellation, so
        that when the server is cancelled the reader still delivers the peer's close frame to
        the (bounded) closing handshake; this task cancels that nursery itself once the
        connection is done. The stream is closed on the way out whatever happened.
        """
        try:
            async with trio.open_nursery() as nursery:
                host = _ReaderHost(self.config.ping_interval, self.config.ping_timeout)
                reader_nursery: trio.Nursery = await nursery.start(host.run)
                try:
                    await self._serve(reader_nursery, stream, host)
                finally:
                    reader_nursery.cancel_scope.cancel()
        except Exception:
            logger.exception("internal error while serving %s", _remote_of(stream))
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(
        self, nursery: trio.Nursery, stream: trio.abc.Stream, host: _ReaderHost
    ) -> None:
        with trio.move_on_after(self.config.handshake_timeout) as handshake_timer:
            if isinstance(stream, trio.SSLStream) and not await _tls_handshake(stream):
                self.counters.handshakes_failed += 1
                return
            try:
                accepted = await self._handshake(nursery, stream)
            except trio_websocket.ConnectionClosed:
                accepted = None
                self.counters.handshakes_failed += 1
                logger.debug("%s: connection lost during the handshake", _remote_of(stream))
        if handshake_timer.cancelled_caught:
            self.counters.handshakes_failed += 1
            logger.info(
                "%s: no WebSocket upgrade within %s s; dropped",
                _remote_of(stream),
                self.config.handshake_timeout,
            )
            return
        if accepted is None:
            return
        request = accepted.request
        transport = WebSocketTransport(
            accepted.connection,
            stream=stream,
            info=ConnectionInfo(
                remote=request.remote,
                path=accepted.connection.path or request.path,
                headers=request.headers,
                subprotocol=accepted.version.subprotocol if accepted.version else None,
                peer_certificate=request.peer_certificate,
            ),
            send_timeout=self.config.send_timeout,
            close_timeout=self.config.close_timeout,
        )
        if accepted.version is None:
            self.counters.no_subprotocol += 1
            logger.warning(
                "station %r (%s) offered no supported subprotocol %s; closing with 1002",
                request.identity,
                request.remote,
                list(request.offered_subprotocols),
            )
            await transport.aclose(CloseCode.PROTOCOL_ERROR, "no supported OCPP subprotocol")
            return
        self.counters.connections_accepted += 1
        station = StationConnection(
            identity=request.identity,
            version=accepted.version,
            transport=transport,
            request=request,
        )
        host.keep_alive(transport)
        await self._run_station(station, transport)

    async def _handshake(self, nursery: trio.Nursery, stream: trio.abc.Stream) -> _Accepted | None:
        """Read the request, check it, choose the version and upgrade; ``None`` if refused."""
        ws_request = await trio_websocket.wrap_server_stream(
            nursery,
            stream,
            message_queue_size=_MESSAGE_QUEUE_SIZE,
            max_message_size=self.config.max_message_size,
            receive_buffer_size=_RECEIVE_BUFFER,
        )
        remote = _format_endpoint(ws_request.remote)
        try:
            identity = identity_from_path(
                ws_request.path,
                path_prefix=self.config.path_prefix,
                max_length=self.config.max_identity_length_v16,
            )
        except InvalidIdentityError as exc:
            logger.warning("%s: refused %r: %s", remote, ws_request.path, exc.problem)
            await self._reject(ws_request, Rejection(exc.status_code, exc.problem))
            return None
        tokens = tuple(ws_request.proposed_subprotocols)
        request = ConnectionRequest(
            identity=identity,
            path=ws_request.path.partition("?")[0],
            offered_versions=tuple(
                dict.fromkeys(v for v in map(Version.from_subprotocol, tokens) if v is not None)
            ),
            offered_subprotocols=tokens,
            headers=tuple(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in ws_request.headers
            ),
            remote=remote,
            tls=isinstance(stream, trio.SSLStream),
            peer_certificate=_peer_certificate(stream),
        )
        if self.check_request is not None:
            try:
                rejection = await self.check_request(request)
            except Exception:
                logger.exception("check_request failed for station %r", identity)
                rejection = Rejection(500, "internal error")
            if rejection is not None:
                logger.info(
                    "station %r (%s) refused by check_request: %s %s",
                    identity,
                    remote,
                    rejection.status_code,
                    rejection.reason,
                )
                await self._reject(ws_request, rejection)
                return None
        version = await self._choose_version(request)
        if isinstance(version, Rejection):
            await self._reject(ws_request, version)
            return None
        if version is not None:
            try:
                check_identity_for_version(identity, version)
            except InvalidIdentityError as exc:
                logger.warning("%s: refused %r: %s", remote, ws_request.path, exc.problem)
                await self._reject(ws_request, Rejection(exc.status_code, exc.problem))
                return None
        subprotocol = version.subprotocol if version is not None else None
        if (
            version is not None
            and version is not Version.V16
            and self.config.permessage_deflate
            and offers_deflate(ws_request)
        ):
            connection = await accept_with_deflate(
                ws_request,
                subprotocol=subprotocol,
                max_message_size=self.config.max_message_size,
            )
        else:
            connection = await ws_request.accept(subprotocol=subprotocol)
        return _Accepted(connection, request, version)

    async def _choose_version(self, request: ConnectionRequest) -> Version | Rejection | None:
        candidates = [v for v in request.offered_versions if v in self.config.versions]
        if not candidates:
            return None
        try:
            result = self.select_version(request, tuple(candidates))
            chosen = result if result is None or isinstance(result, Version) else await result
        except Exception:
            logger.exception("select_version failed for station %r", request.identity)
            return Rejection(500, "internal error")
        if chosen is not None and chosen not in candidates:
            logger.error(
                "select_version chose %s for station %r, which is not among %s",
                chosen,
                request.identity,
                [v.value for v in candidates],
            )
            return Rejection(500, "internal error")
        return chosen

    async def _reject(
        self, ws_request: trio_websocket.WebSocketRequest, rejection: Rejection
    ) -> None:
        self.counters.handshakes_rejected += 1
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in rejection.headers]
        await ws_request.reject(
            rejection.status_code, extra_headers=headers, body=rejection.reason.encode()
        )

    async def _run_station(self, station: StationConnection, transport: WebSocketTransport) -> None:
        """Run the handler (the keepalive runs in the reader's host task); close the
        connection when it is done."""
        identity, remote = station.identity, station.request.remote
        logger.info("station %r (%s) connected with OCPP %s", identity, remote, station.version)
        self.counters.connections_active += 1
        code, reason = CloseCode.NORMAL, ""
        finished = False
        try:
            try:
                await self.handler(station)
            except Exception as exc:
                if _only_connection_lost(exc):
                    logger.debug("station %r handler ended: %r", identity, exc)
                else:
                    self.counters.handler_errors += 1
                    logger.exception("handler for station %r raised", identity)
                    code, reason = CloseCode.INTERNAL_ERROR, "internal error"
            finished = True
        finally:
            if not finished:
                code, reason = CloseCode.GOING_AWAY, "server shutting down"
            # The close is bounded by close_timeout; shielded so a cancelled server still
            # says goodbye instead of dropping the TCP connection.
            with trio.CancelScope(shield=True):
                await transport.aclose(code, reason)
            self.counters.connections_active -= 1
            closed = transport.closed
            level = (
                logging.WARNING
                if closed is not None and closed.code == CloseCode.MESSAGE_TOO_BIG
                else logging.INFO
            )
            logger.log(level, "station %r (%s) disconnected: %s", identity, remote, closed)


async def _tls_handshake(stream: trio.SSLStream[Any]) -> bool:
    """Complete the TLS handshake; log (WARNING) and return ``False`` when it fails.

    Done before trio-websocket sees the stream: its reader would swallow the failure and leave
    the upgrade waiting for the handshake timeout. A rejected client certificate (profile 3),
    an old TLS version or no common cipher suite all end here.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        logger.warning("%s: TLS handshake failed: %s", _remote_of(stream), exc.__cause__ or exc)
        return False
    return True


def _only_connection_lost(exc: Exception) -> bool:
    """Whether ``exc`` is just the connection going away (alone or grouped by a nursery)."""
    if isinstance(exc, ExceptionGroup):
        return exc.split(ConnectionLostError)[1] is None
    return isinstance(exc, ConnectionLostError)


class _ReaderHost:
    """The task that hosts trio-websocket's reader and, once the connection is up, pings.

    The reader runs in a nursery shielded from outside cancellation (only its own
    ``cancel_scope.cancel()`` ends it), so that a cancelled server still gets the peer's close
    frame.  The task that owns that nursery would otherwise only wait; it sends the keepalive
    pings instead, which spares every connection a task of its own.
    """

    __slots__ = ("_interval", "_ready", "_timeout", "_transport")

    def __init__(self, ping_interval: float, ping_timeout: float) -> None:
        self._interval = ping_interval
        self._timeout = ping_timeout
        self._transport: WebSocketTransport | None = None
        self._ready: trio.Event | None = trio.Event() if ping_interval > 0 else None

    def keep_alive(self, transport: WebSocketTransport) -> None:
        """Start pinging ``transport`` (every ``ping_interval``; no-op when that is 0)."""
        if self._ready is not None:
            self._transport = transport
            self._ready.set()

    async def run(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.cancel_scope.shield = True
            task_status.started(nursery)
            ready = self._ready
            if ready is None:
                await trio.sleep_forever()
            else:
                await ready.wait()
                self._ready = ready = None  # an idle connection keeps nothing it no longer needs
                await self._keepalive()

    async def _keepalive(self) -> None:
        """Ping every ``ping_interval``; stop once a ping fails (the transport aborted itself,
        or is closing); the nursery then waits for the reader to end."""
        transport = self._transport
        assert transport is not None
        while True:
            await trio.sleep(self._interval)
            if not await transport.ping(self._timeout):
                return


def _remote_of(stream: trio.abc.Stream) -> str:
    inner: object = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        try:
            host, port, *_ = inner.socket.getpeername()
        except OSError:
            return "unknown peer"
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(stream)


def _peer_certificate(stream: trio.abc.Stream) -> dict[str, Any] | None:
    if not isinstance(stream, trio.SSLStream):
        return None
    try:
        certificate = stream.getpeercert()
    except ValueError:  # handshake not done; cannot happen once the request was read
        return None
    return dict(certificate) if certificate else None
