"""What each finished exchange means for a station's machines (sans-IO, no trio).

The station hands every finished exchange it cares about to its machines as an
:class:`Observation`: the station's CALLs with the answer we sent, and our CALLs with the answer
the station sent.  :func:`interpret` turns one observation into *effects*: commands for an EVSE,
a transaction or a report task, a new device model, events to publish, remote starts to track.
It reads the machines' current state through :class:`View` and changes nothing itself, so the
mapping from OCPP messages to state changes can be tested on its own.

Secrets never get this far: :func:`redact_observation` hides them (write-only values, see
:mod:`ocpp_trio.domain.redaction`) before an observation is journaled or interpreted, so neither
the store nor the device model nor an event ever holds one.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

import attrs

from ocpp_trio.domain.device_model import (
    OCPP16_COMPONENT,
    ComponentRef,
    DeviceModel,
    SetVariable,
    VariableRef,
    VariableResult,
    apply_get_results,
    apply_set_results,
    as_int_text,
)
from ocpp_trio.domain.events import (
    FirmwareStatusChanged,
    LogStatusChanged,
    MachineEvent,
    MonitoringEvent,
    RebootRequired,
    SecurityEvent,
)
from ocpp_trio.domain.evse import (
    AvailabilityRequest,
    ConnectorsKnown,
    EvseCommand,
    RequestedAvailability,
    Reservation,
    ReservationEnded,
    ReservationMade,
    ReservationState,
    StatusReport,
)
from ocpp_trio.domain.redaction import REDACTED_ACTIONS, redact_message
from ocpp_trio.domain.reports import PART_ACTIONS, REPORT_KINDS
from ocpp_trio.domain.transactions import (
    RemoteStart,
    Transaction,
    TransactionEventRecord,
    record_from_meter_values_16,
    record_from_start_transaction,
    record_from_stop_transaction,
    record_from_transaction_event,
)
from ocpp_trio.domain.wire import Json, as_int, as_list, as_map, as_str, as_time
from ocpp_trio.messages._base import Message, Response
from ocpp_trio.protocol.version import Version

__all__ = [
    "CSMS_OBSERVED_ACTIONS",
    "OBSERVED_ACTIONS",
    "AddRemoteStart",
    "DropRemoteStart",
    "Effect",
    "NewModel",
    "Observation",
    "Publish",
    "ToEvse",
    "ToReport",
    "ToTransaction",
    "View",
    "interpret",
    "redact_observation",
]


@attrs.frozen(kw_only=True)
class Observation:
    """One finished exchange.

    Attributes:
        action: the action.
        by_station: ``True`` for the station's CALL (answered by us), ``False`` for ours.
        request: the CALL's payload.
        response: the CALLRESULT's payload; ``None`` when the exchange failed.
        at: when it finished (UTC).
    """

    action: str
    by_station: bool
    request: Message
    response: Response | None
    at: datetime.datetime


def redact_observation(observation: Observation, device_model: DeviceModel) -> Observation:
    """``observation`` with its secrets hidden (the same object when it holds none)."""
    if observation.action not in REDACTED_ACTIONS:
        return observation
    request = redact_message(observation.request, device_model)
    response = observation.response
    if response is not None:
        response = redact_message(response, device_model)
    if request is observation.request and response is observation.response:
        return observation
    return attrs.evolve(observation, request=request, response=response)


# -- effects -----------------------------------------------------------------------------------


@attrs.frozen
class ToEvse:
    """A command for the task of EVSE ``evse_id`` (started if needed)."""

    evse_id: int
    command: EvseCommand


@attrs.frozen(kw_only=True)
class ToTransaction:
    """An event for, or a remote-start link to, the task of one transaction."""

    transaction_id: str
    record: TransactionEventRecord | None = None
    link: int | None = None


@attrs.frozen(kw_only=True)
class ToReport:
    """A part of, or the station's answer to the request of, one report."""

    kind: str
    request_id: int
    part: Message | None = None
    request: Message | None = None
    answer: str | None = None


@attrs.frozen
class Publish:
    """An event for the subscribers."""

    event: MachineEvent


@attrs.frozen
class NewModel:
    """The device model changed (``count`` entries were touched)."""

    model: DeviceModel
    source: str
    count: int


@attrs.frozen
class AddRemoteStart:
    """Track a remote start the station accepted."""

    remote_start: RemoteStart


@attrs.frozen
class DropRemoteStart:
    """A remote start was matched to its transaction."""

    remote_start_id: int


