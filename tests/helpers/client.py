"""Charge points connected to a CSMS over memory pairs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from ocpp_trio import CSMS, Version
from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.config import ChargePointConfig, RetryBackOff
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.errors import ConnectFailedError
from ocpp_trio.transport.base import ConnectionInfo, Transport, memory_transport_pair

__all__ = ["Link", "charge_point"]


@attrs.define
class Link:
    """The charge point's way to the CSMS: memory pairs, and a switch to make it unreachable."""

    csms: CSMS
    nursery: trio.Nursery
    identity: str
    up: bool = True
    attempts: list[float] = attrs.Factory(list)

    @asynccontextmanager
    async def connect(self, versions: Sequence[Version]) -> AsyncIterator[Transport]:
        self.attempts.append(trio.current_time())
        if not self.up:
            await trio.lowlevel.checkpoint()
            raise ConnectFailedError("the CSMS is unreachable")
        version = versions[0]
        info = ConnectionInfo(subprotocol=version.subprotocol)
        ours, theirs = memory_transport_pair(info_a=info, info_b=info)
        self.nursery.start_soon(self.csms.serve_station, theirs, self.identity, version)
        try:
            yield ours
        finally:
            await ours.aclose()

    async def drop(self) -> None:
        """The CSMS closes the connection (the charge point sees the peer close)."""
        station = self.csms.get_station(self.identity)
        assert station is not None
        await station.aclose()


async def charge_point(
    csms: CSMS,
    nursery: trio.Nursery,
    identity: str,
    version: Version = Version.V201,
    router: ChargePointRouter | None = None,
) -> tuple[ChargePoint, Link]:
    link = Link(csms, nursery, identity)
    cp = ChargePoint(
        identity,
        link.connect,
        versions=(version,),
        router=router,
        config=ChargePointConfig(
            retry_back_off=RetryBackOff(wait_minimum=0.05, random_range=0.0, repeat_times=1)
        ),
    )
    await nursery.start(cp.run)
    await cp.wait_accepted()
    return cp, link
