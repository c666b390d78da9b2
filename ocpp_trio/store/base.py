"""The persistence contract: the :class:`Store` protocol, the records it keeps, their JSON codec.

A store keeps, per station identity, one :class:`StoredStation`:

* the **registration** (:class:`Registration`: the last boot answer, with the boot data, its
  time and the OCPP version), written before the BootNotification's answer goes out;
* the station's machines (device model, EVSEs and connectors with their statuses, reservations,
  open transactions with every event, seqNo and meter value, reports in progress, remote starts,
  id counters) as a **base snapshot** (:class:`~ocpp_trio.StationSnapshot`) plus a **journal**
  of the exchanges observed since (:class:`JournalEntry`, numbered by ``seq``).  Each journal
  entry is committed before the station is told we have it; recovery replays the journal on top
  of the snapshot, and snapshots taken now and then (and when the station disconnects) fold the
  journal back in;
* the negotiated version, the local authorization list version, and an **epoch**: every process
  that starts serving the station *claims* it (epoch + 1), and writes carry the epoch they were
  made under, so a process that lost the station (it moved to another process sharing the store)
  can no longer write to it (its writes are refused as stale);
* CSMS-wide counters (the 1.6 transaction id), and station credentials (salted hashes, see
  :mod:`ocpp_trio.domain.credentials`) behind :attr:`Store.credentials`;
* the **transaction ledger**: one :class:`~ocpp_trio.domain.ledger.LedgerEntry` per finished
  transaction, keyed by ``(identity, transaction_id)``, written by :class:`PutLedgerEntry` in
  the same commit as the journal entry that ended (or changed) the transaction, read with
  :meth:`Store.ledger` and pruned with :meth:`Store.prune_ledger`.  It outlives the station's
  record (:meth:`Store.forget` leaves it).

Outbound message ids need nothing stored: they are uuid4 strings, unique across restarts.

Serialization: :data:`CONVERTER` (cattrs) turns the frozen attrs records into JSON-ready data:
datetimes as RFC 3339 text, enums by value, tuples as lists, fields at their default omitted.
Generated message objects inside records (a report's request and parts, an observed exchange)
are stored as ``{"version": ..., "action": ..., "payload": obj.to_json()}`` and rebuilt with
:func:`ocpp_trio.messages.decode_request` / :func:`~ocpp_trio.messages.decode_response`, which
check them against their schema again.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import cattrs

from ocpp_trio import messages
from ocpp_trio.domain.credentials import CredentialStore, StationCredentials
from ocpp_trio.domain.ledger import LedgerEntry, LedgerPage, LedgerQuery
from ocpp_trio.domain.observations import Observation
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.messages._base import Message, Response
from ocpp_trio.protocol import jsonio
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.protocol.version import Version

__all__ = [
    "CONVERTER",
    "TRANSACTION_ID_COUNTER",
    "Append",
    "JournalEntry",
    "PutCounter",
    "PutLedgerEntry",
    "PutLocalListVersion",
    "PutRegistration",
    "PutSnapshot",
    "Registration",
    "ReleasesStations",
    "StationOp",
    "Store",
    "StoreOp",
    "StoredStation",
    "SweepsUnbooted",
    "decode",
    "encode",
]

#: the counter name of the 1.6 transaction id allocator
TRANSACTION_ID_COUNTER: Final = "transaction_id"


# -- records ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Registration:
    """The registration of a station: its last boot answer.

    Attributes:
        status: the status answered; ``None`` while a boot is unanswered or after a boot the
            CSMS answered with a CALLERROR (the station must boot again).
        version: the OCPP version of the boot (``None`` when seeded by the application).
        boot: the BootNotification request, when there was one.
        interval: the answer's interval.
        at: when it was answered (UTC).
    """

    status: RegistrationStatus | None
    version: Version | None = None
    boot: Message | None = None
    interval: int = 0
    at: datetime.datetime


@attrs.frozen(kw_only=True)
class JournalEntry:
    """One observed exchange, number ``seq`` of its station's journal."""

    seq: int
    observation: Observation