Effect = ToEvse | ToTransaction | ToReport | Publish | NewModel | AddRemoteStart | DropRemoteStart


class View(Protocol):
    """What :func:`interpret` reads of the machines' state."""

    @property
    def identity(self) -> str: ...

    @property
    def device_model(self) -> DeviceModel: ...

    @property
    def remote_starts(self) -> Mapping[int, RemoteStart]: ...

    def transaction(self, transaction_id: str) -> Transaction | None: ...

    def find_reservation(self, reservation_id: int) -> Reservation | None: ...

    def open_transactions(self) -> Iterable[Transaction]: ...

    def take_remote_start_id(self, id_token: str, evse_id: int | None) -> int:
        """The id to give a 1.6 remote start (one a helper reserved, else a new one)."""
        ...


_STATION_ACTIONS: Final = frozenset(
    {
        "BootNotification",
        "StatusNotification",
        "NotifyEvent",
        "TransactionEvent",
        "StartTransaction",
        "StopTransaction",
        "MeterValues",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "FirmwareStatusNotification",
        "SignedFirmwareStatusNotification",
        "LogStatusNotification",
        "DiagnosticsStatusNotification",
        *PART_ACTIONS,
    }
)
CSMS_OBSERVED_ACTIONS: Final = frozenset(
    {
        "ChangeAvailability",
        "ReserveNow",
        "CancelReservation",
        "RemoteStartTransaction",
        "RequestStartTransaction",
        "GetVariables",
        "SetVariables",
        "GetConfiguration",
        "ChangeConfiguration",
        *REPORT_KINDS,
    }
)
#: the actions whose exchanges the machines look at
OBSERVED_ACTIONS: Final = _STATION_ACTIONS | CSMS_OBSERVED_ACTIONS

_ACCEPTED: Final = "Accepted"


def may_have_effects(action: str, by_station: bool, answered: bool, version: Version) -> bool:
    """Whether :func:`interpret` can return effects for an observation of ``action``
    (``answered``: it has a response) (a cheap pre-check: when ``False`` it certainly returns
    none, so the exchange need not be dispatched)."""
    if by_station:
        # 2.x MeterValues carry no transaction: the machines keep nothing of them
        return action in _STATION_ACTIONS and (action != "MeterValues" or version is Version.V16)
    return answered and action in CSMS_OBSERVED_ACTIONS


def interpret(
    view: View, observation: Observation, version: Version, wire: Json | None = None
) -> list[Effect]:
    """The effects of one finished exchange (an empty list when it changes nothing).

    The messages are read as wire JSON: ``wire``, the request's JSON object as it came (the
    one the request was decoded from), else the request encoded again.  Both read the same:
    decoding changes only date-times (parsed) and draft-06 integers (``1.0`` becomes ``1``),
    and the readers of :mod:`~ocpp_trio.domain.wire` read the wire forms of those as the
    codec does.
    """
    request = observation.request.to_json() if wire is None else wire
    action = observation.action
    if observation.by_station:
        if action in _STATION_ACTIONS:
            return _station_call(view, observation, request, version)
        return []
    if observation.response is None or action not in CSMS_OBSERVED_ACTIONS:
        return []
    return _csms_call(view, observation, request, observation.response.to_json(), version)


# -- station CALLs -----------------------------------------------------------------------------


def _station_call(view: View, obs: Observation, request: Json, version: Version) -> list[Effect]:
    action, at, v16 = obs.action, obs.at, version is Version.V16
    if action == "BootNotification":
        return [ToEvse(0, ConnectorsKnown(frozenset()))]
    if action == "StatusNotification":
        return [_status(request, at, v16)]
    if action == "NotifyEvent":
        return [
            Publish(MonitoringEvent(identity=view.identity, message=obs.request)),
            *_availability_events(request, at),
        ]
    if action == "TransactionEvent":
        tx_id, record = record_from_transaction_event(request, at, version=version)
        return _transaction_effects(view, tx_id, record, at)
    if action == "StartTransaction":
        response = obs.response.to_json() if obs.response is not None else {}
        tx_id_int = as_int(response.get("transactionId"))
        if tx_id_int is None:
            return []  # not answered: no transaction id was assigned
        remote = _match_remote_start_16(view, request, at)
        tx_id, record = record_from_start_transaction(
            request, tx_id_int, at, remote_start_id=remote
        )
        return _transaction_effects(view, tx_id, record, at)
    if action == "MeterValues":
        found = record_from_meter_values_16(request, at) if v16 else None
        return [] if found is None else [ToTransaction(transaction_id=found[0], record=found[1])]
    if action == "StopTransaction":
        tx_id, record = record_from_stop_transaction(request, at)
        return [ToTransaction(transaction_id=tx_id, record=record)]
    if action == "ReservationStatusUpdate":
        state = (
            ReservationState.EXPIRED
            if request.get("reservationUpdateStatus") == "Expired"
            else ReservationState.REMOVED
        )
        return _end_reservation(view, as_int(request.get("reservationId")), state, at)
    if action in PART_ACTIONS:
        return _report_part(view, obs, request)
    return _notification(view, obs, request)


