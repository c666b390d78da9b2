"""The transport a station connection runs over: a protocol, in-memory pairs, a WebSocket adapter.

The runtime only needs four things from a connection: send a text frame, receive the next frame,
close with a code, and know how and whether it was closed. :class:`Transport` names exactly
that, so the whole runtime can be tested over :func:`memory_transport_pair` with trio's
``autojump_clock``, and served for real over :class:`WebSocketTransport`.

Close semantics follow WebSocket (RFC 6455): after the *peer* closes, the messages it sent before
closing can still be read, then :meth:`Transport.get_message` raises; after *we* close, pending
messages are discarded. Either way, every later send or receive raises
:class:`TransportClosedError`, a :class:`~ocpp_trio.ConnectionLostError` (hence also a
``trio.BrokenResourceError``) carrying the close code and reason.
"""

from __future__ import annotations

import enum
import logging
import os
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import attrs
import trio
import trio_websocket
import wsproto
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError

from ocpp_trio.errors import TransportClosedError

__all__ = [
    "CloseCode",
    "CloseReason",
    "ConnectionInfo",
    "MemoryTransport",
    "Transport",
    "WebSocketTransport",
    "memory_transport_pair",
]

logger = logging.getLogger("ocpp_trio.transport")

#: Close codes that RFC 6455 reserves for reporting and forbids in a Close frame.
_NOT_SENDABLE = frozenset({1005, 1006, 1015})
#: RFC 6455 limits the close reason to 123 bytes of UTF-8.
_MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    """The WebSocket close codes ocpp-trio uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    #: Never sent: recorded locally when a connection ended without a close handshake
    #: (peer vanished, send timeout, keepalive timeout).
    ABNORMAL = 1006
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


@attrs.frozen
class CloseReason:
    """How a connection was closed: the WebSocket close code and the reason text."""

    code: int
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".rstrip()


@attrs.frozen(kw_only=True)
class ConnectionInfo:
    """What is known about the other end of a transport.

    Attributes:
        remote: ``address:port`` of the peer (``[v6]:port`` for IPv6), or ``"memory"``.
        path: the HTTP request target the connection was opened with (query included).
        headers: the upgrade request's headers as ``(lower-case name, value)`` pairs, values
            decoded as ISO-8859-1. ``Host`` and ``Sec-WebSocket-Protocol`` are not included.
        subprotocol: the negotiated WebSocket subprotocol, or ``None``.
        peer_certificate: the peer's TLS certificate as :meth:`ssl.SSLSocket.getpeercert`
            returns it, when TLS is used and the peer presented a validated certificate.
    """

    remote: str = "memory"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    subprotocol: str | None = None
    peer_certificate: dict[str, Any] | None = attrs.field(default=None, hash=False)


class Transport(Protocol):
    """One message-oriented, full-duplex connection (a WebSocket or an in-memory pair end).

    ``send_message`` may be called from several tasks; each message goes out whole.
    ``get_message`` should have one reader.
    """

    async def send_message(self, message: str) -> None:
        """Send one text message.

        Raises:
            ConnectionLostError: the connection is closed (a :class:`TransportClosedError`).
        """
        ...

    async def get_message(self) -> str | bytes:
        """Wait for the next message; ``bytes`` is a binary frame, which OCPP-J forbids.

        Raises:
            ConnectionLostError: the connection is closed and nothing is left to read.
        """
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code``/``reason``; idempotent."""
        ...

    @property
    def closed(self) -> CloseReason | None:
        """How the connection was closed, or ``None`` while it is open."""
        ...

    @property
    def info(self) -> ConnectionInfo:
        """Who is at the other end."""
        ...


# --------------------------------------------------------------------------------------------
# In-memory pairs


@attrs.define
class _Link:
    """The state the two ends of a memory pair share: one close for both."""

    closed: CloseReason | None = None


