"""EVSEs, connectors and reservations as plain frozen records (sans-IO, no trio).

Tiers: station -> EVSE -> connector (OCPP.md §5).  EVSE ``0`` stands for the whole station
(2.x requests without an EVSE, 1.6 connector 0).  OCPP 1.6 has no EVSE tier: its connector
``N`` (N >= 1) is modelled as EVSE ``N`` with a single connector ``1``; 1.6 connector 0 is EVSE 0
with connector 0.

An :class:`Evse` keeps three things apart:

- what the station **reported**: per-connector status with the station's timestamp (a status
  older than the one kept is ignored, so queued offline notifications cannot roll it back);
- what the CSMS **requested**: the last ChangeAvailability the station answered Accepted or
  Scheduled;
- **reservations** made with ReserveNow (answered Accepted) and how they ended.

:func:`apply_evse` is the only way a record changes; the EVSE task applies commands one by one.
"""

from __future__ import annotations

import datetime
import enum
from typing import Final

import attrs

__all__ = [
    "AvailabilityRequest",
    "ConnectorStatus",
    "ConnectorsKnown",
    "Evse",
    "EvseCommand",
    "RemoveEvse",
    "RequestedAvailability",
    "Reservation",
    "ReservationEnded",
    "ReservationMade",
    "ReservationState",
    "StatusReport",
    "apply_evse",
]

#: finished reservations kept per EVSE (active ones are always kept)
FINISHED_RESERVATIONS_KEPT: Final = 10


class ReservationState(enum.Enum):
    """Where a reservation stands."""

    ACTIVE = "active"
    #: cancelled by the CSMS (CancelReservation answered Accepted)
    CANCELLED = "cancelled"
    #: the station reported it Expired
    EXPIRED = "expired"
    #: the station reported it Removed
    REMOVED = "removed"
    #: a transaction consumed it
    USED = "used"


@attrs.frozen(kw_only=True)
class Reservation:
    """One reservation (ReserveNow answered Accepted)."""

    reservation_id: int
    evse_id: int
    id_token: str
    expires_at: datetime.datetime
    created_at: datetime.datetime
    state: ReservationState = ReservationState.ACTIVE
    connector_type: str | None = None
    group_id_token: str | None = None
    ended_at: datetime.datetime | None = None
    transaction_id: str | None = None

    def is_active(self, now: datetime.datetime | None = None) -> bool:
        """Active and not past its expiry (``now`` defaults to the current UTC time)."""
        now = now or datetime.datetime.now(datetime.UTC)
        return self.state is ReservationState.ACTIVE and now < self.expires_at


@attrs.frozen(kw_only=True)
class ConnectorStatus:
    """A connector and the status the station last reported for it.

    ``status`` is the wire value (2.x ConnectorStatusEnumType, 1.6 ChargePointStatus), ``None``
    for a connector known from the device model that has reported nothing yet.
    """

    connector_id: int
    status: str | None = None
    timestamp: datetime.datetime | None = None
    received_at: datetime.datetime | None = None
    error_code: str | None = None
    info: str | None = None
    vendor_error_code: str | None = None


@attrs.frozen(kw_only=True)
class RequestedAvailability:
    """A ChangeAvailability the station accepted: ``status`` is Accepted or Scheduled."""

    operational: bool
    status: str
    requested_at: datetime.datetime
    connector_id: int | None = None


@attrs.frozen(kw_only=True)
class Evse:
    """One EVSE: connectors (sorted by id), requested availability, reservations."""

    evse_id: int
    connectors: tuple[ConnectorStatus, ...] = ()
    requested: RequestedAvailability | None = None
    reservations: tuple[Reservation, ...] = ()

    def connector(self, connector_id: int) -> ConnectorStatus | None:
        """The connector ``connector_id``, or ``None``."""
        for c in self.connectors:
            if c.connector_id == connector_id:
                return c
        return None

    @property
    def active_reservations(self) -> tuple[Reservation, ...]:
        """Reservations still active (state ACTIVE; expiry is not checked, see
        :meth:`Reservation.is_active`)."""
        return tuple(r for r in self.reservations if r.state is ReservationState.ACTIVE)

    def reservation(self, reservation_id: int) -> Reservation | None:
        """The reservation ``reservation_id`` kept here, or ``None``."""
        for r in self.reservations:
            if r.reservation_id == reservation_id:
                return r
        return None


