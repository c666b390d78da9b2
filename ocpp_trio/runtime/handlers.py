"""The CSMS's handler API: :class:`Router`, whose handlers receive the :class:`Station`.

A :class:`Router` maps request classes (one per action *and* version, since every version has
its own generated classes) to async handlers::

    router = Router()

    @router.on(v2_0_1.BootNotificationRequest)
    async def boot(
        station: Station, request: v2_0_1.BootNotificationRequest
    ) -> v2_0_1.BootNotificationResponse:
        ...

mypy checks that the handler takes that request and returns exactly its response type (see
:mod:`ocpp_trio.runtime.router`, the generic router both sides share).  Handlers may also live
on an object, as methods marked with :func:`handles` and registered with
:meth:`Router.include`.  A known action without a handler is answered ``NotSupported``;
BootNotification has no implicit default (the CSMS must decide) unless
:meth:`Router.set_default_boot` is called.
"""

from __future__ import annotations

from ocpp_trio.runtime.router import (
    AnyHandler,
    CSMSRouterBase,
    DefaultBoot,
    Handler,
    SendHandler,
    boot_response,
    handler_name,
    handles,
    heartbeat_response,
)
from ocpp_trio.runtime.station import Station

__all__ = [
    "AnyHandler",
    "DefaultBoot",
    "Handler",
    "Router",
    "SendHandler",
    "boot_response",
    "handler_name",
    "handles",
    "heartbeat_response",
]


class Router(CSMSRouterBase[Station]):
    """Maps request classes to the application's handlers, which receive the
    :class:`~ocpp_trio.Station` (see :class:`~ocpp_trio.runtime.router.CSMSRouterBase`).

    A router is plain data: it can be shared by several CSMS objects and filled before or after
    it is handed to one (lookups happen per CALL).
    """