class MemoryTransport:
    """One end of :func:`memory_transport_pair`."""

    def __init__(
        self,
        link: _Link,
        send_channel: trio.MemorySendChannel[str | bytes],
        receive_channel: trio.MemoryReceiveChannel[str | bytes],
        info: ConnectionInfo,
    ) -> None:
        self._link = link
        self._send_channel = send_channel
        self._receive_channel = receive_channel
        self._info = info

    @property
    def closed(self) -> CloseReason | None:
        """How the pair was closed (by either end), or ``None`` while it is open."""
        return self._link.closed

    @property
    def info(self) -> ConnectionInfo:
        """The info this end was created with."""
        return self._info

    def _lost(self) -> TransportClosedError:
        close = self._link.closed or CloseReason(CloseCode.ABNORMAL)
        return TransportClosedError(close.code, close.reason)

    async def send_message(self, message: str) -> None:
        """Queue ``message`` for the other end.

        Waits while the other end's buffer (``max_buffer`` messages) is full. Cancellation is
        safe: the message is then either delivered whole or not at all.

        Raises:
            TransportClosedError: either end has closed, before or while waiting.
        """
        await self._send(message)

    async def send_binary(self, data: bytes) -> None:
        """Queue a binary frame, for tests of how the runtime rejects one.

        Raises:
            TransportClosedError: either end has closed, before or while waiting.
        """
        await self._send(data)

    async def _send(self, item: str | bytes) -> None:
        if self._link.closed is not None:
            await trio.lowlevel.checkpoint()
            raise self._lost()
        try:
            await self._send_channel.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._lost() from None

    async def get_message(self) -> str | bytes:
        """Wait for the next message from the other end.

        Messages the other end sent before closing are still returned; after that, and at once
        after this end closed, the close is raised. Cancellation is safe: a message is never
        lost by cancelling the wait.

        Raises:
            TransportClosedError: the pair is closed and nothing is left to read.
        """
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._lost() from None

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the pair; the other end sees ``code``/``reason``. Idempotent; the first close
        (from either end) is the one both ends report.

        Wakes this end's blocked senders and receivers and the other end's blocked senders with
        :class:`TransportClosedError`. Never blocks (it is a checkpoint).
        """
        if self._link.closed is None:
            self._link.closed = CloseReason(int(code), reason)
        self._send_channel.close()
        self._receive_channel.close()
        await trio.lowlevel.checkpoint()


def memory_transport_pair(
    *,
    max_buffer: int = 16,
    info_a: ConnectionInfo | None = None,
    info_b: ConnectionInfo | None = None,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports, ``(a, b)``: what ``a`` sends, ``b`` receives.

    Each direction is a bounded trio memory channel of ``max_buffer`` messages (``0`` makes
    every send wait for the matching receive), so a reader that stops reading applies
    backpressure exactly as a full socket would.

    Args:
        max_buffer: messages each direction holds before a send waits.
        info_a: what ``a.info`` reports (default ``ConnectionInfo()``, remote ``"memory"``).
        info_b: what ``b.info`` reports.
    """
    if max_buffer < 0:
        raise ValueError(f"max_buffer must be >= 0, not {max_buffer}")
    link = _Link()
    a_to_b_send, a_to_b_receive = trio.open_memory_channel[str | bytes](max_buffer)
    b_to_a_send, b_to_a_receive = trio.open_memory_channel[str | bytes](max_buffer)
    a = MemoryTransport(link, a_to_b_send, b_to_a_receive, info_a or ConnectionInfo())
    b = MemoryTransport(link, b_to_a_send, a_to_b_receive, info_b or ConnectionInfo())
    return a, b


# --------------------------------------------------------------------------------------------
# trio-websocket adapter