@attrs.frozen(kw_only=True)
class StoredStation:
    """Everything a store keeps about one station.

    Attributes:
        identity: the station.
        epoch: the latest claim (0: never claimed).
        version: the OCPP version of the latest claim.
        registration: the last boot answer, ``None`` when it never booted.
        snapshot: the base snapshot of its machines, ``None`` before the first one.
        through: the last journal ``seq`` folded into ``snapshot``.
        journal: the entries after ``through``, in order.
        local_list_version: the local authorization list version, when known.
        updated_at: the last claim, registration, snapshot or local list write (UTC).
    """

    identity: str
    epoch: int = 0
    version: Version | None = None
    registration: Registration | None = None
    snapshot: StationSnapshot | None = None
    through: int = 0
    journal: tuple[JournalEntry, ...] = ()
    local_list_version: int | None = None
    updated_at: datetime.datetime | None = None

    @property
    def last_seq(self) -> int:
        """The highest journal ``seq`` written (the next entry gets one more)."""
        return self.journal[-1].seq if self.journal else self.through

    @property
    def empty(self) -> bool:
        """Whether nothing but the claim was ever stored."""
        return self.registration is None and self.snapshot is None and not self.journal


# -- writes ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Append:
    """Add one entry to a station's journal."""

    identity: str
    epoch: int
    entry: JournalEntry


@attrs.frozen(kw_only=True)
class PutRegistration:
    """Replace a station's registration.  ``epoch`` ``None``: an administrative write (seeding
    by the application) that is not fenced and creates the station's record if needed."""

    identity: str
    epoch: int | None
    registration: Registration | None


@attrs.frozen(kw_only=True)
class PutSnapshot:
    """Replace a station's base snapshot; journal entries up to ``through`` are dropped."""

    identity: str
    epoch: int
    snapshot: StationSnapshot
    through: int


@attrs.frozen(kw_only=True)
class PutLocalListVersion:
    """Record the version of the station's local authorization list."""

    identity: str
    epoch: int | None
    version: int | None


@attrs.frozen(kw_only=True)
class PutLedgerEntry:
    """Create or replace the ledger entry of ``(identity, entry.transaction_id)``.

    Fenced by ``epoch`` like the other station writes: a process that lost the station cannot
    overwrite the entry the current one wrote.
    """

    identity: str
    epoch: int
    entry: LedgerEntry


@attrs.frozen(kw_only=True)
class PutCounter:
    """Raise a CSMS-wide counter to ``value`` (it never goes down)."""

    name: str
    value: int


StationOp = Append | PutRegistration | PutSnapshot | PutLocalListVersion | PutLedgerEntry
StoreOp = StationOp | PutCounter


class Store(Protocol):
    """Where station state lives (see the module docstring for what is kept).

    Implementations: :class:`~ocpp_trio.store.sqlite.SQLiteStore` (the embedded default) and
    :class:`~ocpp_trio.store.memory.MemoryStore` (tests).  Every method may wait for I/O;
    :meth:`commit` is atomic, also when the calling task is cancelled (it then either committed
    or not, never half).
    """

    async def claim(self, identity: str, version: Version) -> StoredStation:
        """Take over ``identity`` for a connection of ``version``: bump its epoch (creating
        its record if new) and return the record as it is now.

        Raises:
            UnreadableRecordError: the record cannot be decoded (the claim took effect).
            StoreError: the store failed.
        """
        ...

    async def load(self, identity: str) -> StoredStation | None:
        """The record of ``identity`` without claiming it, ``None`` when unknown.

        Raises:
            UnreadableRecordError: the record cannot be decoded.
            StoreError: the store failed.
        """
        ...

    async def commit(self, ops: Sequence[StoreOp]) -> frozenset[str]:
        """Apply ``ops`` in order, in one transaction.

        Station writes made under an epoch that is no longer the station's are skipped.

        Returns:
            the identities whose writes were skipped as stale.

        Raises:
            StoreError: nothing was written.
        """
        ...

    async def counter(self, name: str) -> int | None:
        """A counter's value, ``None`` when never written."""
        ...

    async def identities(self) -> list[str]:
        """Every station identity with a record, sorted."""
        ...

    async def forget(self, identity: str) -> None:
        """Delete everything kept about ``identity`` (credentials and ledger excepted)."""
        ...

    # -- the transaction ledger (written by PutLedgerEntry in commit) --------------------------

    async def ledger(self, query: LedgerQuery) -> LedgerPage:
        """One page of the ledger: the entries ``query`` selects, in ledger order (end time
        as :func:`~ocpp_trio.domain.ledger.utc_text`, then identity, then transaction id), at
        most ``query.limit`` of them, starting after ``query.after``'s key.

        An implementation compares times as their ``utc_text`` (so an index on that text
        serves the range and the order), and makes the page with
        :func:`~ocpp_trio.domain.ledger.page_of` from up to ``limit + 1`` entries.

        Raises:
            StoreError: the store failed, or an entry cannot be decoded.
        """
        ...

    async def prune_ledger(self, before: datetime.datetime) -> int:
        """Delete the ledger entries last written (``recorded_at``) before ``before``;
        returns how many.  The CSMS's own clock decides, so a station's wrong clock cannot cut
        an entry's life short.

        Raises:
            StoreError: the store failed (nothing was deleted).
        """
        ...

    @property
    def credentials(self) -> CredentialStore:
        """The station credentials kept in this store."""
        ...


