"""Events published by the station machines (subscribe to them with
:func:`~ocpp_trio.runtime.machines_events.subscribe_to`, or ``csms.subscribe_events``).

Every event derives from :class:`MachineEvent` (``identity`` and ``at``).  Subscribe with a type
and receive exactly that type (and its subclasses), typed::

    async with csms.subscribe_events(TransactionEnded) as ended:
        async for event in ended:          # event: TransactionEnded
            print(event.transaction.energy_wh)

Base classes group related events: :class:`TransactionChanged` (started/updated/ended).  The
slow-subscriber policy is the runtime's (see :mod:`ocpp_trio.runtime.events`): each subscriber has a
bounded buffer; when it is full, events are dropped *for that subscriber* and counted
(``subscription.dropped``); the station is never slowed down.

Guarantees: per transaction, a subscriber with room sees one :class:`TransactionStarted`
first, then :class:`TransactionUpdated` events, and one :class:`TransactionEnded` when it ends
(events that arrive after the Ended event are published as updates; an end the CSMS adds on a
reboot is published only once the station has had ``late_event_window`` to give its own, see
:mod:`ocpp_trio.domain.reconcile`).  Every report the CSMS
requested ends with one :class:`ReportCompleted`, whatever its status.
"""

from __future__ import annotations

import datetime

import attrs

from ocpp_trio.domain.device_model import ComponentRef, VariableRef
from ocpp_trio.domain.evse import ConnectorStatus, RequestedAvailability, Reservation
from ocpp_trio.domain.reports import Report
from ocpp_trio.domain.transactions import Transaction
from ocpp_trio.messages._base import Message

__all__ = [
    "AvailabilityRequested",
    "ConnectorStatusChanged",
    "DeviceModelUpdated",
    "FirmwareStatusChanged",
    "LogStatusChanged",
    "MachineEvent",
    "MonitoringEvent",
    "RebootRequired",
    "ReportCompleted",
    "ReservationChanged",
    "SecurityEvent",
    "TransactionChanged",
    "TransactionEnded",
    "TransactionStarted",
    "TransactionUpdated",
]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen(kw_only=True)
class MachineEvent:
    """Base of the machines' events: which station, and when (UTC) it was published."""

    identity: str
    at: datetime.datetime = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class TransactionChanged(MachineEvent):
    """Base of the transaction events; ``transaction`` is the whole transaction so far."""

    transaction: Transaction


@attrs.frozen(kw_only=True)
class TransactionStarted(TransactionChanged):
    """The CSMS learned of a new transaction (by its first event, whichever kind it was;
    ``transaction.started`` tells whether the Started event itself arrived)."""


@attrs.frozen(kw_only=True)
class TransactionUpdated(TransactionChanged):
    """A further event was added to a transaction (or a remote start linked to it)."""


@attrs.frozen(kw_only=True)
class TransactionEnded(TransactionChanged):
    """The Ended event (1.6: StopTransaction) arrived; ``transaction.energy_wh`` is final
    unless late events still fill seqNo gaps (``transaction.missing_seq_nos``)."""


@attrs.frozen(kw_only=True)
class ReportCompleted(MachineEvent):
    """A report finished: ``report.status`` says how (complete, incomplete, expired, empty,
    rejected)."""

    report: Report


@attrs.frozen(kw_only=True)
class ConnectorStatusChanged(MachineEvent):
    """The station reported a connector status (``previous`` is the status kept before)."""

    evse_id: int
    connector: ConnectorStatus
    previous: str | None = None


@attrs.frozen(kw_only=True)
class AvailabilityRequested(MachineEvent):
    """The station accepted (or scheduled) a ChangeAvailability for ``evse_id`` (0: all)."""

    evse_id: int
    requested: RequestedAvailability


@attrs.frozen(kw_only=True)
class ReservationChanged(MachineEvent):
    """A reservation was made or ended (see ``reservation.state``)."""

    reservation: Reservation


@attrs.frozen(kw_only=True)
class MonitoringEvent(MachineEvent):
    """A NotifyEvent from the station (monitors that fired, alerts); ``message`` is the
    request of the station's version (``eventData``, ``seqNo``, ``tbc``)."""

    message: Message


@attrs.frozen(kw_only=True)
class SecurityEvent(MachineEvent):
    """A SecurityEventNotification."""

    type: str
    timestamp: datetime.datetime | None
    tech_info: str | None
    message: Message


@attrs.frozen(kw_only=True)
class FirmwareStatusChanged(MachineEvent):
    """A FirmwareStatusNotification (1.6 also SignedFirmwareStatusNotification)."""

    status: str
    request_id: int | None
    message: Message


@attrs.frozen(kw_only=True)
class LogStatusChanged(MachineEvent):
    """A LogStatusNotification (1.6 also DiagnosticsStatusNotification)."""

    status: str
    request_id: int | None
    message: Message


@attrs.frozen(kw_only=True)
class RebootRequired(MachineEvent):
    """The station accepted a variable (1.6: configuration key) that takes effect only after
    a reboot; the CSMS should schedule a Reset.  ``action`` is SetVariables or
    ChangeConfiguration."""

    component: ComponentRef
    variable: VariableRef
    attribute: str
    value: str
    action: str


@attrs.frozen(kw_only=True)
class DeviceModelUpdated(MachineEvent):
    """The station's device model changed; ``source`` is the action that changed it."""

    source: str
    count: int
