"""TCP listeners that keep each accepted connection's own socket object.

trio's listeners hand out a :class:`trio.SocketStream` whose socket is a trio socket; a write
through it yields to the scheduler *after* the bytes are out, so each answer leaves the moment
its task runs, one at a time between the scheduler's I/O polls.  :class:`SocketListener`
accepts the connections itself, on a listening socket it owns, and keeps the standard-library
socket of each one (:meth:`SocketListener.raw_socket`) next to the ``SocketStream`` that wraps
it (through trio's public ``from_stdlib_socket``).  The WebSocket transport then takes its
send checkpoint *before* building a frame and writes the frame to that socket without yielding
again: a send still yields once, but the frames of the tasks that run in one scheduler batch
are written together, and the peer reads them together (``scripts/bench_server.py`` shows less
CPU per call on both ends).

The listening sockets are the ones :func:`trio.open_tcp_listeners` makes (same addresses,
options and backlog); each is detached from its trio wrapper, so this module owns it.  Accept
errors are treated as trio's own listener treats them: the closed-socket ones end the
listener, the ones that only concern the one connection are skipped, and the rest (such as
``EMFILE``) are raised for :func:`trio.serve_listeners`, which waits and retries.
"""

from __future__ import annotations

import errno
import socket
import weakref
from typing import Final

import trio

__all__ = ["SocketListener", "open_socket_listeners"]

#: accept(2) errors that mean the listening socket itself is gone
_CLOSED: Final = frozenset({errno.EBADF, errno.ENOTSOCK})
#: accept(2) errors about the one connection being accepted (trio skips the same ones)
_SKIPPED: Final = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)


class SocketListener(trio.abc.Listener[trio.SocketStream]):
    """A listener on a listening socket it owns; see the module docs.

    Args:
        sock: a bound, listening standard-library socket; the listener closes it.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket: Final = sock
        self._closed = False
        # accepted trio socket -> its standard-library socket, for as long as the first lives
        self._raw: weakref.WeakKeyDictionary[trio.socket.SocketType, socket.socket] = (
            weakref.WeakKeyDictionary()
        )

    async def accept(self) -> trio.SocketStream:
        """The next connection (a checkpoint).

        Raises:
            trio.ClosedResourceError: the listener is closed.
            OSError: accept(2) failed for a reason beyond the one connection (such as
                ``EMFILE``); the listener can be used again.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled accept takes nothing
        sock = self.socket
        while True:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the listener is closed")
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                if exc.errno in _CLOSED:
                    raise trio.ClosedResourceError("the listener is closed") from None
                if exc.errno in _SKIPPED:
                    await trio.lowlevel.checkpoint()
                    continue
                raise
            await trio.lowlevel.cancel_shielded_checkpoint()
            conn.setblocking(False)
            wrapped = trio.socket.from_stdlib_socket(conn)
            self._raw[wrapped] = conn
            return trio.SocketStream(wrapped)

    def raw_socket(self, stream: trio.abc.Stream) -> socket.socket | None:
        """The standard-library socket under ``stream``, if this listener accepted it (and
        it is a plain ``SocketStream``); ``None`` otherwise."""
        if isinstance(stream, trio.SocketStream):
            return self._raw.get(stream.socket)
        return None

    async def aclose(self) -> None:
        """Stop listening: a task blocked in :meth:`accept` gets ``ClosedResourceError``."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()


async def open_socket_listeners(
    port: int, *, host: str | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """:func:`trio.open_tcp_listeners`, as :class:`SocketListener` objects.

    Raises:
        OSError: as :func:`trio.open_tcp_listeners` (binding failed).
    """
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    return [SocketListener(socket.socket(fileno=each.socket.detach())) for each in listeners]