def _truncate_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")
    if len(encoded) <= _MAX_REASON_BYTES:
        return reason
    return encoded[:_MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def _format_endpoint(endpoint: object) -> str:
    """``address:port`` for a trio-websocket ``Endpoint``, ``repr``-ish text otherwise."""
    if isinstance(endpoint, trio_websocket.Endpoint):
        if endpoint.address.version == 6:
            return f"[{endpoint.address}]:{endpoint.port}"
        return f"{endpoint.address}:{endpoint.port}"
    return str(endpoint)


@attrs.frozen
class _DirectWriter:
    """What :class:`WebSocketTransport` needs to write frames itself: trio-websocket's send
    lock and wsproto connection, and the plain socket stream they write to."""

    lock: trio.StrictFIFOLock | trio.Lock
    protocol: wsproto.WSConnection
    stream: trio.SocketStream

    @classmethod
    def of(
        cls, connection: trio_websocket.WebSocketConnection, stream: object
    ) -> _DirectWriter | None:
        lock = getattr(connection, "_stream_lock", None)
        protocol = getattr(connection, "_wsproto", None)
        written_to: object = getattr(connection, "_stream", None)
        if (
            isinstance(stream, trio.SocketStream)
            and written_to is stream
            and isinstance(lock, trio.StrictFIFOLock | trio.Lock)
            and isinstance(protocol, wsproto.WSConnection)
        ):
            return cls(lock, protocol, stream)
        return None


class _HandOver:
    """Stands in for trio-websocket's internal message channel, on its reader task's side.

    ``MemorySendChannel.send`` yields to the scheduler even when there is room; trio-websocket's
    reader awaits it for every message, then reads the socket, which is a checkpoint anyway.
    This puts the message in the channel without that extra pass when there is room, and waits
    like ``send`` only when the channel is full (the backpressure is unchanged).  Errors are
    the channel's own (``ClosedResourceError``, ``BrokenResourceError``), which the reader
    handles.
    """

    __slots__ = ("_channel",)

    def __init__(self, channel: trio.MemorySendChannel[str | bytes]) -> None:
        self._channel = channel

    @classmethod
    def install(cls, connection: trio_websocket.WebSocketConnection) -> None:
        channel: object = getattr(connection, "_send_channel", None)
        if isinstance(channel, trio.MemorySendChannel):
            connection._send_channel = cls(channel)  # type: ignore[assignment]

    async def send(self, value: str | bytes) -> None:
        try:
            self._channel.send_nowait(value)
        except trio.WouldBlock:
            await self._channel.send(value)

    async def aclose(self) -> None:
        await self._channel.aclose()

    async def __aenter__(self) -> _HandOver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class WebSocketTransport:
    """A :class:`Transport` over a trio-websocket ``WebSocketConnection``.

    **Send timeout.** A peer that stops reading fills the socket buffers, and a plain send would
    then wait forever. Each :meth:`send_message` therefore gets ``send_timeout`` seconds; when it
    runs out, the connection is **aborted** (the TCP stream is closed without a close frame:
    part of a frame may already be on the wire and the peer is not reading anyway), the close is
    recorded as ``1006`` with reason ``"send timed out after N s"``, and
    :class:`TransportClosedError` is raised.

    **Cancellation.** Cancelling a write half-way would leave part of a frame on the wire and
    corrupt the stream for good, so the write itself is shielded, bounded by ``send_timeout``:
    a cancelled :meth:`send_message` takes effect once the frame is out (or the connection has
    been aborted), never in the middle of it.

    **Closing.** :meth:`aclose` runs the close handshake for at most ``close_timeout`` seconds,
    then closes the stream whatever happened.

    **Direct writes.** Over a plain TCP stream (not TLS), a frame is written straight to the
    socket when nothing else is being sent: trio-websocket's send lock is taken without
    waiting, the frame is built by the connection's own wsproto state, and one non-blocking
    write puts it in the socket buffer, with no task switch. Only when the socket takes part
    of the frame (or none) does the rest go out the usual way, under the shield and the
    ``send_timeout`` above. This relies on trio-websocket internals (its lock, wsproto
    connection and stream), checked when the adapter is made; when they are not as expected,
    every frame goes through ``WebSocketConnection.send_message``. In the same case, messages
    read by trio-websocket's reader task are handed to :meth:`get_message` without the
    scheduling pass its channel makes when there is room (see ``_HandOver``).

    Args:
        connection: an open trio-websocket connection (server or client side).
        info: what :attr:`info` reports; by default derived from ``connection``.
        stream: the connection's underlying trio stream, which this adapter closes itself so
            that no socket is left open (trio-websocket leaves it open after a 1009 close). When
            omitted, the connection's private ``_stream`` attribute is used if present.
        send_timeout: seconds one :meth:`send_message` may take.
        close_timeout: seconds :meth:`aclose` waits for the peer's close frame.
    """

    def __init__(
        self,
        connection: trio_websocket.WebSocketConnection,
        *,
        info: ConnectionInfo | None = None,
        stream: trio.abc.AsyncResource | None = None,
        send_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        if send_timeout <= 0 or close_timeout < 0:
            raise ValueError("send_timeout must be > 0 and close_timeout >= 0")
        self._connection = connection
        if stream is None:
            # trio-websocket offers no public way to abort a connection; fall back on its
            # private attribute rather than leave a socket open.
            private = getattr(connection, "_stream", None)
            stream = private if isinstance(private, trio.abc.AsyncResource) else None
        self._stream = stream
        self._direct = _DirectWriter.of(connection, stream)
        if self._direct is not None:
            _HandOver.install(connection)
        self._send_timeout = send_timeout
        self._close_timeout = close_timeout
        self._closed: CloseReason | None = None
        self._closing = False
        if info is None:
            info = ConnectionInfo(
                remote=_format_endpoint(connection.remote),
                path=connection.path or "/",
                headers=tuple(
                    (name.decode("latin-1").lower(), value.decode("latin-1"))
                    for name, value in connection.handshake_headers
                ),
                subprotocol=connection.subprotocol,
            )
        self._info = info

    @property
    def info(self) -> ConnectionInfo:
        """Who is at the other end."""
        return self._info

    @property
    def closed(self) -> CloseReason | None:
        """How the connection was closed, or ``None`` while it is open.

        A close we started reports our code and reason; a close the peer started reports the
        peer's; a connection that ended without a close handshake reports ``1006``; a frame over
        the size limit reports ``1009``.
        """
        if self._closed is not None:
            return self._closed
        reason = self._connection.closed
        if reason is None:
            return None
        return CloseReason(reason.code, reason.reason or "")

    def _lost(self) -> TransportClosedError:
        close = self.closed or CloseReason(CloseCode.ABNORMAL)
        return TransportClosedError(close.code, close.reason)

    async def send_message(self, message: str) -> None:
        """Send one text frame.

        Waits for the frame to be written to the socket, for at most ``send_timeout`` seconds;
        on timeout the connection is aborted (see the class docs). Cancellation is deferred
        until the frame is out or the send timed out, so the stream is never left mid-frame.

        Raises:
            TransportClosedError: the connection was closed before or during the send, or the
                send timed out and the connection was aborted.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed is not None:
            raise self._lost()
        direct = self._direct
        if direct is not None and not direct.lock.locked():
            await self._send_direct(direct, message)
            return
        with self._send_scope() as timer:
            try:
                await self._connection.send_message(message)
            except trio_websocket.ConnectionClosed:
                pass
            else:
                return
        await self._send_failed(timer)

    async def _send_direct(self, direct: _DirectWriter, message: str) -> None:
        """Write one frame straight to the socket (see "Direct writes" in the class docs);
        the caller checked that the send lock is free, and nothing here waits before the
        first write, so no other frame can come between."""
        try:
            data = direct.protocol.send(TextMessage(data=message))
        except WsLocalProtocolError:  # wsproto is closing: trio-websocket will record why
            raise self._lost() from None
        direct.lock.acquire_nowait()
        try:
            try:
                # the descriptor is looked up at every write: once the socket is closed it
                # is -1 (EBADF), never a number since given to another connection
                written = os.write(direct.stream.socket.fileno(), data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                await self._abort(CloseReason(CloseCode.ABNORMAL, f"send failed: {exc}"))
                raise self._lost() from None
            if written == len(data):
                return
            # the socket buffer is full: finish this frame before anything else is sent
            with self._send_scope() as timer:
                try:
                    await direct.stream.send_all(memoryview(data)[written:])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                else:
                    return
        finally:
            direct.lock.release()
        if not timer.cancelled_caught:
            await self._abort(CloseReason(CloseCode.ABNORMAL, "connection lost while sending"))
        await self._send_failed(timer)

    def _send_scope(self) -> trio.CancelScope:
        """One scope per send that may wait: shielded from outside cancellation, cancelled by
        its own ``send_timeout`` deadline."""
        return trio.CancelScope(shield=True, deadline=trio.current_time() + self._send_timeout)

    async def _send_failed(self, timer: trio.CancelScope) -> NoReturn:
        """Raise the right error after a send that did not complete; on a timeout, abort."""
        if timer.cancelled_caught:
            with trio.CancelScope(shield=True):
                logger.warning(
                    "%s: send timed out after %s s; aborting the connection",
                    self._info.remote,
                    self._send_timeout,
                )
                await self._abort(
                    CloseReason(CloseCode.ABNORMAL, f"send timed out after {self._send_timeout} s")
                )
        raise self._lost()

    async def get_message(self) -> str | bytes:
        """Wait for the next message (``bytes`` for a binary frame).

        Messages received before the peer's close are still returned. Cancellation is safe: a
        cancelled wait loses no message.

        Raises:
            TransportClosedError: the connection is closed and nothing is left to read
                (``close_code`` 1009 when the peer sent a frame over the size limit).
        """
        if self._closed is not None:
            await trio.lowlevel.checkpoint()
            raise self._lost()
        try:
            return await self._connection.get_message()
        except trio_websocket.ConnectionClosed:
            raise self._lost() from None

    async def ping(self, pong_timeout: float) -> bool:
        """Send a WebSocket ping and wait up to ``pong_timeout`` seconds for the pong.

        Returns ``True`` when the pong came. When it did not, the connection is aborted (close
        recorded as ``1006``, ``"no pong within N s"``) and ``False`` is returned; ``False`` also
        when the connection is already closed. Cancelling it cancels the wait.
        """
        if self.closed is not None:
            await trio.lowlevel.checkpoint()
            return False
        with trio.move_on_after(pong_timeout) as timer:
            try:
                await self._connection.ping()
            except trio_websocket.ConnectionClosed:
                return False
        if not timer.cancelled_caught:
            return True
        if self.closed is None:
            logger.warning(
                "%s: no pong within %s s; aborting the connection", self._info.remote, pong_timeout
            )
        await self._abort(CloseReason(CloseCode.ABNORMAL, f"no pong within {pong_timeout} s"))
        return False

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``; idempotent.

        Sends the close frame and waits up to ``close_timeout`` seconds for the peer's; then, or
        when cancelled, closes the underlying stream. Codes that may not appear in a close frame
        (1005, 1006, 1015) abort the connection instead. When the peer closed first, its close
        is kept and nothing is sent. No exception escapes except ``trio.Cancelled``.
        """
        if self._closing:
            await self._close_stream()
            return
        self._closing = True
        if self.closed is None:
            self._closed = CloseReason(int(code), reason)
        try:
            if code in _NOT_SENDABLE or not 1000 <= code <= 4999:
                return
            with trio.move_on_after(self._close_timeout):
                await self._connection.aclose(int(code), _truncate_reason(reason) or None)
        finally:
            await self._close_stream()

    async def _abort(self, close: CloseReason) -> None:
        """Record ``close`` (unless already closed) and close the stream without a handshake."""
        if self.closed is None:
            self._closed = close
        self._closing = True
        await self._close_stream()

    async def _close_stream(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
        else:  # pragma: no cover - only without a stream; trio-websocket closes it on cancel
            with trio.CancelScope() as scope:
                scope.cancel()
                await self._connection.aclose()


if TYPE_CHECKING:

    def _both_are_transports(
        memory: MemoryTransport, websocket: WebSocketTransport
    ) -> tuple[Transport, Transport]:
        """Never called: makes mypy check that both classes implement the protocol."""
        return memory, websocket
