"""WebSocket connections: wsproto driven over a trio stream, the same code for both ends.

:class:`WebSocketTransport` is the :class:`~ocpp_trio.transport.base.Transport` of every real
connection: the server makes one after the upgrade (:mod:`ocpp_trio.transport.server`), the
station side after its handshake (:mod:`ocpp_trio.transport.connect`).  It owns the framing
(through wsproto's public ``WSConnection``), the close handshake and the size limit; a
:class:`Watchdog` adds keepalive pings and the send timeout.

**Reading.** There is no reader task: :meth:`WebSocketTransport.get_message` reads the socket
itself, feeds wsproto, answers pings and the peer's close, and returns the next message.  Pings
are therefore answered while some task waits in ``get_message`` (the station runtime always
does).

**Writing.** Every frame is written whole, in turn (FIFO), so frames sent by several tasks at
once never interleave and go out in the order the tasks came.  A send is a trio checkpoint.  A
cancellation before any byte of the frame is out (the task was cancelled already, or while it
waited for its turn or for room in the socket buffer) writes nothing and leaves the connection
as it was.  One that comes after part of the frame went out (only possible when the socket
buffer is full: the peer reads slowly or not at all) **aborts the connection**, since nothing
could follow that part (recorded as 1006, "send cancelled mid-frame").  Over TLS, where the
stream cannot tell how much went out, any cancellation during the write aborts.  This costs no
cancel scope per frame, where shielding every write would.  Over plain TCP the frames go
through the stream's trio socket (``SocketStream.socket``), whose every call says how much it
wrote.  When the server also hands over the connection's standard-library socket (its
listeners keep it: :mod:`ocpp_trio.transport.listen`), the send's checkpoint comes first,
before the frame is built, and the frame is then written to that socket at once: the sending
task still yields once per frame (trio's socket calls yield after the write instead), but the
frames sent in one scheduler batch leave together.  Only what the socket buffer does not take
at once waits for trio.

**Timeouts without a cancel scope per frame.** A :class:`Watchdog` task looks after any number
of connections (one per server, one per station-side connection), checking them a few times
per shortest timeout:

* *keepalive*: after ``ping_interval`` seconds in which nothing at all was received from the
  peer it sends a ping; when still nothing has come ``ping_timeout`` seconds later, the
  connection is aborted (1006, ``"no pong within N s"``).  Any frame counts as a sign of life,
  the pong as much as a message, so a busy connection is never pinged;
* *send timeout*: a frame whose write has been blocked for ``send_timeout`` seconds (the peer
  stopped reading) aborts the connection (1006, ``"send timed out after N s"``).

Aborting closes the stream, which wakes any task blocked on it.  Both limits are enforced to
within a quarter of the shortest timeout (the watchdog's tick).  The reader's and the
writer's only per-frame cost for this is a counter.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Final

import attrs
import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from ocpp_trio.errors import TransportClosedError
from ocpp_trio.transport.base import CloseCode, CloseReason, ConnectionInfo

__all__ = ["RECEIVE_SIZE", "Watchdog", "WebSocketTransport"]

logger = logging.getLogger("ocpp_trio.transport")

#: Bytes asked of the stream per read.
RECEIVE_SIZE: Final = 65536
#: Close codes that RFC 6455 reserves for reporting and forbids in a Close frame.
_NOT_SENDABLE: Final = frozenset({1005, 1006, 1015})
#: RFC 6455 limits the close reason to 123 bytes of UTF-8.
_MAX_REASON_BYTES: Final = 123
_OPEN: Final = ConnectionState.OPEN
_CLOSED: Final = ConnectionState.CLOSED


def truncate_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame can carry."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= _MAX_REASON_BYTES:
        return reason
    return encoded[:_MAX_REASON_BYTES].decode("utf-8", errors="ignore")


class WebSocketTransport:
    """A :class:`~ocpp_trio.transport.base.Transport` over an open WebSocket connection.

    Made by the server and the station-side connector once the opening handshake is done; not
    meant to be built by hand.  See the module docs for how reading, writing, cancellation and
    timeouts work.

    Args:
        stream: the TCP or TLS stream; this object closes it.
        ws: the wsproto connection, past its opening handshake.
        info: what :attr:`info` reports.
        max_message_size: the largest message accepted, in bytes (UTF-8 for text); a larger
            one fails the connection with 1009.
        close_timeout: seconds :meth:`aclose` waits for the close handshake.
        raw_socket: the standard-library socket under ``stream`` (a ``SocketStream``), when
            the caller holds it: frames are written to it directly after the send's
            checkpoint (see the module docs).

    Raises:
        ValueError: a limit out of range, or ``raw_socket`` is not the socket of ``stream``.
    """

    __slots__ = (
        "_close_done",
        "_close_timeout",
        "_closed",
        "_drained",
        "_events",
        "_finished",
        "_info",
        "_max_size",
        "_parts",
        "_pong",
        "_raw",
        "_reader_left",
        "_reading",
        "_reads",
        "_sending",
        "_size",
        "_socket",
        "_stream",
        "_stream_closed",
        "_waiters",
        "_writes",
        "_writing",
        "_ws",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        *,
        info: ConnectionInfo,
        max_message_size: int,
        close_timeout: float = 5.0,
        raw_socket: socket.socket | None = None,
    ) -> None:
        if max_message_size < 1 or close_timeout < 0:
            raise ValueError("max_message_size must be >= 1 and close_timeout >= 0")
        self._stream = stream
        # over plain TCP the frames go through the stream's trio socket (its public
        # ``socket``): each call says how much it wrote, and trio's stream wrapper is skipped
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        if raw_socket is not None and (
            self._socket is None or raw_socket.fileno() != self._socket.fileno()
        ):
            raise ValueError("raw_socket must be the socket of the SocketStream given")
        self._raw = raw_socket
        self._ws = ws
        self._info = info
        self._max_size = max_message_size
        self._close_timeout = close_timeout
        # the send turn, FIFO: whether a frame is being sent, and who waits (made when needed)
        self._sending = False
        self._waiters: trio.lowlevel.ParkingLot | None = None
        #: how the connection was closed (the first close wins)
        self._closed: CloseReason | None = None
        #: nothing more will be delivered: we closed, or the peer's close or EOF was read
        self._finished = False
        self._stream_closed = False
        self._close_done: trio.Event | None = None
        # reading: wsproto's pending events (frames that came with the handshake included)
        self._events: Iterator[Event] | None = ws.events()
        #: the pong owed for the last ping read, sent before the next read
        self._pong: Event | None = None
        self._parts: list[str | bytes] | None = None
        self._size = 0
        self._reading = False
        self._reader_left: trio.Event | None = None
        # for the watchdog: reads done, frames written, and whether one is being written
        self._reads = 0
        # the last read emptied the socket buffer: the next one waits for data first
        self._drained = True
        self._writes = 0
        self._writing = False

    @property
    def info(self) -> ConnectionInfo:
        """Who is at the other end."""
        return self._info

    @property
    def closed(self) -> CloseReason | None:
        """How the connection was closed, or ``None`` while it is open.

        A close we started reports our code and reason; a close the peer started reports the
        peer's (1005 when its close frame had no code); a connection that ended without a close
        handshake reports 1006; a message over the size limit 1009; a malformed frame the code
        wsproto failed it with (1002, 1007).
        """
        return self._closed

    def _lost(self) -> TransportClosedError:
        close = self._closed or CloseReason(CloseCode.ABNORMAL)
        return TransportClosedError(close.code, close.reason)

    def _record(self, close: CloseReason) -> None:
        if self._closed is None:
            self._closed = close

    # -- sending ---------------------------------------------------------------------------------

    async def send_message(self, message: str) -> None:
        """Send one text frame.

        Waits for the frames sent before it (FIFO) and for this one to be written to the
        socket.  A checkpoint.  Cancelled before any byte is out, it writes nothing; cancelled
        after part of the frame went out, it aborts the connection (see the module docs).  A
        write blocked for ``send_timeout`` (the peer does not read) is aborted by the
        watchdog.

        Raises:
            TransportClosedError: the connection was closed before or during the send.
        """
        await self._send_event(TextMessage(data=message), ours=True)

    async def send_ping(self) -> None:
        """Send a ping (the watchdog's keepalive); nothing once the connection is closing."""
        await self._send_control(Ping())

    async def _send_control(self, event: Event) -> None:
        """A ping, pong or close frame; nothing if the connection can no longer carry it."""
        with contextlib.suppress(TransportClosedError):
            await self._send_event(event, ours=False)

    async def _send_event(self, event: Event, *, ours: bool) -> None:
        """Build ``event``'s frame and write it whole, in turn.

        The frame is built in turn, so that nothing is ever written after our close frame.
        ``ours``: the caller's own message, refused when the connection is closed (control
        frames are dropped silently instead).
        """
        if self._sending:  # wait for our turn; the sender before hands it over
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = trio.lowlevel.ParkingLot()
            await waiters.park()
        else:
            self._sending = True
        try:
            if self._raw is None:
                await trio.lowlevel.checkpoint_if_cancelled()  # the write yields after
            else:
                await trio.lowlevel.checkpoint()  # before the frame exists: the write won't
            data = None
            if not self._stream_closed and not (ours and self._closed is not None):
                # LocalProtocolError: closing, and wsproto sends nothing after a close frame
                with contextlib.suppress(LocalProtocolError):
                    data = self._ws.send(event)
            if data is None:
                await trio.lowlevel.checkpoint()
                if ours:
                    raise self._lost()
                return
            self._writing = True
            self._writes += 1
            try:
                await self._write(data)
            finally:
                self._writing = False
        finally:
            waiters = self._waiters
            if waiters:
                waiters.unpark()  # the turn goes to the next sender, in order
            else:
                self._sending = False

    async def _write(self, data: bytes) -> None:
        """Write one whole frame; the caller has the turn.

        A cancellation before any byte is out leaves the connection as it was; one that comes
        later (the socket buffer was full) leaves part of the frame on the wire, after which
        nothing can follow: the connection is aborted.  Over TLS, where the stream cannot say
        how much went out, any cancellation aborts.
        """
        sent = 0
        try:
            sock = self._socket
            if sock is None:
                sent = -1  # unknown
                await self._stream.send_all(data)
                return
            raw = self._raw
            if raw is None:
                sent = await sock.send(data)  # usually the whole frame, in one call
            else:
                try:
                    sent = raw.send(data)  # the checkpoint was taken before the frame was built
                except BlockingIOError:
                    sent = 0
            if sent < len(data):
                with memoryview(data) as view:
                    while sent < len(data):
                        sent += await sock.send(view[sent:])
        except trio.Cancelled:
            if sent:
                await self._abort(CloseReason(CloseCode.ABNORMAL, "send cancelled mid-frame"))
            raise
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._abort(CloseReason(CloseCode.ABNORMAL, "connection lost while sending"))
            raise self._lost() from None

    # -- receiving -------------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """Wait for the next message (``bytes`` for a binary frame).

        Reads the socket itself, answering pings and the peer's close on the way.  Messages
        the peer sent before its close are still returned; after our own close nothing is.  A
        checkpoint; cancelling it loses no message.  One task may wait here at a time.

        Raises:
            TransportClosedError: the connection is closed and nothing is left to read (1009
                when the peer sent a message over the size limit).
            trio.BusyResourceError: another task is already waiting here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._finished:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise self._lost()
        if self._reading:
            raise trio.BusyResourceError("another task is already waiting for a message")
        self._reading = True
        try:
            return await self._next_message()
        finally:
            self._reading = False
            left = self._reader_left
            if left is not None:
                self._reader_left = None
                left.set()

    async def _next_message(self) -> str | bytes:
        """The loop of :meth:`get_message`: events until a whole message, reading as needed."""
        ws = self._ws
        did_read = False
        while True:
            events = self._events
            event = None if events is None else next(events, None)
            if event is None:
                self._events = None
                pong = self._pong
                if pong is not None:  # the pings of the last read, answered once
                    await self._send_control(pong)
                    self._pong = None
                data = await self._receive()
                did_read = True
                ws.receive_data(data)
                self._events = ws.events()
                continue
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self._finished:
                    continue  # we are closing: what comes now is dropped
                piece: str | bytes
                if kind is TextMessage:
                    assert isinstance(event, TextMessage)
                    piece = event.data
                    self._size += len(piece) if piece.isascii() else len(piece.encode())
                else:
                    assert isinstance(event, BytesMessage)
                    piece = bytes(event.data)
                    self._size += len(piece)
                if self._size > self._max_size:
                    await self._fail(
                        CloseCode.MESSAGE_TOO_BIG, f"message over {self._max_size} bytes"
                    )
                    raise self._lost()
                parts = self._parts
                if not event.message_finished:
                    if parts is None:
                        self._parts = [piece]
                    else:
                        parts.append(piece)
                    continue
                if parts is not None:
                    parts.append(piece)
                    piece = _join(parts)
                    self._parts = None
                self._size = 0
                if not did_read:  # a message already read: still a scheduling point
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return piece
            if kind is Ping:
                assert isinstance(event, Ping)
                if ws.state is _OPEN:
                    # answered once what this read brought is processed, and only the last
                    # ping of it (RFC 6455 5.5.3): a flood of pings costs one pong per read
                    self._pong = event.response()
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                await self._on_close_event(event)
                raise self._lost()
            # a Pong: reading it was the sign of life the watchdog looks for

    async def _receive(self) -> bytes:
        """Read from the stream; at its end, record 1006 and raise."""
        data: bytes | bytearray
        try:
            raw = self._raw
            if raw is not None and self._drained:
                # nothing was left to read: wait for data, then read it, without trying a
                # read that would only fail (the wait is the checkpoint)
                while True:
                    await trio.lowlevel.wait_readable(raw)
                    try:
                        data = raw.recv(RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    break
            else:
                sock = self._socket
                if sock is None:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                else:
                    data = await sock.recv(RECEIVE_SIZE)
            self._drained = len(data) < RECEIVE_SIZE
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._record(CloseReason(CloseCode.ABNORMAL))
            self._finished = True
            await self._close_stream()
            raise self._lost()
        self._reads += 1
        return data if type(data) is bytes else bytes(data)

    async def _on_close_event(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer closes: answer, then hang up
            self._record(CloseReason(event.code, event.reason or ""))
            self._finished = True
            await self._send_control(event.response())
            await self._close_stream()
        elif state is _CLOSED:  # the peer's answer to our close
            self._finished = True
            await self._close_stream()
        else:  # wsproto failed the connection: a malformed frame, bad UTF-8, a deflate bomb
            reason = event.reason or ""
            if event.code == CloseCode.MESSAGE_TOO_BIG:
                reason = f"message over {self._max_size} bytes"
            await self._fail(event.code, reason)

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame if we still may, then hang up."""
        logger.debug("%s: failing the connection: %s %s", self._info.remote, code, reason)
        self._record(CloseReason(code, reason))
        self._finished = True
        if self._ws.state is _OPEN:
            await self._send_control(CloseConnection(code, truncate_reason(reason)))
        await self._close_stream()

    # -- closing ---------------------------------------------------------------------------------

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``; idempotent.

        Sends the close frame and waits for the peer's, for at most ``close_timeout`` seconds
        in all; then, or when cancelled, closes the stream.  Codes a close frame may not carry
        (1005, 1006, 1015) close the stream at once.  When the peer closed first, its close is
        kept and nothing is sent.  A second call waits for the first to finish.  No exception
        escapes except ``trio.Cancelled``.
        """
        if self._close_done is not None:
            await self._close_done.wait()
            return
        done = self._close_done = trio.Event()
        try:
            self._record(CloseReason(int(code), reason))
            self._finished = True
            if self._ws.state is _OPEN and code not in _NOT_SENDABLE and 1000 <= code <= 4999:
                with trio.move_on_after(self._close_timeout):
                    await self._send_control(CloseConnection(int(code), truncate_reason(reason)))
                    await self._await_close_reply()
        finally:
            try:
                await self._close_stream()
            finally:
                done.set()

    async def _await_close_reply(self) -> None:
        """Read until the peer's close frame (or the end of the stream); a task waiting in
        :meth:`get_message` reads for us while it is there."""
        ws = self._ws
        while ws.state is not _CLOSED and not self._stream_closed:
            if self._reading:
                left = self._reader_left = trio.Event()
                await left.wait()
                continue
            self._reading = True
            try:
                events = self._events
                event = None if events is None else next(events, None)
                if event is None:
                    self._events = None
                    ws.receive_data(await self._receive())
                    self._events = ws.events()
                elif type(event) is CloseConnection:
                    return  # the answer (state CLOSED), or a malformed frame: stop waiting
            except TransportClosedError:
                return
            finally:
                self._reading = False

    async def _abort(self, close: CloseReason) -> None:
        """Record ``close`` (unless closed already) and close the stream without a handshake."""
        self._record(close)
        self._finished = True
        with trio.CancelScope(shield=True):
            await self._close_stream()

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            await trio.aclose_forcefully(self._stream)


def _join(parts: list[str | bytes]) -> str | bytes:
    """The pieces of one message, all ``str`` or all ``bytes``, made one."""
    if isinstance(parts[0], str):
        return "".join(p for p in parts if isinstance(p, str))
    return b"".join(p for p in parts if isinstance(p, bytes))


@attrs.define
class _Watch:
    """What the watchdog last saw of one connection."""

    heard_at: float
    reads: int = -1
    writes: int = -1
    write_seen_at: float = 0.0
    ping_sent_at: float | None = None


class Watchdog:
    """Keepalive pings and send timeouts for any number of connections, with one task.

    Run it (``await nursery.start(watchdog.run)``), then :meth:`watch` each connection while it
    is open and :meth:`unwatch` it after.  See the module docs for what it does.

    Args:
        ping_interval: seconds without anything received before a ping; ``0``: no pings.
        ping_timeout: seconds after the ping before the connection is aborted.
        send_timeout: seconds a frame's write may stay blocked before the connection is
            aborted.
    """

    def __init__(self, *, ping_interval: float, ping_timeout: float, send_timeout: float) -> None:
        if ping_interval < 0 or ping_timeout <= 0 or send_timeout <= 0:
            raise ValueError("ping_interval must be >= 0, ping_timeout and send_timeout > 0")
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.send_timeout = send_timeout
        shortest = min(send_timeout, ping_interval, ping_timeout) if ping_interval else send_timeout
        #: seconds between two checks
        self.tick = max(shortest / 4, 0.005)
        self._watched: dict[WebSocketTransport, _Watch] = {}
        self._retiring = False

    def watch(self, transport: WebSocketTransport) -> None:
        """Look after ``transport`` from now on."""
        self._watched[transport] = _Watch(heard_at=trio.current_time())

    def unwatch(self, transport: WebSocketTransport) -> None:
        """Stop looking after ``transport``."""
        self._watched.pop(transport, None)

    def retire(self) -> None:
        """Let :meth:`run` return once no connection is watched any more."""
        self._retiring = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check the watched connections every :attr:`tick` seconds, until cancelled (or, after
        :meth:`retire`, until none is left).  Pings are sent from short tasks of its own."""
        async with trio.open_nursery() as pings:
            task_status.started()
            while not (self._retiring and not self._watched):
                await trio.sleep(self.tick)
                now = trio.current_time()
                for transport, watch in list(self._watched.items()):
                    await self._check(pings, transport, watch, now)

    async def _check(
        self, pings: trio.Nursery, transport: WebSocketTransport, watch: _Watch, now: float
    ) -> None:
        if transport._finished:
            return
        if transport._reads != watch.reads:  # something came: the peer is alive
            watch.reads = transport._reads
            watch.heard_at = now
            watch.ping_sent_at = None
        if transport._writing:
            if transport._writes != watch.writes:
                watch.writes = transport._writes
                watch.write_seen_at = now
            elif now - watch.write_seen_at >= self.send_timeout:
                await self._abort(transport, f"send timed out after {self.send_timeout} s")
                return
        if not self.ping_interval:
            return
        if watch.ping_sent_at is not None:
            if now - watch.ping_sent_at >= self.ping_timeout:
                await self._abort(transport, f"no pong within {self.ping_timeout} s")
        elif now - watch.heard_at >= self.ping_interval:
            watch.ping_sent_at = now
            pings.start_soon(transport.send_ping)

    @staticmethod
    async def _abort(transport: WebSocketTransport, why: str) -> None:
        logger.warning("%s: %s; aborting the connection", transport.info.remote, why)
        await transport._abort(CloseReason(CloseCode.ABNORMAL, why))