def _status(request: Json, at: datetime.datetime, v16: bool) -> ToEvse:
    if v16:
        connector = as_int(request.get("connectorId")) or 0
        evse, connector_id = connector, (1 if connector else 0)
        status = as_str(request.get("status")) or ""
    else:
        evse = as_int(request.get("evseId")) or 0
        connector_id = as_int(request.get("connectorId")) or 0
        status = as_str(request.get("connectorStatus")) or ""
    return ToEvse(
        evse,
        StatusReport(
            connector_id=connector_id,
            status=status,
            timestamp=as_time(request.get("timestamp")),
            received_at=at,
            error_code=as_str(request.get("errorCode")),
            info=as_str(request.get("info")),
            vendor_error_code=as_str(request.get("vendorErrorCode")),
        ),
    )


def _availability_events(request: Json, at: datetime.datetime) -> Iterable[ToEvse]:
    """NotifyEvent ``Connector.AvailabilityState`` entries, which 2.1 prefers to
    StatusNotification."""
    for raw in as_list(request.get("eventData")):
        data = as_map(raw)
        component = ComponentRef.from_json(as_map(data.get("component")))
        variable = as_str(as_map(data.get("variable")).get("name")) or ""
        value = as_str(data.get("actualValue"))
        if (
            component.name.casefold() == "connector"
            and variable.casefold() == "availabilitystate"
            and component.evse_id is not None
            and value
        ):
            yield ToEvse(
                component.evse_id,
                StatusReport(
                    connector_id=component.connector_id or 1,
                    status=value,
                    timestamp=as_time(data.get("timestamp")),
                    received_at=at,
                ),
            )


def _transaction_effects(
    view: View, tx_id: str, record: TransactionEventRecord, at: datetime.datetime
) -> list[Effect]:
    effects: list[Effect] = [ToTransaction(transaction_id=tx_id, record=record)]
    for remote in view.remote_starts.values():
        if remote.remote_start_id == record.remote_start_id or remote.transaction_id == tx_id:
            if remote.remote_start_id != record.remote_start_id:
                effects.append(ToTransaction(transaction_id=tx_id, link=remote.remote_start_id))
            effects.append(DropRemoteStart(remote.remote_start_id))
    if record.reservation_id is not None:
        effects += _end_reservation(
            view, record.reservation_id, ReservationState.USED, at, transaction_id=tx_id
        )
    return effects


def _match_remote_start_16(view: View, request: Json, at: datetime.datetime) -> int | None:
    tag = (as_str(request.get("idTag")) or "").casefold()
    connector = as_int(request.get("connectorId"))
    candidates = [
        r
        for r in view.remote_starts.values()
        if r.id_token.casefold() == tag
        and r.transaction_id is None
        and (r.evse_id in (None, 0) or r.evse_id == connector)
        and r.requested_at <= at
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda r: r.requested_at).remote_start_id


def _end_reservation(
    view: View,
    reservation_id: int | None,
    state: ReservationState,
    at: datetime.datetime,
    *,
    transaction_id: str | None = None,
) -> list[Effect]:
    if reservation_id is None:
        return []
    found = view.find_reservation(reservation_id)
    if found is None:
        return []
    return [
        ToEvse(
            found.evse_id,
            ReservationEnded(
                reservation_id=reservation_id, state=state, at=at, transaction_id=transaction_id
            ),
        )
    ]


