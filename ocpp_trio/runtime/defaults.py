"""Default answers to the station messages the machines understand.

The application's handlers always come first; these answer only what it leaves unanswered:

1. a typed handler of the application (``router.on``) answers;
2. else its fallback handler, if it has one, unless it declines with
   ``CallError(ErrorCode.NOT_SUPPORTED, ...)``;
3. else the default below, when ``MachinesConfig.default_answers`` is on;
4. else ``NotSupported``.

Every station-initiated action that has a neutral answer has a default: TransactionEvent (with
``idTokenInfo`` from the application's Authorize handler when the event carries an idToken and
such a handler exists), 1.6 StartTransaction (a fresh ``transactionId`` from the CSMS's
allocator, or the same one for a repeated StartTransaction; ``idTagInfo`` from the Authorize
handler, else ``MachinesConfig.default_id_tag_status``), 1.6 StopTransaction, Heartbeat (the
current time; usually answered earlier, in the reader, see ``StationConfig.auto_heartbeat``),
DataTransfer (``UnknownVendorId``, what a receiver without that vendor's extension must answer),
and an empty acknowledgement of every notification whose response carries nothing (see
:data:`ACKNOWLEDGED`).

The others need a decision only the application can take; they are listed, with the reason, in
:data:`NO_DEFAULT` and answered ``NotSupported`` unless a handler answers them.

TransactionEvent "cannot be rejected" (OCPP.md §5) and report parts carry no decision, so for
those (:data:`MUST_ANSWER`) an unexpected exception of the application's handler is logged and
the default answer is sent instead of InternalError; a deliberate ``CallError`` is still sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from ocpp_trio import messages
from ocpp_trio.domain.reports import PART_ACTIONS
from ocpp_trio.domain.transactions import TransactionEventKind
from ocpp_trio.domain.wire import Json, as_float, as_int, as_map, as_str, as_time
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.peer import StationPeer
from ocpp_trio.runtime.router import heartbeat_response

__all__ = [
    "ACKNOWLEDGED",
    "MUST_ANSWER",
    "NO_DEFAULT",
    "DefaultHandler",
    "answer_by_default",
    "authorize_id_token",
    "default_handler",
]

log = logging.getLogger("ocpp_trio")

#: a default answer: like a handler, but untyped
DefaultHandler = Callable[[StationPeer, Request[Any]], Awaitable[Response]]

#: actions answered by default even when the application's handler failed unexpectedly
MUST_ANSWER: Final = frozenset({"TransactionEvent", *PART_ACTIONS})

#: station notifications answered with an empty response (theirs carries nothing)
ACKNOWLEDGED: Final = frozenset(
    {
        "StatusNotification",
        "MeterValues",
        "NotifyEvent",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "FirmwareStatusNotification",
        "SignedFirmwareStatusNotification",
        "PublishFirmwareStatusNotification",
        "LogStatusNotification",
        "DiagnosticsStatusNotification",
        "NotifyChargingLimit",
        "ClearedChargingLimit",
        # 2.1
        "BatterySwap",
        "ClosePeriodicEventStream",
        "NotifyDERAlarm",
        "NotifyDERStartStop",
        "NotifyPriorityCharging",
        "NotifySettlement",
        *PART_ACTIONS,
    }
)

#: station-initiated actions deliberately left without a default answer (``NotSupported``
#: unless the application answers them), with the reason
NO_DEFAULT: Final[Mapping[str, str]] = {
    "BootNotification": "whether a station may register is the CSMS's decision "
    "(Router.set_default_boot answers every one alike)",
    "Authorize": "whether an idToken may charge is the CSMS's decision",
    "SignCertificate": "Accepted promises a CertificateSigned, which needs a certificate authority",
    "Get15118EVCertificate": "the answer is a contract certificate from a provider",
    "GetCertificateStatus": "the answer is an OCSP response from the certificate's authority",
    "GetCertificateChainStatus": "the answer is the OCSP status of each certificate",
    "NotifyEVChargingNeeds": "Accepted promises a charging schedule (a smart-charging decision)",
    "NotifyEVChargingSchedule": "accepting or rejecting the EV's schedule is a smart-charging "
    "decision",
    "OpenPeriodicEventStream": "accepting a stream commits the CSMS to handle its messages",
    "PullDynamicScheduleUpdate": "the answer is the schedule update itself",
    "VatNumberValidation": "the answer is the result of validating the VAT number",
}


def default_handler(action: str) -> DefaultHandler | None:
    """The default answer of ``action``, or ``None`` when the library has none."""
    if action in ACKNOWLEDGED:
        return _acknowledge
    return _SPECIAL.get(action)


async def answer_by_default(station: StationPeer, request: Request[Any]) -> Response | None:
    """The default answer to ``request``, or ``None`` when there is none (or defaults are off
    in ``MachinesConfig.default_answers``, or the default failed: a bug of ours, logged).

    Waits for: the application's Authorize handler, for transaction messages.
    Cancellation: passes through.
    """
    if not station.machines.config.default_answers:
        return None
    default = default_handler(request.ACTION)
    if default is None:
        return None
    try:
        return await default(station, request)
    except Exception:
        log.exception(
            "station %r: BUG (ours): the default answer to %s failed",
            station.identity,
            request.ACTION,
        )
        return None


def _response(request: Request[Any], payload: Json) -> Response:
    return type(request).RESPONSE.from_json(dict(payload))


async def _acknowledge(station: StationPeer, request: Request[Any]) -> Response:
    return _response(request, {})


async def authorize_id_token(station: StationPeer, id_token: Json | str) -> Json | None:
    """Ask the application's Authorize handler about an idToken (2.x ``IdTokenType`` wire
    JSON) or a 1.6 idTag; return its ``idTokenInfo`` / ``idTagInfo`` (wire JSON).

    ``None`` when the application has no Authorize handler of its own, or when it failed
    (logged).  Waits for: the handler.  Cancellation: passes through.
    """
    spec = messages.actions(station.version).get("Authorize")
    if spec is None or spec.response is None:
        return None
    request_type = spec.request
    router = station.router
    if not router.has_handler(request_type):  # type: ignore[arg-type]
        return None
    handler = router.handler_for(request_type)  # type: ignore[arg-type]
    assert handler is not None
    if station.version is Version.V16:
        payload: dict[str, Any] = {"idTag": id_token}
        field = "idTagInfo"
    else:
        payload = {"idToken": dict(as_map(id_token))}
        field = "idTokenInfo"
    try:
        request = request_type.from_json(payload)
        response = await handler(station, request)  # type: ignore[arg-type]
        info = response.to_json().get(field)
    except Exception:
        log.exception(
            "station %r: the Authorize handler failed while answering a transaction message",
            station.identity,
        )
        return None
    return info if isinstance(info, dict) else None


async def _transaction_event(station: StationPeer, request: Request[Any]) -> Response:
    payload = request.to_json()
    answer: dict[str, Any] = {}
    token = payload.get("idToken")
    if isinstance(token, dict):
        info = await authorize_id_token(station, token)
        if info is not None:
            answer["idTokenInfo"] = info
    return _response(request, answer)


async def _start_transaction(station: StationPeer, request: Request[Any]) -> Response:
    payload = request.to_json()
    tag = as_str(payload.get("idTag")) or ""
    info = await authorize_id_token(station, tag)
    if info is None:
        info = {"status": station.machines.config.default_id_tag_status}
    await station.machines.settle()  # a retry may follow its original closely
    transaction_id = _repeated_start(station, payload)
    if transaction_id is None:
        transaction_id = station.machines.transaction_ids.allocate(station.identity)
    return _response(request, {"transactionId": transaction_id, "idTagInfo": info})


def _repeated_start(station: StationPeer, payload: Json) -> int | None:
    """The id already given to this very StartTransaction (a station retrying it)."""
    connector = as_int(payload.get("connectorId"))
    tag = (as_str(payload.get("idTag")) or "").casefold()
    meter = as_float(payload.get("meterStart"))
    timestamp = as_time(payload.get("timestamp"))
    for tx in station.machines.open_transactions():
        for event in tx.events:
            if (
                event.kind is TransactionEventKind.STARTED
                and event.seq_no is None
                and event.evse_id == connector
                and (event.id_token or "").casefold() == tag
                and event.meter_wh == meter
                and event.timestamp == timestamp
            ):
                return int(tx.transaction_id)
    return None


async def _stop_transaction(station: StationPeer, request: Request[Any]) -> Response:
    payload = request.to_json()
    tag = as_str(payload.get("idTag"))
    answer: dict[str, Any] = {}
    if tag:
        info = await authorize_id_token(station, tag)
        if info is not None:
            answer["idTagInfo"] = info
    return _response(request, answer)


async def _heartbeat(station: StationPeer, request: Request[Any]) -> Response:
    return heartbeat_response(station.version)


async def _data_transfer(station: StationPeer, request: Request[Any]) -> Response:
    # what a receiver without an implementation for the request's vendorId answers
    return _response(request, {"status": "UnknownVendorId"})


_SPECIAL: Final[dict[str, DefaultHandler]] = {
    "Heartbeat": _heartbeat,
    "DataTransfer": _data_transfer,
    "TransactionEvent": _transaction_event,
    "StartTransaction": _start_transaction,
    "StopTransaction": _stop_transaction,
}
