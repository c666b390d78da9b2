"""Lifecycle events, exchange records, and a bounded broadcast that never blocks a station.

Slow-subscriber policy: every subscriber has its own bounded buffer.  Publishing never waits:
when a subscriber's buffer is full the event is dropped *for that subscriber* and counted
(:attr:`Subscription.dropped`, and the broadcaster's :meth:`Broadcast.statistics`).  A station
is therefore never slowed down by whoever listens to it; a subscriber that must see every event
should size its buffer for its bursts and keep up.
"""

from __future__ import annotations

import datetime
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

import attrs
import trio

from ocpp_trio.errors import OCPPError
from ocpp_trio.messages._base import Direction, Message, Response
from ocpp_trio.protocol.rpc import RpcStatistics
from ocpp_trio.protocol.supervisor import RegistrationStatus, StationState
from ocpp_trio.protocol.version import Version

__all__ = [
    "Accepted",
    "BootAnswered",
    "Broadcast",
    "BroadcastStatistics",
    "Connected",
    "DisconnectReason",
    "Disconnected",
    "Exchange",
    "ExtraHandler",
    "ExtraHandlerRunner",
    "MachinesStatistics",
    "StationEvent",
    "StationStatistics",
    "Subscription",
]

log = logging.getLogger("ocpp_trio")
T = TypeVar("T")


class Identified(Protocol):
    """Anything with a station identity: what an extra handler's peer must have (the log
    lines name it); the CSMS's is the :class:`~ocpp_trio.Station`."""

    @property
    def identity(self) -> str:
        """The station's identity."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen(kw_only=True)
class Connected:
    """A station connected (after the WebSocket upgrade and version negotiation).

    ``resumed`` is true when the station was accepted before and starts out accepted
    without a new BootNotification.
    """

    identity: str
    version: Version
    resumed: bool = False
    at: datetime.datetime = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class BootAnswered:
    """A BootNotification was answered (by the handler, or repeated for an early retry)."""

    identity: str
    version: Version
    status: RegistrationStatus
    interval: int
    request: Message
    at: datetime.datetime = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class Accepted:
    """The station is Accepted: after an Accepted boot answer, or ``resumed`` on reconnect."""

    identity: str
    version: Version
    resumed: bool = False
    at: datetime.datetime = attrs.field(factory=_now)


class DisconnectReason(enum.Enum):
    """Why a station's connection ended."""

    #: the station (or the network) closed the connection
    CLOSED_BY_PEER = "closed by peer"
    #: the application or the CSMS closed it (``station.aclose()``, shutdown)
    CLOSED_BY_US = "closed by us"
    #: a newer connection for the same identity replaced this one
    REPLACED = "replaced"


@attrs.frozen(kw_only=True)
class Disconnected:
    """A station's connection ended; ``detail`` is free text (close code and reason);
    ``last_seen_at`` is when its last frame came (``None`` if it sent none)."""

    identity: str
    version: Version
    reason: DisconnectReason
    detail: str = ""
    at: datetime.datetime = attrs.field(factory=_now)
    last_seen_at: datetime.datetime | None = None


StationEvent = Connected | BootAnswered | Accepted | Disconnected


@attrs.frozen(kw_only=True)
class Exchange:
    """One finished CALL (either direction) or SEND, as shown to extra handlers.

    Attributes:
        identity: the station.
        version: the OCPP version of the connection.
        direction: ``STATION_TO_CSMS`` for the station's CALLs and SENDs, ``CSMS_TO_STATION``
            for ours.
        message_id: the frame's message id.
        action: the action name.
        request: the decoded request (or SEND message).
        response: the CALLRESULT payload, when the exchange succeeded.
        error: what went wrong instead: a :class:`~ocpp_trio.CallError` for a CALLERROR (sent
            or received), or another ocpp-trio error (timeout, connection lost, invalid reply).
            ``None`` with ``response`` ``None`` means a SEND.
        started: trio time the request was received or sent.
        finished: trio time the answer was sent or received.
    """

    identity: str
    version: Version
    direction: Direction
    message_id: str
    action: str
    request: Message
    response: Response | None = None
    error: OCPPError | None = None
    started: float
    finished: float

    @property
    def ok(self) -> bool:
        """Whether the exchange ended with a CALLRESULT (or was a SEND)."""
        return self.error is None


