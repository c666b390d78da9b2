"""The three ways to run a charge point, as trio and trio-websocket do.

* ``async with open_charge_point(url, identity) as cp:`` owns its nursery;
* ``cp = await start_charge_point(nursery, url, identity)`` runs in the caller's nursery;
* ``cp: ChargePoint = await nursery.start(serve_charge_point, url, identity)``.

ExceptionGroup policy (the CSMS side's, :mod:`ocpp_trio.runtime.groups`):
``serve_charge_point`` and ``start_charge_point`` let groups propagate; ``open_charge_point``
lets the body's exception through unwrapped and turns a failure of the charge point's own tasks
into one :class:`ChargePointError` raised from the group.  Connection failures are never
errors: they are logged and retried.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial

import trio

from ocpp_trio.client.charge_point import DEFAULT_BOOT, ChargePoint
from ocpp_trio.client.config import BootFactory, BootInfo, ChargePointConfig
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.errors import ChargePointError
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.groups import open_service
from ocpp_trio.transport.connect import Connector, websocket_connector

__all__ = ["open_charge_point", "serve_charge_point", "start_charge_point"]


async def serve_charge_point(
    url: str | None,
    identity: str,
    *,
    versions: Sequence[Version | str] = (Version.V201,),
    router: ChargePointRouter | None = None,
    boot: BootInfo | BootFactory = DEFAULT_BOOT,
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    config: ChargePointConfig | None = None,
    connect: Connector | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[ChargePoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a charge point until cancelled: ``cp: ChargePoint = await
    nursery.start(serve_charge_point, url, identity)``.

    Reports the :class:`ChargePoint` once its tasks run (before it is connected: await
    :meth:`ChargePoint.wait_accepted` for that).

    Args:
        url: the CSMS endpoint (``ws://host:port/path`` or ``wss://...``); the percent-encoded
            identity is appended.  ``None`` with ``connect``.
        identity: the station identity (and Basic-auth user name).
        versions: the OCPP versions offered, in order of preference.
        router: answers the CSMS's requests.
        boot: what BootNotification says.
        password: the Basic-auth password (security profiles 1 and 2).
        ssl_context: the TLS context for ``wss://`` (with a client certificate for profile 3).
        config: timeouts, back-off, queue sizes.
        connect: a connector replacing the WebSocket one (e.g. memory transports in tests).
        rng: the back-off's random source.

    Waits for: cancellation; never returns otherwise.  Cancellation: closes the connection
    (1001).  Closes: every connection.  Exceptions: ``ValueError`` for a bad ``url``; after
    starting, failures of its own tasks (bugs) as an ``ExceptionGroup``.
    """
    config = config or ChargePointConfig()
    if connect is None:
        if url is None:
            raise ValueError("give the CSMS url (or a connector)")
        connect = websocket_connector(
            url,
            identity,
            password=password,
            ssl_context=ssl_context,
            connect_timeout=config.connect_timeout,
            max_message_size=config.max_message_size,
            send_timeout=config.send_timeout,
            close_timeout=config.close_timeout,
        )
    charge_point = ChargePoint(
        identity, connect, versions=versions, router=router, boot=boot, config=config, rng=rng
    )
    await charge_point.run(task_status=_Report(task_status, charge_point))


class _Report:
    """A ``TaskStatus[None]`` for :meth:`ChargePoint.run` that reports the charge point."""

    def __init__(
        self, task_status: trio.TaskStatus[ChargePoint], charge_point: ChargePoint
    ) -> None:
        self._task_status = task_status
        self._charge_point = charge_point

    def started(self, value: object = None) -> None:
        self._task_status.started(self._charge_point)


async def start_charge_point(
    nursery: trio.Nursery,
    url: str | None,
    identity: str,
    *,
    versions: Sequence[Version | str] = (Version.V201,),
    router: ChargePointRouter | None = None,
    boot: BootInfo | BootFactory = DEFAULT_BOOT,
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    config: ChargePointConfig | None = None,
    connect: Connector | None = None,
    rng: random.Random | None = None,
) -> ChargePoint:
    """Start a charge point in ``nursery`` (arguments as :func:`serve_charge_point`) and
    return it once its tasks run.

    Waits for: the tasks to start (not the connection).  Cancellation: of ``nursery`` stops
    it.  Closes: nothing itself.  Exceptions: ``ValueError`` for a bad ``url``; later failures
    go to ``nursery``.
    """
    charge_point: ChargePoint = await nursery.start(
        partial(
            serve_charge_point,
            url,
            identity,
            versions=versions,
            router=router,
            boot=boot,
            password=password,
            ssl_context=ssl_context,
            config=config,
            connect=connect,
            rng=rng,
        )
    )
    return charge_point


def open_charge_point(
    url: str | None,
    identity: str,
    *,
    versions: Sequence[Version | str] = (Version.V201,),
    router: ChargePointRouter | None = None,
    boot: BootInfo | BootFactory = DEFAULT_BOOT,
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    config: ChargePointConfig | None = None,
    connect: Connector | None = None,
    rng: random.Random | None = None,
) -> AbstractAsyncContextManager[ChargePoint]:
    """Run a charge point for the duration of an ``async with`` block (arguments as
    :func:`serve_charge_point`)::

        async with open_charge_point("ws://127.0.0.1:9000", "CS001") as cp:
            await cp.wait_accepted()
            await cp.call(v2_0_1.HeartbeatRequest())

    Waits for: its tasks to start before entering (not the connection); on exit, the
    connection to close.  Cancellation: passes through.  Closes: the connection.
    Exceptions: the body's own exception unwrapped; ``ValueError`` for a bad ``url``; a
    failure of the charge point's tasks as :class:`ChargePointError` from the group.
    """
    return open_service(
        partial(
            start_charge_point,
            url=url,
            identity=identity,
            versions=versions,
            router=router,
            boot=boot,
            password=password,
            ssl_context=ssl_context,
            config=config,
            connect=connect,
            rng=rng,
        ),
        lambda: ChargePointError("a task of the charge point failed"),
    )
