"""The peer as handlers, events and helpers see it: small Protocols instead of the classes.

The helpers that serve a station (the default answers, the recovery, the extra handlers) need
only a few things of it; naming those here, rather than importing
:class:`~ocpp_trio.Station`, keeps every import of the runtime pointing one way
(``station`` imports these modules, never the reverse).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.events import Identified
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.router import CSMSRouterBase
from ocpp_trio.store.base import Store

__all__ = ["CSMSView", "Identified", "StationPeer"]

R = TypeVar("R", bound=Response)
S_co = TypeVar("S_co", covariant=True)


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


class CSMSView(Protocol[S_co]):
    """The CSMS serving a station, as its handlers reach it through
    :attr:`Station.csms <ocpp_trio.Station.csms>` (``S_co``: the station class).

    The :class:`~ocpp_trio.CSMS` is one (``isinstance(station.csms, CSMS)`` narrows to it for
    the rest of its API); the protocol names what handlers commonly need, so that the runtime
    does not depend on the CSMS module.
    """

    @property
    def store(self) -> Store | None:
        """Where station state is kept (``CSMSConfig.store``), ``None`` for memory only."""

    @property
    def stations(self) -> Mapping[str, S_co]:
        """The connected stations by identity (a read-only live view)."""

    def get_station(self, identity: str) -> S_co | None:
        """The connected station ``identity``, or ``None``."""

    def machines(self, identity: str) -> StationMachines | None:
        """The machines of ``identity`` (connected or not), or ``None`` if never seen."""

    def remembered_status(self, identity: str) -> RegistrationStatus | None:
        """The registration kept for ``identity`` between connections."""