@attrs.frozen(kw_only=True)
class MachinesStatistics:
    """Counters of a station's machines (EVSE, transaction and report tasks).

    The ``*_tasks`` fields count tasks alive now: after the station closes they are all 0.
    """

    evse_tasks: int
    transaction_tasks: int
    report_tasks: int
    #: messages (ours and the station's) the machines looked at
    observations: int
    #: 2.x TransactionEvents (and 1.6 messages) received again and ignored
    duplicate_events: int
    #: report parts that arrived after their report had finished
    late_report_parts: int
    #: transactions open (including those waiting for late events)
    open_transactions: int
    #: reports in progress
    open_reports: int
    #: EVSEs, transactions and reports not tracked: the station went past
    #: :class:`~ocpp_trio.runtime.machines.MachinesConfig`'s limits
    over_limit: int = 0


@attrs.frozen(kw_only=True)
class StationStatistics:
    """A snapshot of one station connection's counters and state."""

    identity: str
    version: Version
    state: StationState
    status: RegistrationStatus | None
    connected: bool
    #: station CALLs that decoded and reached the runtime
    calls_received: int
    #: station CALLs refused by the registration rules (SecurityError) or the full queue
    calls_refused: int
    #: station CALLs answered by the application's handlers (CALLRESULT or chosen CALLERROR)
    calls_handled: int
    #: InternalError answers: handler exceptions, wrong return types, invalid responses
    handler_errors: int
    heartbeats_answered: int
    #: our CALLs sent, and how they ended
    calls_sent: int
    calls_timed_out: int
    calls_failed: int
    #: exchanges not delivered to an extra handler because its channel was full
    extra_dropped: int
    #: exceptions raised by this station's own extra handlers
    extra_errors: int
    #: trio time and wall time of the last frame received, ``None`` before the first
    last_seen: float | None
    last_seen_at: datetime.datetime | None
    rpc: RpcStatistics
    #: the station's EVSE, transaction and report machines
    machines: MachinesStatistics | None = None
    #: station CALLs waiting for the handler runner now (not counting the one it runs)
    handler_queue: int = 0
    #: times reading paused because the station sent faster than
    #: ``StationConfig.max_message_rate``, and the seconds those pauses took
    throttled: int = 0
    throttled_seconds: float = 0.0


@attrs.frozen
class BroadcastStatistics:
    """Counters of a :class:`Broadcast`."""

    subscribers: int
    published: int
    dropped: int


