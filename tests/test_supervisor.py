"""Plain synchronous tests of the pure registration state machine (``_supervisor``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocpp_trio import ErrorCode, StateError, Version
from ocpp_trio.protocol.supervisor import (
    Allowed,
    EarlyBootPolicy,
    Refused,
    RegistrationStatus,
    RepeatBootAnswer,
    StationState,
    Supervisor,
    SupervisorConfig,
    default_pending_csms_actions,
)

ACC = RegistrationStatus.ACCEPTED
PEND = RegistrationStatus.PENDING
REJ = RegistrationStatus.REJECTED
ALL_VERSIONS = list(Version)


def booted(version: Version, status: RegistrationStatus, *, interval: int = 0, **kw) -> Supervisor:
    sup = Supervisor(version, **kw)
    sup.connect()
    assert sup.station_call("b1", "BootNotification", {}, 0.0) == Allowed("boot")
    assert sup.state is StationState.BOOTING
    assert sup.boot_answered("b1", status, interval, 0.0)
    return sup


def is_security_error(verdict: object, action: str) -> bool:
    return (
        isinstance(verdict, Refused)
        and verdict.code is ErrorCode.SECURITY_ERROR
        and dict(verdict.details) == {"action": action}
    )


def trigger(sup: Supervisor, requested: str, *, accepted: bool = True, **fields) -> bool:
    request = {"requestedMessage": requested, **fields}
    ticket = sup.check_csms_call("TriggerMessage", request)
    return sup.csms_call_answered(ticket, {"status": "Accepted" if accepted else "Rejected"})


# -- before the boot answer ---------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_calls_before_boot_get_security_error(version: Version) -> None:
    sup = Supervisor(version)
    assert sup.state is StationState.OFFLINE
    assert sup.connect() is StationState.CONNECTED
    for action in ("Heartbeat", "StatusNotification", "Authorize", "DataTransfer"):
        assert is_security_error(sup.station_call("1", action, {}, 0.0), action)
    assert sup.state is StationState.CONNECTED
    with pytest.raises(StateError, match="no answered BootNotification"):
        sup.check_csms_call("GetVariables", {})


def test_boot_race_allow_list() -> None:
    sup = Supervisor(Version.V16, config=SupervisorConfig(boot_race_actions={"StatusNotification"}))
    sup.connect()
    assert sup.station_call("1", "StatusNotification", {}, 0.0) == Allowed("boot race allow-list")
    assert is_security_error(sup.station_call("2", "Heartbeat", {}, 0.0), "Heartbeat")
    sup.station_call("3", "BootNotification", {}, 0.0)
    assert sup.station_call("4", "StatusNotification", {}, 0.0) == Allowed("boot race allow-list")
    sup.boot_answered("3", PEND, 0, 0.0)
    # the race allow-list does not apply once Pending
    assert is_security_error(
        sup.station_call("5", "StatusNotification", {}, 0.0), "StatusNotification"
    )


def test_booting_refuses_other_calls_and_csms_calls() -> None:
    sup = Supervisor(Version.V201)
    sup.connect()
    sup.station_call("b1", "BootNotification", {}, 0.0)
    assert is_security_error(sup.station_call("2", "Heartbeat", {}, 0.0), "Heartbeat")
    assert sup.state is StationState.BOOTING
    with pytest.raises(StateError, match="booting"):
        sup.check_csms_call("TriggerMessage", {"requestedMessage": "BootNotification"})


def test_second_boot_supersedes_the_first() -> None:
    sup = Supervisor(Version.V201)
    sup.connect()
    sup.station_call("b1", "BootNotification", {}, 0.0)
    sup.station_call("b2", "BootNotification", {}, 0.0)
    assert not sup.boot_answered("b1", ACC, 300, 0.0)
    assert sup.state is StationState.BOOTING
    assert sup.boot_answered("b2", PEND, 10, 0.0)
    assert sup.state is StationState.PENDING
    assert not sup.boot_answered("b2", ACC, 10, 0.0)  # answered twice: no effect
    assert sup.state is StationState.PENDING


def test_boot_failed_returns_to_connected() -> None:
    sup = Supervisor(Version.V21)
    sup.connect()
    sup.station_call("b1", "BootNotification", {}, 0.0)
    assert not sup.boot_failed("other")
    assert sup.boot_failed("b1")
    assert sup.state is StationState.CONNECTED
    assert sup.status is None


# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_accepted_allows_everything(version: Version) -> None:
    sup = booted(version, ACC, interval=300)
    assert sup.state is StationState.ACCEPTED
    assert sup.station_call("1", "Heartbeat", {}, 1.0) == Allowed("accepted")
    ticket = sup.check_csms_call("Reset", {"type": "Immediate"})
    assert ticket.action == "Reset"
    assert not sup.csms_call_answered(ticket, {"status": "Accepted"})


@pytest.mark.parametrize("action", ["TriggerMessage", "ExtendedTriggerMessage"])
def test_trigger_boot_refused_once_accepted(action: str) -> None:
    sup = booted(Version.V16, ACC)
    with pytest.raises(StateError, match="errata"):
        sup.check_csms_call(action, {"requestedMessage": "BootNotification"})
    sup.check_csms_call(action, {"requestedMessage": "Heartbeat"})


def test_reboot_from_accepted_goes_back_through_booting() -> None:
    sup = booted(Version.V201, ACC)
    assert sup.station_call("b2", "BootNotification", {}, 5.0) == Allowed("boot")
    assert sup.state is StationState.BOOTING
    assert sup.status is None
    assert is_security_error(sup.station_call("x", "Heartbeat", {}, 5.0), "Heartbeat")
    assert sup.boot_answered("b2", ACC, 300, 5.0)
    assert sup.state is StationState.ACCEPTED


# -- pending ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_pending_refuses_unsolicited_calls(version: Version) -> None:
    sup = booted(version, PEND)
    for action in ("Heartbeat", "StatusNotification", "Authorize", "NotifyReport", "MeterValues"):
        assert is_security_error(sup.station_call("1", action, {}, 0.0), action)
    assert sup.state is StationState.PENDING


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_pending_csms_allow_list(version: Version) -> None:
    sup = booted(version, PEND)
    for action in default_pending_csms_actions(version):
        sup.check_csms_call(action, {"requestedMessage": "Heartbeat"})
    for action in ("Reset", "RemoteStartTransaction", "RequestStartTransaction", "DataTransfer"):
        with pytest.raises(StateError, match="Pending allow-list"):
            sup.check_csms_call(action, {})


def test_pending_csms_allow_list_configurable() -> None:
    cfg = SupervisorConfig(pending_csms_actions={"Reset"})
    sup = booted(Version.V201, PEND, config=cfg)
    sup.check_csms_call("Reset", {})
    with pytest.raises(StateError):
        sup.check_csms_call("GetVariables", {})


def test_pending_trigger_boot_allowed() -> None:
    sup = booted(Version.V201, PEND, interval=60)
    assert trigger(sup, "BootNotification")
    # triggered: allowed although the interval has not passed
    assert sup.station_call("b2", "BootNotification", {}, 1.0) == Allowed("boot")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_triggered_message_allowed_exactly_once(version: Version) -> None:
    sup = booted(version, PEND)
    assert trigger(sup, "Heartbeat")
    assert sup.station_call("1", "Heartbeat", {}, 0.0) == Allowed("triggered")
    assert is_security_error(sup.station_call("2", "Heartbeat", {}, 0.0), "Heartbeat")


def test_rejected_trigger_is_not_recorded() -> None:
    sup = booted(Version.V201, PEND)
    assert not trigger(sup, "Heartbeat", accepted=False)
    assert sup.triggers == ()
    assert is_security_error(sup.station_call("1", "Heartbeat", {}, 0.0), "Heartbeat")


def test_trigger_matched_by_evse_2x() -> None:
    sup = booted(Version.V201, PEND)
    assert trigger(sup, "StatusNotification", evse={"id": 1, "connectorId": 1})
    other = {"evseId": 2, "connectorId": 1}
    assert is_security_error(
        sup.station_call("1", "StatusNotification", other, 0.0), "StatusNotification"
    )
    other_connector = {"evseId": 1, "connectorId": 2}
    verdict = sup.station_call("2", "StatusNotification", other_connector, 0.0)
    assert is_security_error(verdict, "StatusNotification")
    right = {"evseId": 1, "connectorId": 1}
    assert sup.station_call("3", "StatusNotification", right, 0.0) == Allowed("triggered")
    assert is_security_error(
        sup.station_call("4", "StatusNotification", right, 0.0), "StatusNotification"
    )


def test_trigger_transaction_event_nested_evse() -> None:
    sup = booted(Version.V21, PEND)
    assert trigger(sup, "TransactionEvent", evse={"id": 2})
    wrong = {"evse": {"id": 1, "connectorId": 1}}
    assert isinstance(sup.station_call("1", "TransactionEvent", wrong, 0.0), Refused)
    right = {"evse": {"id": 2, "connectorId": 1}}
    assert sup.station_call("2", "TransactionEvent", right, 0.0) == Allowed("triggered")
    # the trigger named EVSE 2 only; the message was more specific (connector 1): the same
    # instance is refused a second time, a different connector of EVSE 2 is let through
    assert isinstance(sup.station_call("3", "TransactionEvent", right, 0.0), Refused)
    right2 = {"evse": {"id": 2, "connectorId": 2}}
    assert sup.station_call("4", "TransactionEvent", right2, 0.0) == Allowed("triggered")


def test_trigger_16_connector_and_all_connectors() -> None:
    sup = booted(Version.V16, PEND)
    assert trigger(sup, "StatusNotification", connectorId=1)
    assert isinstance(sup.station_call("1", "StatusNotification", {"connectorId": 2}, 0.0), Refused)
    assert sup.station_call("2", "StatusNotification", {"connectorId": 1}, 0.0) == Allowed(
        "triggered"
    )
    assert sup.triggers == ()
    # no connectorId: "for all connectors" -- each connector once
    assert trigger(sup, "StatusNotification")
    for connector in (0, 1, 2):
        verdict = sup.station_call("x", "StatusNotification", {"connectorId": connector}, 0.0)
        assert verdict == Allowed("triggered")
    assert isinstance(sup.station_call("y", "StatusNotification", {"connectorId": 1}, 0.0), Refused)


@pytest.mark.parametrize(
    ("version", "action", "requested"),
    [
        (Version.V201, "TriggerMessage", "SignChargingStationCertificate"),
        (Version.V201, "TriggerMessage", "SignV2GCertificate"),
        (Version.V201, "TriggerMessage", "SignCombinedCertificate"),
        (Version.V21, "TriggerMessage", "SignV2G20Certificate"),
        (Version.V16, "ExtendedTriggerMessage", "SignChargePointCertificate"),
    ],
)
def test_sign_certificate_triggers(version: Version, action: str, requested: str) -> None:
    sup = booted(version, PEND)
    ticket = sup.check_csms_call(action, {"requestedMessage": requested})
    assert sup.csms_call_answered(ticket, {"status": "Accepted"})
    assert sup.station_call("1", "SignCertificate", {}, 0.0) == Allowed("triggered")
    assert isinstance(sup.station_call("2", "SignCertificate", {}, 0.0), Refused)


def test_custom_trigger_2_1() -> None:
    sup = booted(Version.V21, PEND)
    assert trigger(sup, "CustomTrigger", customTrigger="VendorThing")
    assert isinstance(sup.station_call("1", "CustomTrigger", {}, 0.0), Refused)
    assert sup.station_call("2", "VendorThing", {}, 0.0) == Allowed("triggered")
    # a CustomTrigger without a name allows nothing
    assert not trigger(sup, "CustomTrigger")


def test_extended_trigger_firmware_status_16() -> None:
    sup = booted(Version.V16, PEND)
    ticket = sup.check_csms_call(
        "ExtendedTriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}
    )
    assert sup.csms_call_answered(ticket, {"status": "Accepted"})
    assert sup.station_call("1", "SignedFirmwareStatusNotification", {}, 0.0) == Allowed(
        "triggered"
    )


def test_late_trigger_answer_after_reboot_dropped() -> None:
    sup = booted(Version.V201, PEND)
    ticket = sup.check_csms_call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    sup.station_call("b2", "BootNotification", {}, 0.0)
    sup.boot_answered("b2", PEND, 0, 0.0)
    assert not sup.csms_call_answered(ticket, {"status": "Accepted"})
    assert isinstance(sup.station_call("1", "Heartbeat", {}, 0.0), Refused)


def test_triggers_cleared_on_reboot_and_disconnect() -> None:
    sup = booted(Version.V201, PEND)
    assert trigger(sup, "Heartbeat")
    sup.station_call("b2", "BootNotification", {}, 0.0)
    assert sup.triggers == ()
    sup.boot_answered("b2", PEND, 0, 0.0)
    assert trigger(sup, "Heartbeat")
    sup.disconnect()
    assert sup.triggers == ()
    assert sup.connect() is StationState.PENDING
    assert isinstance(sup.station_call("1", "Heartbeat", {}, 0.0), Refused)


@pytest.mark.parametrize("action", ["GetBaseReport", "GetReport"])
def test_notify_report_after_report_request(action: str) -> None:
    sup = booted(Version.V201, PEND)
    ticket = sup.check_csms_call(action, {"requestId": 7, "reportBase": "FullInventory"})
    assert sup.csms_call_answered(ticket, {"status": "Accepted"})
    assert isinstance(
        sup.station_call("0", "NotifyReport", {"requestId": 8, "seqNo": 0}, 0.0), Refused
    )
    part = {"requestId": 7, "seqNo": 0, "tbc": True}
    assert sup.station_call("1", "NotifyReport", part, 0.0) == Allowed("requested report")
    last = {"requestId": 7, "seqNo": 1}
    assert sup.station_call("2", "NotifyReport", last, 0.0) == Allowed("requested report")
    assert sup.expected_reports == frozenset()
    assert isinstance(sup.station_call("3", "NotifyReport", last, 0.0), Refused)


def test_report_not_accepted_is_not_expected() -> None:
    sup = booted(Version.V201, PEND)
    ticket = sup.check_csms_call("GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
    assert not sup.csms_call_answered(ticket, {"status": "EmptyResultSet"})
    assert isinstance(sup.station_call("1", "NotifyReport", {"requestId": 7}, 0.0), Refused)


# -- boot interval ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [PEND, REJ])
def test_early_boot_repeats_answer(status: RegistrationStatus) -> None:
    sup = booted(Version.V201, status, interval=60)
    assert sup.station_call("b2", "BootNotification", {}, 10.2) == RepeatBootAnswer(status, 50)
    assert sup.state is StationState(status.value.lower())
    assert sup.station_call("b3", "BootNotification", {}, 60.0) == Allowed("boot")


def test_early_boot_security_error_policy() -> None:
    cfg = SupervisorConfig(early_boot=EarlyBootPolicy.SECURITY_ERROR)
    sup = booted(Version.V16, REJ, interval=60, config=cfg)
    assert is_security_error(
        sup.station_call("b2", "BootNotification", {}, 1.0), "BootNotification"
    )
    assert sup.state is StationState.REJECTED


def test_early_boot_allow_policy_and_interval_zero() -> None:
    cfg = SupervisorConfig(early_boot=EarlyBootPolicy.ALLOW)
    sup = booted(Version.V16, PEND, interval=60, config=cfg)
    assert sup.station_call("b2", "BootNotification", {}, 1.0) == Allowed("boot")
    sup = booted(Version.V16, PEND, interval=0)
    assert sup.station_call("b2", "BootNotification", {}, 0.0) == Allowed("boot")


# -- rejected -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_rejected(version: Version) -> None:
    sup = booted(version, REJ)
    assert sup.state is StationState.REJECTED
    for action in ("Heartbeat", "StatusNotification", "SignCertificate"):
        assert is_security_error(sup.station_call("1", action, {}, 0.0), action)
    for action in ("GetVariables", "TriggerMessage", "GetConfiguration"):
        with pytest.raises(StateError, match="Rejected"):
            sup.check_csms_call(action, {"requestedMessage": "BootNotification"})
    assert sup.allowed_csms_actions(["GetVariables"]) == frozenset()


# -- connection and recovery --------------------------------------------------------------


def test_resumed_after_accepted() -> None:
    sup = Supervisor(Version.V201, initial_status=ACC)
    assert sup.connect() is StationState.RESUMED
    assert sup.is_accepted
    sup.check_csms_call("Reset", {})
    assert sup.station_call("1", "Heartbeat", {}, 0.0) == Allowed("accepted")
    assert sup.state is StationState.ACCEPTED
    sup.disconnect()
    assert sup.connect() is StationState.RESUMED
    sup.station_call("b", "BootNotification", {}, 0.0)
    assert sup.state is StationState.BOOTING


def test_disconnect_while_booting_forgets_acceptance() -> None:
    sup = booted(Version.V201, ACC)
    sup.station_call("b2", "BootNotification", {}, 0.0)
    sup.disconnect()
    sup.disconnect()  # idempotent
    assert sup.state is StationState.OFFLINE
    assert not sup.boot_answered("b2", ACC, 10, 0.0)
    assert sup.connect() is StationState.CONNECTED


def test_offline_and_double_connect() -> None:
    sup = Supervisor(Version.V201, identity="CS1")
    with pytest.raises(StateError, match="not connected"):
        sup.check_csms_call("Reset", {})
    with pytest.raises(StateError, match="not connected"):
        sup.station_call("1", "Heartbeat", {}, 0.0)
    sup.connect()
    with pytest.raises(StateError, match="already connected"):
        sup.connect()


@pytest.mark.parametrize(
    ("initial", "state"),
    [(None, StationState.CONNECTED), (PEND, StationState.PENDING), (REJ, StationState.REJECTED)],
)
def test_initial_status(initial: RegistrationStatus | None, state: StationState) -> None:
    assert Supervisor(Version.V21, initial_status=initial).connect() is state


def test_station_send_only_when_accepted() -> None:
    sup = booted(Version.V21, PEND)
    assert not sup.station_send("NotifyPeriodicEventStream")
    sup = booted(Version.V21, ACC)
    assert sup.station_send("NotifyPeriodicEventStream")


def test_supervisor_is_trio_free() -> None:
    program = (
        "import importlib, sys, types\n"
        "from importlib.util import find_spec\n"
        "package = types.ModuleType('ocpp_trio')\n"
        "package.__path__ = list(find_spec('ocpp_trio').submodule_search_locations)\n"
        "sys.modules['ocpp_trio'] = package\n"
        "importlib.import_module('ocpp_trio.protocol.supervisor')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'trio_websocket')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
