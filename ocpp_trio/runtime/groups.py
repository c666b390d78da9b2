"""The ExceptionGroup policy of the ``open_*`` managers, and a helper for nursery groups.

Every ``open_*`` async context manager of the library (``open_csms``, ``open_charge_point``)
is :func:`open_service` around the matching ``start_*`` function, so they all treat errors
alike:

* the exception of the ``async with`` body comes out unwrapped, as if there were no nursery;
* a failure of the service's own background tasks becomes one library error (``CSMSError``,
  ``ChargePointError``) raised ``from`` the nursery's group, also when the body failed at the
  same time (the group then holds both);
* an error while starting (e.g. ``OSError``: the port is taken) is raised as is;
* cancellation passes through untouched, and so do ``KeyboardInterrupt`` and friends (never
  wrapped in a library error); one that ended a background task comes out alone, without the
  body's exception (which is then mostly the service stopping under it, e.g. a
  ``ConnectionLostError`` from ``cp.wait_accepted()``), so that Ctrl-C ends a program as
  ``except* KeyboardInterrupt`` around ``trio.run`` expects.

``serve_*`` and ``start_*`` let groups propagate: their caller owns the nursery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

__all__ = ["leaves", "open_service", "resolve_group", "single_failure"]

T = TypeVar("T")


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (``[exc]`` itself when it is not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def single_failure(exc: BaseException) -> BaseException | None:
    """The one exception in ``exc`` besides cancellations, or ``None``."""
    found = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)]
    return found[0] if len(found) == 1 else None


def resolve_group(
    group: BaseExceptionGroup[BaseException],
    *,
    own: BaseException | None,
    startup: BaseException | None,
    error: Callable[[], Exception],
) -> BaseException | None:
    """What an ``open_*`` manager raises for the nursery's ``group`` (``None``: the group
    itself), given the body's exception ``own`` and the exception that ended the start
    ``startup``; ``error`` makes the library error for a background failure."""
    # split() derives new group objects: compare leaf exceptions, which stay the same
    expected = {id(leaf) for e in (own, startup) if e is not None for leaf in leaves(e)}
    others = [
        e for e in leaves(group) if id(e) not in expected and not isinstance(e, trio.Cancelled)
    ]
    if others:
        interrupts = [e for e in others if not isinstance(e, Exception)]
        if interrupts:
            # Ctrl-C landed in a background task (trio raises it wherever the signal finds
            # running code): the body then mostly fails only because the service stopped under
            # it, and a program's ``except* KeyboardInterrupt`` must see the interrupt alone
            return interrupts[0]
        wrapped = error()
        wrapped.__cause__ = group
        return wrapped
    if startup is not None:
        return single_failure(startup)
    if own is not None and not isinstance(own, trio.Cancelled):
        return own
    return None  # only cancellation: trio's cancel scopes take it from here


@asynccontextmanager
async def open_service(
    start: Callable[[trio.Nursery], Awaitable[T]], error: Callable[[], Exception]
) -> AsyncIterator[T]:
    """Run ``await start(nursery)`` in a nursery of its own, yield what it returns, and cancel
    the nursery when the body ends; exceptions as the module docs say.

    Args:
        start: starts the service's tasks in the nursery and returns the service.
        error: makes the library error raised (from the group) for a background failure.
    """
    own: BaseException | None = None
    startup: BaseException | None = None
    to_raise: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                service = await start(nursery)
            except BaseException as exc:
                startup = exc
                raise
            try:
                yield service
            except BaseException as exc:
                own = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        to_raise = resolve_group(group, own=own, startup=startup, error=error)
        if to_raise is None:
            raise
    if to_raise is not None:
        # raised outside the except clause, so the group is not chained as the context
        raise to_raise