# -- commands --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StatusReport:
    """The station reported a connector status (StatusNotification, or NotifyEvent
    ``Connector.AvailabilityState``)."""

    connector_id: int
    status: str
    timestamp: datetime.datetime | None
    received_at: datetime.datetime
    error_code: str | None = None
    info: str | None = None
    vendor_error_code: str | None = None


@attrs.frozen
class ConnectorsKnown:
    """These connectors exist (from the device model or the 1.6 configuration)."""

    connector_ids: frozenset[int]


@attrs.frozen
class AvailabilityRequest:
    """The station accepted (or scheduled) a ChangeAvailability."""

    requested: RequestedAvailability


@attrs.frozen
class ReservationMade:
    """The station accepted a ReserveNow."""

    reservation: Reservation


@attrs.frozen(kw_only=True)
class ReservationEnded:
    """A reservation was cancelled, expired, removed or used."""

    reservation_id: int
    state: ReservationState
    at: datetime.datetime
    transaction_id: str | None = None


@attrs.frozen
class RemoveEvse:
    """The EVSE no longer exists; its task ends."""


EvseCommand = (
    StatusReport | ConnectorsKnown | AvailabilityRequest | ReservationMade | ReservationEnded
)


def _with_connector(evse: Evse, connector: ConnectorStatus) -> Evse:
    others = [c for c in evse.connectors if c.connector_id != connector.connector_id]
    connectors = tuple(sorted((*others, connector), key=lambda c: c.connector_id))
    return attrs.evolve(evse, connectors=connectors)


def _trim(reservations: list[Reservation]) -> tuple[Reservation, ...]:
    active = [r for r in reservations if r.state is ReservationState.ACTIVE]
    finished = [r for r in reservations if r.state is not ReservationState.ACTIVE]
    return tuple(active + finished[-FINISHED_RESERVATIONS_KEPT:])


def apply_evse(evse: Evse, command: EvseCommand) -> Evse:
    """The EVSE after ``command`` (the same object when nothing changed)."""
    if isinstance(command, StatusReport):
        old = evse.connector(command.connector_id)
        if (
            old is not None
            and old.timestamp is not None
            and command.timestamp is not None
            and command.timestamp < old.timestamp
        ):
            return evse  # an older report arriving late: the newer one stands
        return _with_connector(
            evse,
            ConnectorStatus(
                connector_id=command.connector_id,
                status=command.status,
                timestamp=command.timestamp,
                received_at=command.received_at,
                error_code=command.error_code,
                info=command.info,
                vendor_error_code=command.vendor_error_code,
            ),
        )
    if isinstance(command, ConnectorsKnown):
        for connector_id in sorted(command.connector_ids):
            if evse.connector(connector_id) is None:
                evse = _with_connector(evse, ConnectorStatus(connector_id=connector_id))
        return evse
    if isinstance(command, AvailabilityRequest):
        return attrs.evolve(evse, requested=command.requested)
    if isinstance(command, ReservationMade):
        others = [
            r for r in evse.reservations if r.reservation_id != command.reservation.reservation_id
        ]
        return attrs.evolve(evse, reservations=_trim([*others, command.reservation]))
    found = evse.reservation(command.reservation_id)
    if found is None or found.state is not ReservationState.ACTIVE:
        return evse
    ended = attrs.evolve(
        found, state=command.state, ended_at=command.at, transaction_id=command.transaction_id
    )
    reservations = [ended if r is found else r for r in evse.reservations]
    return attrs.evolve(evse, reservations=_trim(reservations))
