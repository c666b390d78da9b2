"""The charge point's offline queue: transaction messages, sent in order, never lost to a
dropped connection.

:class:`OfflineQueue` is a bounded channel of messages and the **flusher** that drains it: it
waits until its owner is connected and accepted, sends the head message, and goes on to the
next only once the CSMS has answered it (or it was given up).  A lost connection is not an
attempt: the message is sent again after the reconnect.  A CALLERROR, an invalid answer or no
answer in time is one; after ``attempts`` of those the message is given up (its handle fails
with the last error) and the queue moves on, as OCPP's ``MessageAttempts`` says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import attrs
import trio

from ocpp_trio.client.config import QueuedMessage
from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    LocalProtocolError,
    RemoteProtocolError,
)
from ocpp_trio.messages._base import Request, Response

__all__ = ["OfflineQueue"]

log = logging.getLogger("ocpp_trio.client")
R = TypeVar("R", bound=Response)

_TRANSIENT: Final = (CallError, CallTimeoutError, RemoteProtocolError)

#: Sends one request and returns its answer (the charge point's ``call``).
CallFunction = Callable[[Request[Any]], Awaitable[Response]]


@attrs.define(eq=False)
class _Item:
    message: Request[Any] | Callable[[], Request[Any]]
    handle: QueuedMessage[Any]


class OfflineQueue:
    """A bounded, ordered queue of transaction messages and its flusher.

    Args:
        name: for the log (the station identity).
        size: messages it holds; :meth:`put` waits for room beyond that.
        attempts: how often a message is sent before it is given up.
        attempt_interval: seconds between two attempts.
        on_change: called whenever :attr:`pending` changes.
    """

    def __init__(
        self,
        name: str,
        *,
        size: int,
        attempts: int,
        attempt_interval: float,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._name = name
        self._on_change = on_change
        self._attempts = attempts
        self._attempt_interval = attempt_interval
        self._send, self._receive = trio.open_memory_channel[_Item](size)
        #: messages queued and not yet answered or given up
        self.pending = 0
        #: messages given up after ``attempts``
        self.given_up = 0

    async def put(
        self, message: Request[R] | Callable[[], Request[R]], *, offline: bool
    ) -> QueuedMessage[R]:
        """Queue ``message`` (a request, or a function building it at send time).

        Waits for: room in the queue.  Cancellation: nothing is queued.

        Raises:
            ConnectionLostError: the queue is closed (its owner stopped).
        """
        action = message.ACTION if isinstance(message, Request) else "?"
        handle: QueuedMessage[R] = QueuedMessage(action, offline=offline)
        try:
            await self._send.send(_Item(message, handle))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLostError(f"{self._name}: the charge point has stopped") from None
        self.pending += 1
        self._on_change()
        return handle

    def close(self) -> None:
        """Stop taking messages and fail every queued one with ``ConnectionLostError``;
        idempotent and never blocks."""
        self._send.close()
        stopped = ConnectionLostError(f"{self._name}: the charge point has stopped")
        while True:
            try:
                item = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            self.pending -= 1
            item.handle._fail(stopped)
        self._receive.close()

    async def run(
        self,
        call: CallFunction,
        wait_ready: Callable[[], Awaitable[None]],
    ) -> None:
        """The flusher: deliver the messages one by one, in order, until cancelled.

        Args:
            call: sends one request and returns the answer (raising as ``ChargePoint.call``).
            wait_ready: waits until the owner is connected and accepted.

        Waits for: cancellation.  Cancellation: the message being sent fails with
        ``ConnectionLostError`` unless it was answered.
        """
        try:
            async for item in self._receive:
                try:
                    await self._deliver(item, call, wait_ready)
                finally:
                    self.pending -= 1
                    self._on_change()
                    if not item.handle.done():
                        item.handle._fail(
                            ConnectionLostError(f"{self._name}: the charge point has stopped")
                        )
        except trio.ClosedResourceError:
            return

    async def _deliver(
        self,
        item: _Item,
        call: CallFunction,
        wait_ready: Callable[[], Awaitable[None]],
    ) -> None:
        handle = item.handle
        request: Request[Any] | None = None
        attempts = 0
        while True:
            await wait_ready()
            if request is None:
                try:
                    request = item.message() if callable(item.message) else item.message
                except Exception as exc:
                    log.warning("%s: a queued message could not be built: %r", self._name, exc)
                    handle._fail(exc)
                    return
                handle.action = request.ACTION
            sent = request
            if handle.offline and hasattr(sent, "offline"):
                # 2.x TransactionEvent: it happened while the station was offline
                sent = attrs.evolve(cast(Any, sent), offline=True)
            try:
                response = await call(sent)
            except ConnectionLostError:
                continue  # not an attempt: sent again once reconnected
            except LocalProtocolError as exc:
                log.warning("%s: queued %s cannot be sent: %s", self._name, sent.ACTION, exc)
                handle._fail(exc)
                return
            except _TRANSIENT as exc:
                attempts += 1
                if attempts >= self._attempts:
                    self.given_up += 1
                    log.warning(
                        "%s: gave up queued %s after %d attempts: %s",
                        self._name,
                        sent.ACTION,
                        attempts,
                        exc,
                    )
                    handle._fail(exc)
                    return
                await trio.sleep(self._attempt_interval)
                continue
            handle._resolve(response)
            return
