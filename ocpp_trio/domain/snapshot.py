"""A station's machines as plain frozen records: what the store keeps and recovery restores."""

from __future__ import annotations

import attrs

from ocpp_trio.domain.device_model import DeviceModel
from ocpp_trio.domain.evse import Evse
from ocpp_trio.domain.reports import Report
from ocpp_trio.domain.transactions import RemoteStart, Transaction

__all__ = ["StationSnapshot"]


@attrs.frozen(kw_only=True)
class StationSnapshot:
    """Everything the machines of one station know, as plain frozen records.

    Save it (e.g. on disconnect) and hand it back as ``StationMachines(..., initial=snapshot)``
    or ``csms.add_station(identity, snapshot=snapshot)`` to continue where it stopped: EVSE and
    connector statuses, reservations, open transactions with their events (so seqNo gaps and
    meter values carry over), reports in progress, remote starts waiting for their
    transaction, and the id counters.  The 1.6 transaction-id allocator is CSMS-wide: save it
    separately (``TransactionIdCounter.next_id``).
    """

    identity: str
    device_model: DeviceModel = attrs.Factory(DeviceModel)
    evses: tuple[Evse, ...] = ()
    transactions: tuple[Transaction, ...] = ()
    reports: tuple[Report, ...] = ()
    remote_starts: tuple[RemoteStart, ...] = ()
    next_request_id: int = 1
    next_remote_start_id: int = 1
