"""The transport a station connection runs over: the protocol, and in-memory pairs.

The runtime only needs four things from a connection: send a text frame, receive the next frame,
close with a code, and know how and whether it was closed. :class:`Transport` names exactly
that, so the whole runtime can be tested over :func:`memory_transport_pair` with trio's
``autojump_clock``, and served for real over
:class:`~ocpp_trio.transport.websocket.WebSocketTransport`.

Close semantics follow WebSocket (RFC 6455): after the *peer* closes, the messages it sent before
closing can still be read, then :meth:`Transport.get_message` raises; after *we* close, pending
messages are discarded. Either way, every later send or receive raises
:class:`TransportClosedError`, a :class:`~ocpp_trio.ConnectionLostError` (hence also a
``trio.BrokenResourceError``) carrying the close code and reason.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ocpp_trio.errors import TransportClosedError

__all__ = [
    "CloseCode",
    "CloseReason",
    "ConnectionInfo",
    "MemoryTransport",
    "Transport",
    "memory_transport_pair",
]


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

    ``send_message`` may be called from several tasks; each message goes out whole, in the order
    the tasks came, and each call is a trio checkpoint.  Cancelling a send never delivers part
    of a message (an implementation that cannot take a message back aborts the connection
    instead).  ``get_message`` should have one reader; cancelling it loses nothing.
    ``tests/test_transport_conformance.py`` checks every implementation against this.
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


if TYPE_CHECKING:

    def _is_a_transport(memory: MemoryTransport) -> Transport:
        """Never called: makes mypy check that the class implements the protocol."""
        return memory
