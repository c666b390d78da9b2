"""The registration state machine of one station: what may be received or sent, and when.

This module is sans-IO and trio-free, so it can be tested (and property-tested) on its own.  The
station runtime asks it before every station CALL it accepts and every CALL the CSMS starts, and
tells it about boot answers, answers to its own CALLs, connects and disconnects.  Time is passed
in (any monotonic clock, in seconds); nothing here reads a clock.

States (the CSMS's view of the station; OCPP.md §4.2/§4.4, SEED §3):

========== ================================ =============================== ====================
state      station CALLs allowed            CSMS CALLs allowed              left by
========== ================================ =============================== ====================
OFFLINE    (no connection)                  none (runtime: connection lost) connect
CONNECTED  BootNotification; boot-race      none                            BootNotification,
           allow-list; else SecurityError                                   disconnect
BOOTING    BootNotification (supersedes);   none                            boot answer,
           boot-race allow-list; else                                       disconnect
           SecurityError
PENDING    BootNotification (retry interval the Pending allow-list          BootNotification,
           honoured unless triggered);      (TriggerMessage(Boot...) too)   disconnect
           triggered messages, each once;
           report parts of an accepted
           report request until tbc=false;
           else SecurityError
REJECTED   BootNotification (retry interval none                            BootNotification,
           honoured); else SecurityError                                    disconnect
ACCEPTED   anything (BootNotification =     anything except                 BootNotification,
           reboot)                          TriggerMessage(BootNotification) disconnect
RESUMED    as ACCEPTED (reconnected after   as ACCEPTED                     first station CALL
           acceptance, no boot yet)                                         (-> ACCEPTED or
                                                                            BOOTING), disconnect
========== ================================ =============================== ====================

Decisions taken where the specification leaves room (see docs/design.md):

- SecurityError is answered on every version, 1.6 included (1.6-J errata §3.8 recommend it; the
  Erlang original dropped silently on 1.6).
- A BootNotification that arrives before the ``interval`` of a Pending or Rejected answer has
  passed, and that no accepted TriggerMessage asked for, is by default answered again with the
  same status and the *remaining* interval, without running the application's handler
  (:attr:`EarlyBootPolicy.REPEAT`).  The station learns nothing new and the application is
  protected from boot floods.  SecurityError or passing it through are configurable.
- An accepted TriggerMessage allows the requested message once.  Where the trigger names no
  EVSE/connector but the message carries one (1.6 "for all connectors", 2.x MeterValues without
  an EVSE), it allows one message per distinct EVSE/connector instead.
- Triggers and report expectations are recorded only while Pending (they matter nowhere else)
  and are cleared by every BootNotification and every disconnect; an answer to a CSMS CALL that
  was started before the latest boot or connect is not recorded.
- A BootNotification starts a reboot: the remembered status is forgotten until the new answer,
  so a connection lost while booting comes back as CONNECTED, not as RESUMED.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ocpp_trio.errors import ErrorCode, StateError
from ocpp_trio.messages._base import Datatype
from ocpp_trio.protocol.version import Version

__all__ = [
    "Allowed",
    "CallTicket",
    "EarlyBootPolicy",
    "Payload",
    "Refused",
    "RegistrationStatus",
    "RepeatBootAnswer",
    "StationState",
    "Supervisor",
    "SupervisorConfig",
    "Verdict",
    "default_pending_csms_actions",
]

#: A message as the supervisor reads it: a generated message object or its wire JSON.
Payload = Datatype | Mapping[str, Any]

BOOT: Final = "BootNotification"
_TRIGGER_ACTIONS: Final = frozenset({"TriggerMessage", "ExtendedTriggerMessage"})


class StationState(enum.Enum):
    """Where a station stands, as the CSMS sees it (see the module docstring's table)."""

    OFFLINE = "offline"
    CONNECTED = "connected"
    BOOTING = "booting"
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RESUMED = "resumed"


class RegistrationStatus(enum.StrEnum):
    """The status of a BootNotification answer; the wire values are the same in every version."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class EarlyBootPolicy(enum.Enum):
    """What to do with an untriggered BootNotification sent before the retry interval passed."""

    #: answer with the previous status and the remaining interval; the handler is not run
    REPEAT = "repeat"
    #: answer with a SecurityError CALLERROR
    SECURITY_ERROR = "security_error"
    #: treat it as any other BootNotification (the handler decides)
    ALLOW = "allow"


_PENDING_CSMS_2X: Final = frozenset(
    {"GetVariables", "SetVariables", "GetBaseReport", "GetReport", "TriggerMessage"}
)
# 1.6 §4.2 of OCPP.md: requests that read or change information or configuration.
# GetLocalListVersion is added as a pure read; anything that acts (remote start/stop, reset,
# firmware, certificates) is left for the application to allow explicitly.
_PENDING_CSMS_16: Final = frozenset(
    {
        "GetConfiguration",
        "ChangeConfiguration",
        "TriggerMessage",
        "ExtendedTriggerMessage",
        "GetLocalListVersion",
    }
)


def default_pending_csms_actions(version: Version) -> frozenset[str]:
    """The CSMS CALLs allowed by default while a station of ``version`` is Pending.

    2.x: GetVariables, SetVariables, GetBaseReport, GetReport, TriggerMessage (TC_B_02_CSMS).
    1.6: GetConfiguration, ChangeConfiguration, TriggerMessage, ExtendedTriggerMessage and
    GetLocalListVersion.
    """
    return _PENDING_CSMS_16 if version is Version.V16 else _PENDING_CSMS_2X


@attrs.frozen(kw_only=True)
class SupervisorConfig:
    """Tunable registration rules.

    Attributes:
        boot_race_actions: station actions let through before the first boot answer, for
            stations known to race e.g. StatusNotification against BootNotification.  Empty by
            default (SecurityError, as the 1.6 errata and B02.FR.09 recommend).
        pending_csms_actions: CSMS actions allowed while Pending; ``None`` means
            :func:`default_pending_csms_actions` for the station's version.
        early_boot: see :class:`EarlyBootPolicy`.
    """

    boot_race_actions: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    pending_csms_actions: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    early_boot: EarlyBootPolicy = EarlyBootPolicy.REPEAT


@attrs.frozen
class Allowed:
    """The CALL goes to the handler.  ``reason`` says why it passed (for logs and tests)."""

    reason: str


#: the verdict on every CALL of an accepted station (one frozen object, shared)
_ACCEPTED: Final = Allowed("accepted")


@attrs.frozen
class Refused:
    """Answer the CALL with this CALLERROR; the handler is not run."""

    code: ErrorCode
    description: str
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RepeatBootAnswer:
    """Answer this early BootNotification with ``status`` and ``interval``; no handler runs."""

    status: RegistrationStatus
    interval: int


Verdict = Allowed | Refused | RepeatBootAnswer


@attrs.frozen
class CallTicket:
    """A permission to send one CSMS CALL; hand it back with the answer."""

    action: str
    request: Payload = attrs.field(eq=False, repr=False)
    generation: int


@attrs.define
class _Trigger:
    actions: frozenset[str]
    evse: int | None
    connector: int | None
    # instances already seen when the message is more specific than the trigger
    seen: set[tuple[int | None, int | None]] = attrs.field(factory=set)


# report request action -> the station's multi-part answer (grouped by requestId, ends tbc=false)
_REPORTS: Final[Mapping[str, str]] = {
    "GetBaseReport": "NotifyReport",
    "GetReport": "NotifyReport",
    "GetMonitoringReport": "NotifyMonitoringReport",
    "GetChargingProfiles": "ReportChargingProfiles",
    "CustomerInformation": "NotifyCustomerInformation",
    "GetDisplayMessages": "NotifyDisplayMessages",
    "GetDERControl": "ReportDERControl",
}

_SIGN: Final = frozenset({"SignCertificate"})
_TRIGGER_TARGETS: Final[Mapping[str, frozenset[str]]] = {
    "SignChargingStationCertificate": _SIGN,
    "SignV2GCertificate": _SIGN,
    "SignCombinedCertificate": _SIGN,
    "SignV2G20Certificate": _SIGN,
    "SignChargePointCertificate": _SIGN,
}


def _wire(payload: Payload) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        return payload
    return payload.to_json()


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _instance(version: Version, wire: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The (EVSE, connector) a message is about, as far as it says."""
    if version is Version.V16:
        return None, _int_or_none(wire.get("connectorId"))
    evse = wire.get("evse")
    if isinstance(evse, Mapping):
        return _int_or_none(evse.get("id")), _int_or_none(evse.get("connectorId"))
    return _int_or_none(wire.get("evseId")), _int_or_none(wire.get("connectorId"))


def _trigger_targets(request_action: str, wire: Mapping[str, Any]) -> frozenset[str]:
    value = wire.get("requestedMessage")
    if not isinstance(value, str):
        return frozenset()
    if value == "CustomTrigger":
        custom = wire.get("customTrigger")
        return frozenset({custom}) if isinstance(custom, str) and custom else frozenset()
    if request_action == "ExtendedTriggerMessage" and value == "FirmwareStatusNotification":
        # the security white paper's trigger asks for the signed variant; accept either
        return frozenset({"SignedFirmwareStatusNotification", "FirmwareStatusNotification"})
    return _TRIGGER_TARGETS.get(value, frozenset({value}))


def _status_accepted(wire: Mapping[str, Any]) -> bool:
    return wire.get("status") == "Accepted"


class Supervisor:
    """The registration state machine of one station (pure; no I/O, no clock).

    Args:
        version: the OCPP version spoken on the station's connections.
        initial_status: the registration remembered from earlier connections (or a store):
            ``ACCEPTED`` makes the next connection start RESUMED, ``PENDING``/``REJECTED`` start
            PENDING/REJECTED, ``None`` starts CONNECTED (a BootNotification is required).
        config: the tunable rules.
        identity: the station id, used in error texts only.
    """

    def __init__(
        self,
        version: Version,
        *,
        initial_status: RegistrationStatus | None = None,
        config: SupervisorConfig | None = None,
        identity: str = "",
    ) -> None:
        self.version = version
        self.config = config or SupervisorConfig()
        self.identity = identity
        self._pending_csms = (
            self.config.pending_csms_actions
            if self.config.pending_csms_actions is not None
            else default_pending_csms_actions(version)
        )
        self._state = StationState.OFFLINE
        self._status = initial_status
        self._generation = 0
        self._boot_id: str | None = None
        self._retry_not_before: float | None = None
        self._last_interval = 0
        self._triggers: list[_Trigger] = []
        self._reports: set[tuple[str, Any]] = set()

    # -- introspection -------------------------------------------------------------------

    @property
    def state(self) -> StationState:
        """The current state."""
        return self._state

    @property
    def status(self) -> RegistrationStatus | None:
        """The last boot answer still in force (``None`` while unregistered or rebooting)."""
        return self._status

    @property
    def generation(self) -> int:
        """Bumped on every connect, disconnect and BootNotification; tickets carry it."""
        return self._generation

    @property
    def triggers(self) -> tuple[tuple[frozenset[str], int | None, int | None], ...]:
        """The accepted triggers not yet used up, as (actions, evse, connector)."""
        return tuple((t.actions, t.evse, t.connector) for t in self._triggers)

    @property
    def expected_reports(self) -> frozenset[tuple[str, Any]]:
        """The (action, requestId) of report parts still expected while Pending."""
        return frozenset(self._reports)

    @property
    def is_accepted(self) -> bool:
        """Whether the station behaves as Accepted now (ACCEPTED or RESUMED)."""
        return self._state in (StationState.ACCEPTED, StationState.RESUMED)

    # -- connection ----------------------------------------------------------------------

    def restore(self, status: RegistrationStatus | None) -> None:
        """Set the remembered registration (from an earlier connection or a store).

        Raises:
            StateError: the station is connected (the status is only read on connect).
        """
        if self._state is not StationState.OFFLINE:
            raise StateError(f"station {self.identity!r}: restore() while connected")
        self._status = status

    def connect(self) -> StationState:
        """A connection was established; returns the state it starts in.

        Raises:
            StateError: already connected.
        """
        if self._state is not StationState.OFFLINE:
            raise StateError(f"station {self.identity!r} is already connected")
        self._generation += 1
        self._state = {
            None: StationState.CONNECTED,
            RegistrationStatus.ACCEPTED: StationState.RESUMED,
            RegistrationStatus.PENDING: StationState.PENDING,
            RegistrationStatus.REJECTED: StationState.REJECTED,
        }[self._status]
        return self._state

    def disconnect(self) -> None:
        """The connection is gone: forget triggers, report expectations and any boot in
        progress; keep the registration status for the next connection.  Idempotent."""
        if self._state is StationState.OFFLINE:
            return
        self._generation += 1
        self._state = StationState.OFFLINE
        self._boot_id = None
        self._clear_expectations()

    def _clear_expectations(self) -> None:
        self._triggers.clear()
        self._reports.clear()

    def _require_connected(self, what: str) -> None:
        if self._state is StationState.OFFLINE:
            raise StateError(f"station {self.identity!r} is not connected ({what})")

    # -- station CALLs -------------------------------------------------------------------

    def station_call(self, message_id: str, action: str, request: Payload, now: float) -> Verdict:
        """Decide about a CALL the station sent; updates the state.

        Args:
            message_id: the CALL's id (a BootNotification's id identifies its answer).
            action: the action name.
            request: the decoded request or its wire JSON (read only while Pending).
            now: the current time on the clock used for :meth:`boot_answered`.

        Raises:
            StateError: called while OFFLINE (a bug of the caller).
        """
        self._require_connected(f"station CALL {action}")
        if action == BOOT:
            return self._boot(message_id, now)
        state = self._state
        if state in (StationState.ACCEPTED, StationState.RESUMED):
            self._state = StationState.ACCEPTED
            return _ACCEPTED
        if state in (StationState.CONNECTED, StationState.BOOTING):
            if action in self.config.boot_race_actions:
                return Allowed("boot race allow-list")
            return self._refuse(action, "CALL before the station's BootNotification was Accepted")
        if state is StationState.REJECTED:
            return self._refuse(action, "CALL from a station whose BootNotification was Rejected")
        # PENDING
        if self._take_trigger(action, request):
            return Allowed("triggered")
        if self._take_report(action, request):
            return Allowed("requested report")
        return self._refuse(action, "Disallowed or unsolicited CALL while boot is Pending")

    def _refuse(self, action: str, description: str) -> Refused:
        return Refused(ErrorCode.SECURITY_ERROR, description, {"action": action})

    def _boot(self, message_id: str, now: float) -> Verdict:
        if self._state in (StationState.PENDING, StationState.REJECTED) and self._status in (
            RegistrationStatus.PENDING,
            RegistrationStatus.REJECTED,
        ):
            triggered = self._take_trigger(BOOT, {})
            early = (
                not triggered
                and self._retry_not_before is not None
                and now < self._retry_not_before
            )
            if early and self.config.early_boot is not EarlyBootPolicy.ALLOW:
                self._generation += 1
                self._clear_expectations()
                assert self._retry_not_before is not None
                if self.config.early_boot is EarlyBootPolicy.SECURITY_ERROR:
                    return self._refuse(BOOT, "BootNotification before the retry interval passed")
                remaining = max(1, math.ceil(self._retry_not_before - now))
                assert self._status is not None
                return RepeatBootAnswer(self._status, remaining)
        # a reboot: everything learnt about the previous boot is void
        self._generation += 1
        self._clear_expectations()
        self._state = StationState.BOOTING
        self._status = None
        self._boot_id = message_id
        return Allowed("boot")

    def boot_answered(
        self, message_id: str, status: RegistrationStatus | str, interval: int, now: float
    ) -> bool:
        """The CSMS answered the BootNotification ``message_id`` with ``status``/``interval``.

        Returns:
            ``True`` when the answer took effect; ``False`` when it answered a boot that a later
            BootNotification (or a disconnect) superseded, which changes nothing.
        """
        if self._state is not StationState.BOOTING or message_id != self._boot_id:
            return False
        status = RegistrationStatus(status)
        self._boot_id = None
        self._status = status
        self._last_interval = interval
        if status is RegistrationStatus.ACCEPTED:
            self._state = StationState.ACCEPTED
            self._retry_not_before = None
        else:
            self._state = (
                StationState.PENDING
                if status is RegistrationStatus.PENDING
                else StationState.REJECTED
            )
            # interval 0: the station picks a value itself; nothing to enforce
            self._retry_not_before = now + interval if interval > 0 else None
        return True

    def boot_failed(self, message_id: str) -> bool:
        """The BootNotification ``message_id`` was answered with a CALLERROR (handler error):
        the station is back to not booted.  Returns ``False`` for a superseded boot."""
        if self._state is not StationState.BOOTING or message_id != self._boot_id:
            return False
        self._boot_id = None
        self._state = StationState.CONNECTED
        return True

    def station_send(self, action: str) -> bool:
        """Whether a 2.1 SEND from the station may be processed now (only when accepted;
        otherwise it is dropped, as a SEND is never answered)."""
        self._require_connected(f"station SEND {action}")
        return self.is_accepted

    def _take_trigger(self, action: str, request: Payload) -> bool:
        if not self._triggers:
            return False
        candidates = [t for t in self._triggers if action in t.actions]
        if not candidates:
            return False
        evse, connector = _instance(self.version, _wire(request))
        for trigger in candidates:
            if trigger.evse is not None and evse is not None and trigger.evse != evse:
                continue
            if (
                trigger.connector is not None
                and connector is not None
                and trigger.connector != connector
            ):
                continue
            more_specific = (trigger.evse is None and evse is not None) or (
                trigger.connector is None and connector is not None
            )
            if not more_specific:
                self._triggers.remove(trigger)
                return True
            if (evse, connector) in trigger.seen:
                continue
            trigger.seen.add((evse, connector))
            return True
        return False

    def _take_report(self, action: str, request: Payload) -> bool:
        if not self._reports:
            return False
        wire = _wire(request)
        key = (action, wire.get("requestId"))
        if key not in self._reports:
            return False
        if not wire.get("tbc", False):
            self._reports.discard(key)
        return True

    # -- CSMS CALLs ----------------------------------------------------------------------

    def check_csms_call(self, action: str, request: Payload) -> CallTicket:
        """May the CSMS send ``action`` now?  Changes no state.

        Returns:
            a ticket to pass to :meth:`csms_call_answered` with the answer.

        Raises:
            StateError: with a message saying why not (nothing must be sent).
        """
        self._require_connected(f"CSMS CALL {action}")
        state = self._state
        who = f"station {self.identity!r}" if self.identity else "the station"
        if state in (StationState.CONNECTED, StationState.BOOTING):
            raise StateError(
                f"cannot send {action}: {who} has no answered BootNotification yet "
                f"({state.value}); the CSMS may send nothing before it"
            )
        if state is StationState.REJECTED:
            raise StateError(
                f"cannot send {action}: {who} was Rejected; the CSMS may not initiate any "
                "message until it boots again (B03.FR.03)"
            )
        if state is StationState.PENDING and action not in self._pending_csms:
            raise StateError(
                f"cannot send {action}: {who} is Pending and {action} is not in the Pending "
                f"allow-list ({', '.join(sorted(self._pending_csms))})"
            )
        if (
            self.is_accepted
            and action in _TRIGGER_ACTIONS
            and _wire(request).get("requestedMessage") == BOOT
        ):
            raise StateError(
                f"cannot send {action}(BootNotification): {who} is Accepted; a BootNotification "
                "may only be triggered while Pending (1.6 errata §3.40, F06.FR.17)"
            )
        return CallTicket(action, request, self._generation)

    def csms_call_answered(self, ticket: CallTicket, response: Payload) -> bool:
        """The station answered the CALL of ``ticket`` with ``response`` (a CALLRESULT).

        Records an accepted trigger or report request while Pending.  Returns whether anything
        was recorded; an answer to a CALL started before the latest boot, connect or disconnect
        is ignored.
        """
        if ticket.generation != self._generation or self._state is not StationState.PENDING:
            return False
        if ticket.action in _TRIGGER_ACTIONS:
            if not _status_accepted(_wire(response)):
                return False
            wire = _wire(ticket.request)
            targets = _trigger_targets(ticket.action, wire)
            if not targets:
                return False
            evse, connector = _instance(self.version, wire)
            self._triggers.append(_Trigger(targets, evse, connector))
            return True
        notify = _REPORTS.get(ticket.action)
        if notify is not None and _status_accepted(_wire(response)):
            self._reports.add((notify, _wire(ticket.request).get("requestId")))
            return True
        return False

    def allowed_csms_actions(self, actions: Iterable[str]) -> frozenset[str]:
        """Of ``actions``, those the CSMS may send in the current state (ignoring payloads)."""
        if self.is_accepted:
            return frozenset(actions)
        if self._state is StationState.PENDING:
            return frozenset(a for a in actions if a in self._pending_csms)
        return frozenset()
