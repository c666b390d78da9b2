"""Stateful property test of the registration state machine.

Random interleavings of connects/disconnects, station CALLs (boot, triggered, report parts,
unsolicited), boot answers (current and stale), CSMS CALLs and their answers (in any order, late
ones included) and the passing of time, checked against a small independent model of the rules.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ocpp_trio import ErrorCode, StateError, Version
from ocpp_trio.protocol.supervisor import (
    Allowed,
    CallTicket,
    Refused,
    RegistrationStatus,
    RepeatBootAnswer,
    StationState,
    Supervisor,
    default_pending_csms_actions,
)

S = StationState
STATION_ACTIONS = [
    "Heartbeat",
    "StatusNotification",
    "NotifyReport",
    "LogStatusNotification",
    "SignCertificate",
    "Authorize",
    "DataTransfer",
    "MeterValues",
]
TRIGGERS = [
    "Heartbeat",
    "BootNotification",
    "LogStatusNotification",
    "StatusNotification",
    "SignChargingStationCertificate",
    "MeterValues",
]
CSMS_ACTIONS = [
    "TriggerMessage",
    "GetBaseReport",
    "GetVariables",
    "Reset",
    "SetVariables",
    "GetConfiguration",
    "ChangeConfiguration",
    "RemoteStartTransaction",
]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sup: Supervisor
        self.version = Version.V201
        self.now = 0.0
        self.boot_ids: list[str] = []
        self.counter = 0
        self.tickets: list[tuple[CallTicket, int]] = []
        # the model
        self.m_state = S.OFFLINE
        self.m_status: RegistrationStatus | None = None
        self.m_boot: str | None = None
        self.m_epoch = 0
        self.m_retry: float | None = None
        # triggers as (action, connector or None); reports as requestIds
        self.m_triggers: list[tuple[str, int | None]] = []
        self.m_reports: set[int] = set()

    @initialize(
        version=st.sampled_from(list(Version)), initial=st.sampled_from([None, *RegistrationStatus])
    )
    def setup(self, version: Version, initial: RegistrationStatus | None) -> None:
        self.version = version
        self.sup = Supervisor(version, initial_status=initial)
        self.m_status = initial

    def next_id(self) -> str:
        self.counter += 1
        return str(self.counter)

    def forget(self) -> None:
        self.m_epoch += 1
        self.m_triggers.clear()
        self.m_reports.clear()

    # -- connection --------------------------------------------------------------------

    @precondition(lambda self: self.m_state is S.OFFLINE)
    @rule()
    def connect(self) -> None:
        state = self.sup.connect()
        self.m_epoch += 1
        self.m_state = {
            None: S.CONNECTED,
            RegistrationStatus.ACCEPTED: S.RESUMED,
            RegistrationStatus.PENDING: S.PENDING,
            RegistrationStatus.REJECTED: S.REJECTED,
        }[self.m_status]
        assert state is self.m_state

    @rule()
    def disconnect(self) -> None:
        self.sup.disconnect()
        if self.m_state is not S.OFFLINE:
            self.forget()
        self.m_state = S.OFFLINE
        self.m_boot = None

    @rule(seconds=st.sampled_from([0.5, 1.0, 7.0, 30.0, 100.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    # -- station CALLs -----------------------------------------------------------------

    @precondition(lambda self: self.m_state is not S.OFFLINE)
    @rule()
    def station_boot(self) -> None:
        message_id = self.next_id()
        verdict = self.sup.station_call(message_id, "BootNotification", {}, self.now)
        triggered = any(a == "BootNotification" for a, _ in self.m_triggers)
        if (
            self.m_state in (S.PENDING, S.REJECTED)
            and not triggered
            and self.m_retry is not None
            and self.now < self.m_retry
        ):
            assert self.m_status is not None
            event("early boot repeated")
            assert verdict == RepeatBootAnswer(
                self.m_status, max(1, math.ceil(self.m_retry - self.now))
            )
            self.forget()
            return
        assert verdict == Allowed("boot")
        self.forget()
        self.m_state = S.BOOTING
        self.m_status = None
        self.m_boot = message_id
        self.boot_ids.append(message_id)

    @precondition(lambda self: self.boot_ids)
    @rule(
        status=st.sampled_from(list(RegistrationStatus)),
        interval=st.sampled_from([0, 10, 60]),
        which=st.integers(0, 3),
    )
    def boot_answer(self, status: RegistrationStatus, interval: int, which: int) -> None:
        message_id = self.boot_ids[max(0, len(self.boot_ids) - 1 - which)]
        applied = self.sup.boot_answered(message_id, status, interval, self.now)
        expect = self.m_state is S.BOOTING and message_id == self.m_boot
        assert applied == expect
        if expect:
            self.m_boot = None
            self.m_status = status
            self.m_state = {
                RegistrationStatus.ACCEPTED: S.ACCEPTED,
                RegistrationStatus.PENDING: S.PENDING,
                RegistrationStatus.REJECTED: S.REJECTED,
            }[status]
            self.m_retry = (
                None
                if status is RegistrationStatus.ACCEPTED or interval == 0
                else self.now + interval
            )

    @precondition(lambda self: self.m_state is S.PENDING and self.m_triggers)
    @rule(which=st.integers(0, 3), connector=st.sampled_from([None, 1, 2]))
    def station_triggered_call(self, which: int, connector: int | None) -> None:
        action, _ = self.m_triggers[min(which, len(self.m_triggers) - 1)]
        if action == "BootNotification":
            self.station_boot()
        else:
            self.station_call(action, connector, 1, False)

    @precondition(lambda self: self.m_state is S.PENDING)
    @rule(requested=st.sampled_from(TRIGGERS), connector=st.sampled_from([None, 1]))
    def csms_trigger_accepted(self, requested: str, connector: int | None) -> None:
        self.csms_call("TriggerMessage", requested, connector, 1)
        if self.tickets:
            self.csms_answer(len(self.tickets) - 1, True)

    @precondition(lambda self: self.m_state is not S.OFFLINE)
    @rule(
        action=st.sampled_from(STATION_ACTIONS),
        connector=st.sampled_from([None, 1, 2]),
        request_id=st.sampled_from([1, 2]),
        tbc=st.booleans(),
    )
    def station_call(self, action: str, connector: int | None, request_id: int, tbc: bool) -> None:
        payload: dict[str, Any] = {}
        if connector is not None:
            payload["evseId" if self.version is not Version.V16 else "connectorId"] = connector
        if action == "NotifyReport":
            payload = {"requestId": request_id, "tbc": tbc}
        verdict = self.sup.station_call(self.next_id(), action, payload, self.now)
        if self.m_state in (S.ACCEPTED, S.RESUMED):
            assert verdict == Allowed("accepted")
            self.m_state = S.ACCEPTED
            return
        if self.m_state is S.PENDING:
            for i, (t_action, t_conn) in enumerate(self.m_triggers):
                if t_action != action:
                    continue
                if t_conn is not None and connector is not None and t_conn != connector:
                    continue
                if t_conn is None and connector is not None:
                    # unscoped trigger, scoped message: the model does not track instances,
                    # so accept whatever the supervisor said as long as it is well-formed
                    assert isinstance(verdict, (Allowed, Refused))
                    if isinstance(verdict, Allowed):
                        assert verdict.reason == "triggered"
                        event("triggered CALL allowed per connector")
                    return
                del self.m_triggers[i]
                assert verdict == Allowed("triggered")
                event("triggered CALL allowed")
                return
            if action == "NotifyReport" and request_id in self.m_reports:
                assert verdict == Allowed("requested report")
                event("report part allowed")
                if not tbc:
                    self.m_reports.discard(request_id)
                return
        assert isinstance(verdict, Refused)
        assert verdict.code is ErrorCode.SECURITY_ERROR
        assert dict(verdict.details) == {"action": action}

    # -- CSMS CALLs --------------------------------------------------------------------

    @precondition(lambda self: self.m_state is not S.OFFLINE)
    @rule(
        action=st.sampled_from(CSMS_ACTIONS),
        requested=st.sampled_from(TRIGGERS),
        connector=st.sampled_from([None, 1]),
        request_id=st.sampled_from([1, 2]),
    )
    def csms_call(
        self, action: str, requested: str, connector: int | None, request_id: int
    ) -> None:
        payload: dict[str, Any] = {"requestedMessage": requested, "requestId": request_id}
        if connector is not None:
            if self.version is Version.V16:
                payload["connectorId"] = connector
            else:
                payload["evse"] = {"id": connector}
        allowed = (
            self.m_state in (S.ACCEPTED, S.RESUMED)
            and not (action == "TriggerMessage" and requested == "BootNotification")
        ) or (self.m_state is S.PENDING and action in default_pending_csms_actions(self.version))
        try:
            ticket = self.sup.check_csms_call(action, payload)
        except StateError:
            assert not allowed
            return
        assert allowed
        self.tickets.append((ticket, self.m_epoch))

    @precondition(lambda self: self.tickets)
    @rule(which=st.integers(0, 5), accepted=st.booleans())
    def csms_answer(self, which: int, accepted: bool) -> None:
        ticket, epoch = self.tickets.pop(min(which, len(self.tickets) - 1))
        recorded = self.sup.csms_call_answered(
            ticket, {"status": "Accepted" if accepted else "Rejected"}
        )
        fresh = epoch == self.m_epoch and self.m_state is S.PENDING and accepted
        request = ticket.request
        assert isinstance(request, dict)
        if ticket.action == "TriggerMessage" and fresh:
            assert recorded
            target = request["requestedMessage"]
            if target.startswith("Sign"):
                target = "SignCertificate"
            conn = (
                request.get("connectorId")
                if self.version is Version.V16
                else request.get("evse", {}).get("id")
            )
            self.m_triggers.append((target, conn))
        elif ticket.action == "GetBaseReport" and fresh:
            assert recorded
            self.m_reports.add(request["requestId"])
        else:
            assert not recorded

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def model_agrees(self) -> None:
        if not hasattr(self, "sup"):
            return
        assert self.sup.state is self.m_state
        assert self.sup.status == self.m_status
        if self.m_state is not S.PENDING:
            assert self.sup.triggers == ()
            assert self.sup.expected_reports == frozenset()
        assert self.sup.is_accepted == (self.m_state in (S.ACCEPTED, S.RESUMED))


SupervisorMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestSupervisorStateful = SupervisorMachine.TestCase