def _report_part(view: View, obs: Observation, request: Json) -> list[Effect]:
    request_id = as_int(request.get("requestId"))
    if request_id is None:
        return []
    effects: list[Effect] = [ToReport(kind=obs.action, request_id=request_id, part=obs.request)]
    if obs.action == "NotifyReport":
        data = [as_map(d) for d in as_list(request.get("reportData"))]
        if data:
            effects.append(
                NewModel(view.device_model.with_report_data(data), "NotifyReport", len(data))
            )
            part = DeviceModel().with_report_data(data)
            for evse_id, connectors in sorted(part.evse_layout().items()):
                effects.append(ToEvse(evse_id, ConnectorsKnown(connectors)))
    return effects


def _notification(view: View, obs: Observation, request: Json) -> list[Effect]:
    action, identity = obs.action, view.identity
    status = as_str(request.get("status")) or ""
    request_id = as_int(request.get("requestId"))
    if action == "SecurityEventNotification":
        event: MachineEvent = SecurityEvent(
            identity=identity,
            type=as_str(request.get("type")) or "",
            timestamp=as_time(request.get("timestamp")),
            tech_info=as_str(request.get("techInfo")),
            message=obs.request,
        )
    elif action in ("FirmwareStatusNotification", "SignedFirmwareStatusNotification"):
        event = FirmwareStatusChanged(
            identity=identity, status=status, request_id=request_id, message=obs.request
        )
    elif action in ("LogStatusNotification", "DiagnosticsStatusNotification"):
        event = LogStatusChanged(
            identity=identity, status=status, request_id=request_id, message=obs.request
        )
    else:
        return []
    return [Publish(event)]


# -- our CALLs ---------------------------------------------------------------------------------


def _csms_call(
    view: View,
    obs: Observation,
    request: Json,
    response: Json,
    version: Version,
) -> list[Effect]:
    action, at, v16 = obs.action, obs.at, version is Version.V16
    status = as_str(response.get("status")) or ""
    if action in REPORT_KINDS:
        request_id = as_int(request.get("requestId"))
        if request_id is None:
            return []
        return [
            ToReport(
                kind=REPORT_KINDS[action],
                request_id=request_id,
                request=obs.request,
                answer=status,
            )
        ]
    if action == "GetVariables":
        results = [VariableResult.from_get_json(as_map(r)) for r in _results(response, "get")]
        return [NewModel(apply_get_results(view.device_model, results), action, len(results))]
    if action == "SetVariables":
        return _set_variables(view, request, response)
    if action == "GetConfiguration":
        return _get_configuration(view, response)
    if action == "ChangeConfiguration":
        return _change_configuration(view, request, status)
    if action == "ChangeAvailability" and status in (_ACCEPTED, "Scheduled"):
        return [_change_availability(request, status, at, v16)]
    if action == "ReserveNow" and status == _ACCEPTED:
        return [_reserve(request, at, v16)]
    if action == "CancelReservation" and status == _ACCEPTED:
        reservation_id = as_int(request.get("reservationId"))
        return _end_reservation(view, reservation_id, ReservationState.CANCELLED, at)
    if action in ("RemoteStartTransaction", "RequestStartTransaction") and status == _ACCEPTED:
        return _remote_start(view, request, response, at, v16)
    return []


def _results(response: Json, kind: str) -> list[object]:
    return list(as_list(response.get(f"{kind}VariableResult")))


def _set_variables(view: View, request: Json, response: Json) -> list[Effect]:
    requested = []
    for raw in as_list(request.get("setVariableData")):
        item = as_map(raw)
        requested.append(
            SetVariable(
                component=ComponentRef.from_json(as_map(item.get("component"))),
                variable=VariableRef.from_json(as_map(item.get("variable"))),
                value=as_str(item.get("attributeValue")) or "",
                attribute=as_str(item.get("attributeType")) or "Actual",
            )
        )
    results = [VariableResult.from_set_json(as_map(r)) for r in _results(response, "set")]
    model, reboot = apply_set_results(view.device_model, requested, results)
    values = {(*s.component.key, *s.variable.key, s.attribute): s.value for s in requested}
    effects: list[Effect] = [NewModel(model, "SetVariables", len(results))]
    for r in reboot:
        effects.append(
            Publish(
                RebootRequired(
                    identity=view.identity,
                    component=r.component,
                    variable=r.variable,
                    attribute=r.attribute,
                    value=values.get((*r.component.key, *r.variable.key, r.attribute), ""),
                    action="SetVariables",
                )
            )
        )
    return effects


