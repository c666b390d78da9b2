"""The peer as handlers, events and helpers see it: small Protocols instead of the classes.

The helpers that serve a station (the default answers, the recovery, the extra handlers) need
only a few things of it; naming those here, rather than importing
:class:`~ocpp_trio.Station`, keeps every import of the runtime pointing one way
(``station`` imports these modules, never the reverse).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Identified
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.router import CSMSRouterBase

__all__ = ["Identified", "StationPeer"]

R = TypeVar("R", bound=Response)


class StationPeer(Identified, Protocol):
    """A connected station as the CSMS side's helpers use it (a :class:`~ocpp_trio.Station`)."""

    @property
    def version(self) -> Version:
        """The negotiated OCPP version."""

    @property
    def machines(self) -> StationMachines:
        """The station's EVSE, transaction and report machines."""

    @property
    def router(self) -> CSMSRouterBase[Any]:
        """The router answering the station's requests."""

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R:
        """Send ``request`` as a CALL and return the station's answer."""

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection."""
