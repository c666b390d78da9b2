"""The station side's handler API: :class:`ChargePointRouter`, whose handlers receive the
:class:`~ocpp_trio.ChargePoint`.

It is the generic router of :mod:`ocpp_trio.runtime.router` (the CSMS's
:class:`~ocpp_trio.Router` is the other side of it): it maps request classes of CSMS-to-station
actions (one per action and version) to async handlers, and mypy checks each handler's request
and response types at the decorator::

    router = ChargePointRouter()

    @router.on(v2_0_1.ResetRequest)
    async def reset(cp: ChargePoint, request: v2_0_1.ResetRequest) -> v2_0_1.ResetResponse:
        cp.request_reboot("RemoteReset")
        return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)

A handler returns the response (sent as the CALLRESULT), raises
:class:`~ocpp_trio.CallError` (sent as that CALLERROR), or raises anything else (answered
``InternalError`` and logged).  A request without a handler goes to the fallback
(:meth:`ChargePointRouter.fallback`, untyped), else to the built-in answers (TriggerMessage for
BootNotification and Heartbeat), else it is answered ``NotSupported``.
"""

from __future__ import annotations

from typing import TypeVar

from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.runtime.router import AnyHandler, Handler, RouterBase

__all__ = ["AnyChargePointHandler", "ChargePointHandler", "ChargePointRouter"]

Q = TypeVar("Q", bound=Request[Response])
R = TypeVar("R", bound=Response)

#: An async handler of one CSMS request type.
ChargePointHandler = Handler[ChargePoint, Q, R]
#: The untyped form the runtime calls (and :meth:`ChargePointRouter.fallback` takes).
AnyChargePointHandler = AnyHandler[ChargePoint]


class ChargePointRouter(RouterBase[ChargePoint]):
    """Maps the CSMS's request classes to the charge point's handlers.

    Plain data: it may be shared by many charge points (a simulator runs hundreds on one) and
    filled before or after they start.
    """
