"""What a BootNotification means for the transactions the CSMS holds open (sans-IO, no trio).

A BootNotification means the station rebooted (OCPP.md §4.4): the transactions it had running
may be gone.  When one arrives, every transaction of the station the CSMS still holds open (not
ended) is **closed by the CSMS**: an Ended event is added with

* ``stopped_reason`` ``"PowerLoss"`` when the 2.x boot reason is ``PowerUp`` (the station lost
  power), ``"Reboot"`` for every other reason and on 1.6 (whose BootNotification has none);
* ``trigger_reason`` :data:`RECONCILED_TRIGGER`, the boot's time, no seqNo.

A boot with reason ``Triggered`` (asked for by TriggerMessage while Pending) is not a reboot and
closes nothing.

The transaction's task then waits ``late_event_window`` seconds (as for an Ended event with
seqNos missing) before the transaction is retired.  The station may still report such a
transaction meanwhile: the events it had queued (1.6 StopTransaction with its meter reading,
2.x TransactionEvent Ended with PowerLoss) or, with 2.1 transaction resumption, further Updated
events.  Any new event of the station's own for it removes the CSMS's Ended event first, so the
station's account wins.

The CSMS's end is provisional until then, so that subscribers see one ``TransactionEnded`` per
transaction: none is published when it is added; the station's own end within the window is
published as the ``TransactionEnded``; if the window passes without one, the CSMS's end is
published as it retires the transaction, and an account arriving later still is published as
a ``TransactionUpdated``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Final

import attrs

from ocpp_trio.domain.observations import Effect, Observation, ToTransaction
from ocpp_trio.domain.transactions import Transaction, TransactionEventKind, TransactionEventRecord
from ocpp_trio.protocol.version import Version

__all__ = [
    "RECONCILED_TRIGGER",
    "closed_by_reboot",
    "is_reconciled",
    "reboot_effects",
    "superseded",
]

#: the ``trigger_reason`` of an Ended event the CSMS added because the station rebooted
RECONCILED_TRIGGER: Final = "ocpp-trio:reboot"


def stopped_reason_for_boot(version: Version, reason: object) -> str:
    """The stoppedReason given to transactions ended by a boot with ``reason``."""
    if version is not Version.V16 and reason == "PowerUp":
        return "PowerLoss"
    return "Reboot"


def reboot_effects(
    open_transactions: Iterable[Transaction], observation: Observation, version: Version
) -> list[Effect]:
    """The Ended events a station's BootNotification adds (see the module docstring)."""
    if observation.action != "BootNotification" or not observation.by_station:
        return []
    reason = observation.request.to_json().get("reason")
    if reason == "Triggered":
        return []
    stopped = stopped_reason_for_boot(version, reason)
    at: datetime.datetime = observation.at
    return [
        ToTransaction(
            transaction_id=tx.transaction_id,
            record=TransactionEventRecord(
                kind=TransactionEventKind.ENDED,
                timestamp=at,
                trigger_reason=RECONCILED_TRIGGER,
                stopped_reason=stopped,
                received_at=at,
            ),
        )
        for tx in open_transactions
        if not tx.ended
    ]


def is_reconciled(record: TransactionEventRecord) -> bool:
    """Whether ``record`` is an Ended event the CSMS added on a reboot."""
    return record.trigger_reason == RECONCILED_TRIGGER and record.kind is TransactionEventKind.ENDED


def closed_by_reboot(transaction: Transaction) -> bool:
    """Whether ``transaction`` holds an Ended event the CSMS added on a reboot."""
    # only an Ended event can be one: most transactions hold none, and are answered at once
    return transaction.ended and any(is_reconciled(e) for e in transaction.events)


def superseded(transaction: Transaction, record: TransactionEventRecord) -> Transaction:
    """``transaction`` ready to take the station's ``record``: without the CSMS's reboot Ended
    event when ``record`` is a new event of the station's own (not a repeat of one kept)."""
    if is_reconciled(record) or not closed_by_reboot(transaction):
        return transaction
    kept = tuple(e for e in transaction.events if not is_reconciled(e))
    if any(e.same_slot(record) for e in kept):
        return transaction
    return attrs.evolve(transaction, events=kept)