class Subscription(Generic[T]):
    """One subscriber's view of a :class:`Broadcast`: iterate it with ``async for``.

    The iteration ends when the broadcaster closes.  ``dropped`` counts events this subscriber
    missed because its buffer was full.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[T]) -> None:
        self._receive = receive
        self.dropped = 0

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> T:
        """Wait for the next event.

        Waits for: an event, or the broadcaster to close.  Cancellation: safe (no event is
        lost).  Closes: nothing.

        Raises:
            trio.EndOfChannel: the broadcaster closed and every buffered event was read.
        """
        return await self._receive.receive()


class Broadcast(Generic[T]):
    """Fan-out of events to any number of subscribers, each with its own bounded buffer.

    :meth:`publish` never blocks (see the module docstring for the drop policy).
    """

    def __init__(self, *, name: str = "events") -> None:
        self._name = name
        self._subscribers: dict[
            Subscription[T], tuple[trio.MemorySendChannel[T], Callable[[T], bool] | None]
        ] = {}
        self._closed = False
        self._published = 0
        self._dropped = 0

    def publish(self, item: T) -> None:
        """Hand ``item`` to every subscriber that has room; count the others as dropped."""
        self._published += 1
        for subscription, (send, accept) in self._subscribers.items():
            if accept is not None and not accept(item):
                continue
            try:
                send.send_nowait(item)
            except trio.WouldBlock:
                subscription.dropped += 1
                self._dropped += 1
                if subscription.dropped == 1 or subscription.dropped % 1000 == 0:
                    log.warning(
                        "%s subscriber too slow: %d event(s) dropped so far",
                        self._name,
                        subscription.dropped,
                    )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    @asynccontextmanager
    async def subscribe(
        self, *, buffer: int = 64, accept: Callable[[T], bool] | None = None
    ) -> AsyncIterator[Subscription[T]]:
        """Subscribe for the duration of the ``async with`` block.

        ``accept`` filters what reaches this subscriber (events it refuses take no room in its
        buffer and are not counted as dropped).

        Waits for: nothing.  Cancellation: nothing to cancel.  Closes: the subscription's
        channels on exit.  If the broadcaster is already closed the subscription is empty
        (iteration ends at once).
        """
        send, receive = trio.open_memory_channel[T](buffer)
        subscription = Subscription(receive)
        async with send, receive:
            if self._closed:
                await send.aclose()
            else:
                self._subscribers[subscription] = (send, accept)
            try:
                yield subscription
            finally:
                self._subscribers.pop(subscription, None)

    def close(self) -> None:
        """End every subscriber's iteration (after the events already buffered).  Idempotent."""
        self._closed = True
        for send, _accept in self._subscribers.values():
            send.close()
        self._subscribers.clear()

    def statistics(self) -> BroadcastStatistics:
        """Subscriber count and totals of published and dropped events."""
        return BroadcastStatistics(len(self._subscribers), self._published, self._dropped)


PeerT = TypeVar("PeerT", bound=Identified)

#: An extra handler: observes the finished exchanges of a peer (the CSMS's: a
#: :class:`~ocpp_trio.Station`); its return value is ignored.
ExtraHandler = Callable[[PeerT, Exchange], Awaitable[None]]


class ExtraHandlerRunner(Generic[PeerT]):
    """One extra handler and its bounded channel (used by stations and by the CSMS)."""

    def __init__(
        self,
        handler: ExtraHandler[PeerT],
        *,
        buffer: int,
        max_failures: int,
        name: str | None = None,
    ) -> None:
        self.handler = handler
        self.name = name or getattr(handler, "__qualname__", repr(handler))
        self.max_failures = max_failures
        self._send, self._receive = trio.open_memory_channel[tuple[PeerT, Exchange]](buffer)
        self.consecutive_failures = 0
        self.errors = 0
        self.dropped = 0
        self.handled = 0
        self.removed = False

    def offer(self, station: PeerT, exchange: Exchange) -> bool:
        """Queue ``exchange`` without waiting; ``False`` when it was dropped (channel full)."""
        if self.removed:
            return True
        try:
            self._send.send_nowait((station, exchange))
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "extra handler %s too slow: %d exchange(s) dropped", self.name, self.dropped
                )
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return True

    async def run(self) -> None:
        """Feed the handler, one exchange at a time.

        Waits for: cancellation (of the nursery it runs in), or its removal after
        ``max_failures`` consecutive failures.  Closes: its channel, on exit.
        Exceptions: none; the handler's exceptions are logged.
        """
        async with self._receive, self._send:
            async for station, exchange in self._receive:
                try:
                    await self.handler(station, exchange)
                except Exception:
                    self.errors += 1
                    self.consecutive_failures += 1
                    log.exception(
                        "station %r: extra handler %s failed on %s",
                        station.identity,
                        self.name,
                        exchange.action,
                    )
                else:
                    self.consecutive_failures = 0
                    self.handled += 1
                if self.max_failures and self.consecutive_failures >= self.max_failures:
                    log.error(
                        "extra handler %s removed after %d consecutive failures",
                        self.name,
                        self.consecutive_failures,
                    )
                    self.removed = True
                    return