def _get_configuration(view: View, response: Json) -> list[Effect]:
    keys = [as_map(k) for k in as_list(response.get("configurationKey"))]
    model = view.device_model.with_configuration(keys)
    effects: list[Effect] = [NewModel(model, "GetConfiguration", len(keys))]
    connectors = as_int_text(model.get(OCPP16_COMPONENT, "NumberOfConnectors"))
    if connectors is not None and 0 < connectors <= 1000:
        effects.append(ToEvse(0, ConnectorsKnown(frozenset({0}))))
        effects += [ToEvse(n, ConnectorsKnown(frozenset({1}))) for n in range(1, connectors + 1)]
    return effects


def _change_configuration(view: View, request: Json, status: str) -> list[Effect]:
    key, value = as_str(request.get("key")), as_str(request.get("value"))
    if not key or value is None or status not in (_ACCEPTED, "RebootRequired"):
        return []
    pending = status == "RebootRequired"
    model = view.device_model.with_value(OCPP16_COMPONENT, key, value, pending=pending)
    effects: list[Effect] = [NewModel(model, "ChangeConfiguration", 1)]
    if pending:
        effects.append(
            Publish(
                RebootRequired(
                    identity=view.identity,
                    component=ComponentRef(name=OCPP16_COMPONENT),
                    variable=VariableRef(name=key),
                    attribute="Actual",
                    value=value,
                    action="ChangeConfiguration",
                )
            )
        )
    return effects


def _change_availability(request: Json, status: str, at: datetime.datetime, v16: bool) -> ToEvse:
    if v16:
        evse_id = as_int(request.get("connectorId")) or 0
        connector: int | None = None
        operational = request.get("type") == "Operative"
    else:
        evse = as_map(request.get("evse"))
        evse_id = as_int(evse.get("id")) or 0
        connector = as_int(evse.get("connectorId"))
        operational = request.get("operationalStatus") == "Operative"
    requested = RequestedAvailability(
        operational=operational, status=status, requested_at=at, connector_id=connector
    )
    return ToEvse(evse_id, AvailabilityRequest(requested))


def _reserve(request: Json, at: datetime.datetime, v16: bool) -> ToEvse:
    if v16:
        reservation = Reservation(
            reservation_id=as_int(request.get("reservationId")) or 0,
            evse_id=as_int(request.get("connectorId")) or 0,
            id_token=as_str(request.get("idTag")) or "",
            group_id_token=as_str(request.get("parentIdTag")),
            expires_at=as_time(request.get("expiryDate")) or at,
            created_at=at,
        )
    else:
        reservation = Reservation(
            reservation_id=as_int(request.get("id")) or 0,
            evse_id=as_int(request.get("evseId")) or 0,
            id_token=as_str(as_map(request.get("idToken")).get("idToken")) or "",
            group_id_token=as_str(as_map(request.get("groupIdToken")).get("idToken")),
            connector_type=as_str(request.get("connectorType")),
            expires_at=as_time(request.get("expiryDateTime")) or at,
            created_at=at,
        )
    return ToEvse(reservation.evse_id, ReservationMade(reservation))


def _remote_start(
    view: View, request: Json, response: Json, at: datetime.datetime, v16: bool
) -> list[Effect]:
    if v16:
        token = as_str(request.get("idTag")) or ""
        evse_id = as_int(request.get("connectorId"))
        remote_id = view.take_remote_start_id(token, evse_id)
        running: str | None = None
    else:
        token = as_str(as_map(request.get("idToken")).get("idToken")) or ""
        evse_id = as_int(request.get("evseId"))
        remote_id = as_int(request.get("remoteStartId")) or 0
        running = as_str(response.get("transactionId"))
    remote = RemoteStart(
        remote_start_id=remote_id,
        id_token=token,
        requested_at=at,
        evse_id=evse_id,
        transaction_id=running,
    )
    if running is not None and view.transaction(running) is not None:
        return [ToTransaction(transaction_id=running, link=remote_id)]
    if v16:
        # the StartTransaction may have been seen first (answers and CALLs can cross)
        for tx in view.open_transactions():
            if (
                tx.version is Version.V16
                and not tx.ended
                and tx.remote_start_id is None
                and (tx.id_token or "").casefold() == token.casefold()
                and (evse_id in (None, 0) or tx.evse_id == evse_id)
                and (tx.started_at is None or tx.started_at >= at - _CROSSING)
            ):
                return [ToTransaction(transaction_id=tx.transaction_id, link=remote_id)]
    return [AddRemoteStart(remote)]


# how long before the remote start's answer a crossing StartTransaction may have started
_CROSSING: Final = datetime.timedelta(seconds=60)
