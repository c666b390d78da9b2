"""Serving OCPP-J over WebSocket: station identity from the path, subprotocol negotiation, limits.

The server owns the whole WebSocket layer: it reads the HTTP upgrade request with h11, answers it
through wsproto, and serves the connection as a
:class:`~ocpp_trio.transport.websocket.WebSocketTransport`.  Each TCP connection is served in its
own task and goes through these steps, all before the WebSocket upgrade and all within
``ServerConfig.handshake_timeout``:

0. Over TLS, complete the TLS handshake (client certificate checks included); a failure is
   logged at WARNING and the connection dropped.
1. Read the HTTP request.  A malformed one is refused with 400 (431 for an over-long head), a
   method other than GET with 405, a request that is not a WebSocket upgrade (or asks for a
   WebSocket version other than 13) with 426.
2. Resolve the station identity: the last non-empty path segment, percent-decoded
   (:func:`identity_from_path`). An invalid one is refused with HTTP 400, a missing one with 404.
3. ``check_request`` (the application's hook, e.g. HTTP Basic auth): a :class:`Rejection` refuses
   the upgrade with its status and headers.
4. Choose the version among those the client offered that the server enables
   (``select_version``; by default the newest, :func:`select_newest`).  When none can be
   chosen, the request is refused with 400 (``ServerConfig.upgrade_without_subprotocol``
   restores what the OCPP-J specifications describe: upgrade without a subprotocol, then close
   at once with 1002).  On 2.x the identity must also be an ``identifierString``
   (:func:`check_identity_for_version`), else 400.
5. Upgrade, with permessage-deflate on 2.x when the station offers it.

Every refusal is a ``text/plain`` body saying why.  Then ``handler(StationConnection)`` runs;
one watchdog task per server sends keepalive pings and enforces the send timeout for every
connection (see :mod:`ocpp_trio.transport.websocket`).  When the handler returns the connection
is closed with 1000; when it raises, the error is logged and only that connection is closed,
with 1011. Which station may be connected twice is the runtime's business, not this module's.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, NoReturn

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import Extension
from wsproto.utilities import ProtocolError

from ocpp_trio.errors import ConnectionLostError, InvalidIdentityError
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.base import CloseCode, ConnectionInfo, Transport
from ocpp_trio.transport.deflate import BoundedPerMessageDeflate
from ocpp_trio.transport.handshake import (
    Refusal,
    early_data,
    header_tokens,
    new_connection,
    read_request,
    refusal_response,
    send_refusal,
    upgrade_refusal,
)
from ocpp_trio.transport.identity import check_identity_for_version, identity_from_path
from ocpp_trio.transport.listen import SocketListener, open_socket_listeners
from ocpp_trio.transport.websocket import Watchdog, WebSocketTransport

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

_NEWEST_FIRST = (Version.V21, Version.V201, Version.V16)
#: Request headers the application does not see: wsproto consumes them.
_HIDDEN_HEADERS = frozenset({b"host", b"sec-websocket-protocol", b"sec-websocket-extensions"})


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
        max_message_size: the largest message accepted, in bytes (the UTF-8 bytes of a text
            frame). A larger one closes the connection with 1009. The default, 4 MiB, is far
            above the largest schema field (2.1 ``signedMeterData``, 32768 characters).
        ping_interval: seconds without anything received from a station before the server
            pings it; ``0`` disables the pings.
        ping_timeout: seconds to wait after a ping for anything from the station (its pong)
            before aborting the connection.
        handshake_timeout: seconds from TCP accept (TLS included) to the WebSocket upgrade,
            ``check_request`` and ``select_version`` included; a slower client is dropped.
        send_timeout: seconds one message's write may stay blocked before the connection is
            aborted (a peer that stops reading must not hold a task forever).
        close_timeout: seconds to wait for the peer's close frame when closing.
        path_prefix: requests whose path does not start with it are refused with 404; the
            default ``"/"`` accepts any path. The identity is the last non-empty segment after it.
        max_identity_length_v16: the longest identity accepted on 1.6, which sets no limit
            (2.x: 48, fixed by the spec).
        permessage_deflate: accept the permessage-deflate compression (RFC 7692) a 2.x
            station offers, as 2.x requires of a CSMS (never on 1.6, which advises against
            it). Both ends then compress each message on its own (no context takeover), and a
            message that inflates beyond ``max_message_size`` closes the connection with 1009.
        upgrade_without_subprotocol: when no version can be agreed (no known subprotocol
            offered, or ``select_version`` refused them all): ``False`` (the default) refuses
            the request with HTTP 400 before the upgrade; ``True`` upgrades without a
            ``Sec-WebSocket-Protocol`` and closes the connection at once with 1002, which is
            what the OCPP-J specifications describe.
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
    upgrade_without_subprotocol: bool = False


@attrs.frozen(kw_only=True)
class ConnectionRequest:
    """A station's WebSocket upgrade request, as the application's hooks see it.

    Attributes:
        identity: the station identity, percent-decoded.
        path: the request path, still percent-encoded, without the query string.
        offered_versions: the versions we know among those the client offered, in its order.
        offered_subprotocols: every ``Sec-WebSocket-Protocol`` token the client sent, in order.
        headers: ``(lower-case name, value)`` pairs, values decoded as ISO-8859-1 (``Host``,
            ``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions`` are not included).
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
        handshakes_rejected: requests refused with an HTTP error (malformed or not an upgrade,
            identity, ``check_request``, no agreed version).
        handshakes_failed: connections dropped before the upgrade (TLS failure, timeout, peer
            gone).
        no_subprotocol: requests with which no version could be agreed (refused with 400, or
            upgraded and closed with 1002).
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
request is then refused with 400, or upgraded and closed with 1002: see
``ServerConfig.upgrade_without_subprotocol``)."""

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
    1001 close, bounded by ``close_timeout``.  (With ``handler_nursery``, the connections and
    the watchdog looking after them live on in that nursery until they end.)
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
    config = config or ServerConfig()
    watchdog = Watchdog(
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        send_timeout=config.send_timeout,
    )
    plain = await open_socket_listeners(port, host=host)
    server = _Server(
        handler, config, select_version or select_newest, check_request, watchdog, plain
    )
    addresses = tuple(_address(listener.socket) for listener in plain)
    if ssl_context is None:
        serve = partial(trio.serve_listeners, server.handle_stream, plain)
    else:
        secure = [
            trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in plain
        ]
        serve = partial(trio.serve_listeners, server.handle_stream, secure)
    info = ServerInfo(addresses=addresses, counters=server.counters)
    try:
        async with trio.open_nursery() as nursery:
            await (handler_nursery or nursery).start(watchdog.run)
            await nursery.start(partial(serve, handler_nursery=handler_nursery))
            logger.info(
                "serving OCPP %s on %s",
                ", ".join(v.value for v in server.config.versions),
                ", ".join(f"{'wss' if ssl_context else 'ws'}://{h}:{p}" for h, p in addresses),
            )
            task_status.started(info)
    finally:
        watchdog.retire()  # in a handler nursery, it ends with the last connection
    raise AssertionError("unreachable: serve_listeners never returns")  # pragma: no cover


def _address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


@attrs.frozen
class _Accepted:
    transport: WebSocketTransport
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
        watchdog: Watchdog,
        listeners: Sequence[SocketListener],
    ) -> None:
        self.handler = handler
        self.config = config
        self.select_version = select_version
        self.check_request = check_request
        self.watchdog = watchdog
        self.counters = _Counters()
        #: the listeners whose connections this serves (they know their sockets)
        self.listeners = listeners

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one TCP (or TLS) connection; never raises except ``Cancelled``.  The stream is
        closed on the way out whatever happened."""
        try:
            accepted = await self._open(stream)
            if accepted is not None:
                await self._serve(accepted)
        except Exception:
            logger.exception("internal error while serving %s", _remote_of(stream))
        finally:
            await trio.aclose_forcefully(stream)

    async def _open(self, stream: trio.abc.Stream) -> _Accepted | None:
        """TLS, the upgrade request and the checks, within the handshake timeout; ``None`` when
        the connection was refused or dropped."""
        remote = _remote_of(stream)
        accepted = None
        with trio.move_on_after(self.config.handshake_timeout) as handshake_timer:
            if isinstance(stream, trio.SSLStream) and not await _tls_handshake(stream, remote):
                self.counters.handshakes_failed += 1
                return None
            try:
                accepted = await self._handshake(stream, remote)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.handshakes_failed += 1
                logger.debug("%s: connection lost during the handshake", remote)
                return None
        if handshake_timer.cancelled_caught:
            self.counters.handshakes_failed += 1
            logger.info(
                "%s: no WebSocket upgrade within %s s; dropped",
                remote,
                self.config.handshake_timeout,
            )
        return accepted

    async def _handshake(self, stream: trio.abc.Stream, remote: str) -> _Accepted | None:
        """Read the request, check it, choose the version and upgrade; ``None`` if refused."""
        http = new_connection()
        try:
            head = await read_request(stream, http)
        except h11.RemoteProtocolError as exc:
            logger.info("%s: malformed HTTP request refused: %s", remote, exc)
            status = exc.error_status_hint if 400 <= exc.error_status_hint <= 499 else 400
            await self._refuse(stream, http, Refusal(status, f"malformed HTTP request: {exc}"))
            return None
        if head is None:
            self.counters.handshakes_failed += 1
            logger.debug("%s: the peer left before its request was complete", remote)
            return None
        target = head.target.decode("latin-1")
        problem = upgrade_refusal(head)
        if problem is not None:
            logger.info("%s: %r refused (%s): %s", remote, target, problem.status, problem.body)
            await self._refuse(stream, http, problem, head=head.method == b"HEAD")
            return None
        try:
            identity = identity_from_path(
                target,
                path_prefix=self.config.path_prefix,
                max_length=self.config.max_identity_length_v16,
            )
        except InvalidIdentityError as exc:
            logger.warning("%s: refused %r: %s", remote, target, exc.problem)
            await self._refuse(stream, http, Refusal(exc.status_code, exc.problem))
            return None
        tokens = tuple(header_tokens(head.headers, b"sec-websocket-protocol"))
        request = ConnectionRequest(
            identity=identity,
            path=target.partition("?")[0],
            offered_versions=tuple(
                dict.fromkeys(v for v in map(Version.from_subprotocol, tokens) if v is not None)
            ),
            offered_subprotocols=tokens,
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in head.headers
                if name not in _HIDDEN_HEADERS
            ),
            remote=remote,
            tls=isinstance(stream, trio.SSLStream),
            peer_certificate=_peer_certificate(stream),
        )
        version: Version | None = None
        rejection = await self._check(request)
        if rejection is None:
            chosen = await self._choose_version(request)
            if isinstance(chosen, Rejection):
                rejection = chosen
            elif chosen is None:
                rejection = self._no_version(request)
            else:
                version = chosen
                rejection = _identity_rejection(request, version)
        if rejection is not None:
            await self._refuse(
                stream, http, Refusal(rejection.status_code, rejection.reason, rejection.headers)
            )
            return None
        return await self._upgrade(stream, http, head, request, version, target)

    async def _check(self, request: ConnectionRequest) -> Rejection | None:
        """The application's ``check_request``; a failure of its own is a 500."""
        if self.check_request is None:
            return None
        try:
            rejection = await self.check_request(request)
        except Exception:
            logger.exception("check_request failed for station %r", request.identity)
            return Rejection(500, "internal error")
        if rejection is not None:
            logger.info(
                "station %r (%s) refused by check_request: %s %s",
                request.identity,
                request.remote,
                rejection.status_code,
                rejection.reason,
            )
        return rejection

    def _no_version(self, request: ConnectionRequest) -> Rejection | None:
        """No version agreed: refused with 400, unless the upgrade-then-1002 way is configured."""
        self.counters.no_subprotocol += 1
        offered = list(request.offered_subprotocols)
        if self.config.upgrade_without_subprotocol:
            return None
        logger.warning(
            "station %r (%s) offered no supported subprotocol %s; refused",
            request.identity,
            request.remote,
            offered,
        )
        enabled = ", ".join(v.subprotocol for v in self.config.versions)
        return Rejection(400, f"no supported OCPP subprotocol offered (this server: {enabled})")

    async def _upgrade(
        self,
        stream: trio.abc.Stream,
        http: h11.Connection,
        head: h11.Request,
        request: ConnectionRequest,
        version: Version | None,
        target: str,
    ) -> _Accepted | None:
        """Hand the checked request to wsproto and send its 101."""
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.initiate_upgrade_connection(list(head.headers), head.target)
            event = next(ws.events(), None)
        except ProtocolError as exc:  # not expected: the request was checked already
            logger.warning("%s: upgrade request refused by wsproto: %s", request.remote, exc)
            await self._refuse(stream, new_connection(), Refusal(400, str(exc)))
            return None
        assert isinstance(event, Request)
        extensions: list[Extension] = []
        if version in (Version.V201, Version.V21) and self.config.permessage_deflate:
            extensions.append(BoundedPerMessageDeflate(self.config.max_message_size))
        subprotocol = version.subprotocol if version is not None else None
        await stream.send_all(
            ws.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions))
        )
        early = early_data(http)
        if early:
            ws.receive_data(early)
        transport = WebSocketTransport(
            stream,
            ws,
            info=ConnectionInfo(
                remote=request.remote,
                path=target,
                headers=request.headers,
                subprotocol=subprotocol,
                peer_certificate=request.peer_certificate,
            ),
            max_message_size=self.config.max_message_size,
            close_timeout=self.config.close_timeout,
            raw_socket=self._raw_socket(stream),
        )
        return _Accepted(transport, request, version)

    def _raw_socket(self, stream: trio.abc.Stream) -> socket.socket | None:
        for listener in self.listeners:
            raw = listener.raw_socket(stream)
            if raw is not None:
                return raw
        return None

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

    async def _refuse(
        self, stream: trio.abc.Stream, http: h11.Connection, refusal: Refusal, *, head: bool = False
    ) -> None:
        """Answer with ``refusal`` (``head``: to a HEAD request); the caller then closes the
        connection."""
        self.counters.handshakes_rejected += 1
        try:
            data = refusal_response(http, refusal, head=head)
        except h11.LocalProtocolError:
            logger.exception("cannot send the refusal %s (an invalid header?)", refusal)
            data = refusal_response(new_connection(), Refusal(500, "internal error"))
        await send_refusal(stream, data)

    async def _serve(self, accepted: _Accepted) -> None:
        """Run the handler on an upgraded connection, watched by the watchdog; close it after."""
        transport, request = accepted.transport, accepted.request
        if accepted.version is None:
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
        self.watchdog.watch(transport)
        try:
            await self._run_station(station, transport)
        finally:
            self.watchdog.unwatch(transport)

    async def _run_station(self, station: StationConnection, transport: WebSocketTransport) -> None:
        """Run the handler; close the connection when it is done."""
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


def _identity_rejection(request: ConnectionRequest, version: Version) -> Rejection | None:
    """A 400 when the identity breaks a rule of the chosen version."""
    try:
        check_identity_for_version(request.identity, version)
    except InvalidIdentityError as exc:
        logger.warning("%s: refused %r: %s", request.remote, request.path, exc.problem)
        return Rejection(exc.status_code, exc.problem)
    return None


async def _tls_handshake(stream: trio.SSLStream[Any], remote: str) -> bool:
    """Complete the TLS handshake; log (WARNING) and return ``False`` when it fails.

    A rejected client certificate (profile 3), an old TLS version or no common cipher suite all
    end here, at once: the failure is not left for the handshake timeout to find.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        logger.warning("%s: TLS handshake failed: %s", remote, exc.__cause__ or exc)
        return False
    return True


def _only_connection_lost(exc: Exception) -> bool:
    """Whether ``exc`` is just the connection going away (alone or grouped by a nursery)."""
    if isinstance(exc, ExceptionGroup):
        return exc.split(ConnectionLostError)[1] is None
    return isinstance(exc, ConnectionLostError)


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
