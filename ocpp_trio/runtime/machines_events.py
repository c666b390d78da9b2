"""Typed subscriptions to the machines' events (:mod:`ocpp_trio.domain.events`) and the
station lifecycle events (:mod:`ocpp_trio.runtime.events`).

The slow-subscriber policy is the runtime's: each subscriber has a bounded buffer; when it is
full, events are dropped *for that subscriber* and counted (``subscription.dropped``); the
station is never slowed down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar, cast

from ocpp_trio.domain.events import MachineEvent
from ocpp_trio.runtime.events import (
    Accepted,
    BootAnswered,
    Broadcast,
    Connected,
    Disconnected,
    StationEvent,
    Subscription,
)

__all__ = ["AnyEvent", "subscribe_to"]

_LIFECYCLE = (Connected, BootAnswered, Accepted, Disconnected)
#: anything a subscription may deliver
AnyEvent = MachineEvent | Connected | BootAnswered | Accepted | Disconnected
E = TypeVar("E", bound=AnyEvent)


def subscribe_to(
    kind: type[E],
    *,
    machine_events: Broadcast[MachineEvent],
    lifecycle: Broadcast[StationEvent] | None,
    identity: str | None,
    buffer: int,
) -> AbstractAsyncContextManager[Subscription[E]]:
    """A subscription to the events of type ``kind`` (and its subclasses), optionally of one
    station only.  Lifecycle kinds (:class:`~ocpp_trio.runtime.events.Connected`, ...) come from
    ``lifecycle``, the others from ``machine_events``.

    Raises:
        TypeError: ``kind`` is not an event class.
    """
    if issubclass(kind, MachineEvent):
        source: Broadcast[MachineEvent] | Broadcast[StationEvent] = machine_events
    elif issubclass(kind, _LIFECYCLE) and lifecycle is not None:
        source = lifecycle
    else:
        raise TypeError(f"{kind!r} is not an event class one can subscribe to")

    def accept(event: object) -> bool:
        return isinstance(event, kind) and (
            identity is None or getattr(event, "identity", None) == identity
        )

    @asynccontextmanager
    async def subscription() -> AsyncIterator[Subscription[E]]:
        async with source.subscribe(buffer=buffer, accept=accept) as sub:
            yield cast(Subscription[E], sub)

    return subscription()