# -- codec -----------------------------------------------------------------------------------


def _unstructure_message(message: Message) -> dict[str, Any]:
    return {
        "version": message.VERSION.value,
        "action": message.ACTION,
        "payload": message.to_json(),
    }


def _message_parts(value: Any) -> tuple[str, str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"a stored message is an object, not {type(value).__name__}")
    return str(value["version"]), str(value["action"]), value["payload"]


def _structure_request(value: Any, _type: object) -> Message:
    version, action, payload = _message_parts(value)
    return messages.decode_request(version, action, payload)


def _structure_response(value: Any, _type: object) -> Response:
    version, action, payload = _message_parts(value)
    return messages.decode_response(version, action, payload)


def _structure_time(value: Any, _type: object) -> datetime.datetime:
    if not isinstance(value, str):
        raise TypeError(f"a time is RFC 3339 text, not {type(value).__name__}")
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without an offset: {value!r}")
    return parsed


def _is_message(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, Message)


def make_converter() -> cattrs.Converter:
    """A cattrs converter for the store's records (see the module docstring)."""
    converter = cattrs.Converter(omit_if_default=True)
    converter.register_unstructure_hook(datetime.datetime, datetime.datetime.isoformat)
    converter.register_structure_hook(datetime.datetime, _structure_time)
    converter.register_unstructure_hook_func(_is_message, _unstructure_message)
    converter.register_structure_hook(Message, _structure_request)
    converter.register_structure_hook(Response, _structure_response)
    return converter


#: the converter the stores use
CONVERTER: Final = make_converter()


def encode(value: object, as_type: type[Any] | None = None) -> str:
    """``value`` (a record of this module, a snapshot, credentials) as compact JSON text."""
    # jsonio: the frames' codec (orjson where it agrees with the json module, which decides
    # the rest): the same text, written several times faster; a snapshot holds every sample of
    # its open transactions
    return jsonio.dumps(CONVERTER.unstructure(value, unstructure_as=as_type))


def decode(text: str | bytes, as_type: type[Any]) -> Any:
    """The record of type ``as_type`` that :func:`encode` wrote.

    Raises:
        ValueError: the text is not such a record (bad JSON, a missing field, a message that
            fails its schema, ...); the message says what.
    """
    try:
        return CONVERTER.structure(jsonio.loads(text), as_type)
    except Exception as exc:
        raise ValueError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions[:3])
    return f"{type(exc).__name__}: {exc}"


def structure_credentials(text: str | bytes) -> StationCredentials:
    """Credentials written by :func:`encode` (their validators run again)."""
    value: StationCredentials = decode(text, StationCredentials)
    return value


# -- optional capabilities -------------------------------------------------------------------


@runtime_checkable
class ReleasesStations(Protocol):
    """A store that records which process serves a station (an owner beside the epoch), and
    can clear that once the connection of a claim ends."""

    async def release(self, identity: str, epoch: int) -> bool:
        """Clear the owner of ``identity`` if ``epoch`` (a claim of this process) is still
        its latest claim; returns whether it was."""
        ...


@runtime_checkable
class SweepsUnbooted(Protocol):
    """A store that can drop, in one step, the stations that never booted (no registration)
    and were last written before a time: what one-shot identities leave behind."""

    async def forget_unbooted(self, older_than: datetime.datetime) -> list[str]:
        """Forget every station without a registration last written before ``older_than``
        (as :meth:`Store.forget`); returns their identities."""
        ...
