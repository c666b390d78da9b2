"""A CSMS on a store, and memory-connected fake stations booting on it (recovery and cluster
tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from helpers.station import FakeStation, boot_request, boot_router
from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS, CSMSConfig
from ocpp_trio.messages import decode_request
from ocpp_trio.runtime.handlers import Router
from ocpp_trio.runtime.station import Station
from ocpp_trio.store.base import Store
from ocpp_trio.transport.base import memory_transport_pair

V16, V201 = Version.V16, Version.V201


@asynccontextmanager
async def csms_on(
    store: Store, router: Router | None = None, **config: Any
) -> AsyncIterator[tuple[CSMS, trio.Nursery]]:
    router = router if router is not None else boot_router()
    csms = CSMS(router, config=CSMSConfig(store=store, **config))
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.run)
        yield csms, nursery
        nursery.cancel_scope.cancel()


async def connect(
    csms: CSMS, nursery: trio.Nursery, version: Version = V201, identity: str = "CS1"
) -> tuple[Station, FakeStation]:
    ours, theirs = memory_transport_pair()
    station: Station | None = await nursery.start(
        partial(csms.serve_station, ours, identity, version)
    )
    assert station is not None
    return station, FakeStation(theirs, version)


async def boot(fake: FakeStation, reason: str = "PowerUp") -> None:
    request = boot_request(fake.version)
    if fake.version is not V16:
        payload = request.to_json() | {"reason": reason}
        request = decode_request(fake.version, "BootNotification", payload)  # type: ignore[assignment]
    response = await fake.exchange(request)
    assert getattr(response, "status", None) is not None, response
