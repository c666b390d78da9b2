"""CSMS-side helpers of a station built on its machines: reports, variables, remote start/stop.

:class:`StationOperations` is a base class of :class:`~ocpp_trio.runtime.station.Station`; its
methods send the right request for the station's version with :meth:`Station.call`, then wait for
what the machines assemble from the answers (a report from its parts, a transaction from its
events).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from ocpp_trio import messages
from ocpp_trio.domain.device_model import (
    OCPP16_COMPONENT,
    DeviceModel,
    GetVariable,
    SetVariable,
    VariableResult,
    as_int_text,
    json_size,
    split_batches,
)
from ocpp_trio.domain.evse import Evse
from ocpp_trio.domain.reports import EMPTY_ANSWERS, REPORT_KINDS, Report, ReportStatus
from ocpp_trio.domain.transactions import Transaction
from ocpp_trio.domain.wire import as_list, as_map, as_str
from ocpp_trio.errors import (
    LocalProtocolError,
    ReportIncompleteError,
    ReportTimeoutError,
    RequestRejectedError,
)
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.runtime.machines import StationMachines

__all__ = ["ConfigurationResult", "StationOperations"]

R = TypeVar("R", bound=Response)
T = TypeVar("T")


class _StationLike(Protocol):
    @property
    def identity(self) -> str: ...

    @property
    def version(self) -> Version: ...

    @property
    def machines(self) -> StationMachines: ...

    async def call(self, request: Request[R], *, call_timeout: float | None = None) -> R: ...


@attrs.frozen(kw_only=True)
class ConfigurationResult:
    """A 1.6 GetConfiguration answer: values by key, the read-only keys, the unknown keys."""

    values: Mapping[str, str | None]
    readonly: frozenset[str]
    unknown: tuple[str, ...]


def _build(station: _StationLike, action: str, payload: Mapping[str, Any]) -> Request[Any]:
    spec = messages.actions(station.version).get(action)
    if spec is None or spec.response is None:
        raise LocalProtocolError(f"{action} does not exist in OCPP {station.version}")
    request = spec.request.from_json(dict(payload))
    assert isinstance(request, Request)
    return request


def _status(response: Response) -> tuple[str, str | None]:
    data = response.to_json()
    return as_str(data.get("status")) or "", as_str(
        as_map(data.get("statusInfo")).get("reasonCode")
    )


class StationOperations:
    """Helpers that combine CALLs with the station's machines (mixed into ``Station``)."""

    # -- state ---------------------------------------------------------------------------

    @property
    def device_model(self: _StationLike) -> DeviceModel:
        """The station's device model (1.6: configuration keys under component ``OCPP16``)."""
        return self.machines.device_model

    @property
    def evses(self: _StationLike) -> Mapping[int, Evse]:
        """The station's EVSEs by id (EVSE 0 is the whole station)."""
        return self.machines.evses

    @property
    def transactions(self: _StationLike) -> Mapping[str, Transaction]:
        """The station's open transactions by id."""
        return self.machines.transactions

    async def settle(self: _StationLike) -> None:
        """Wait until the machines have applied every exchange finished so far.

        Waits for: the machines' tasks.  Cancellation: safe.  Closes: nothing.
        """
        await self.machines.settle()

    # -- reports -------------------------------------------------------------------------

    async def request_report(self: _StationLike, request: Request[Any]) -> Report:
        """Send a report request and return the assembled report.

        ``request`` is any of GetBaseReport, GetReport, GetMonitoringReport,
        GetChargingProfiles, CustomerInformation, GetDisplayMessages, GetDERControl, with a
        ``requestId`` (take one from ``station.machines.allocate_request_id()``).

        Waits for: the station's answer, then every part until ``tbc`` is false; a report whose
        parts stop coming expires ``MachinesConfig.report_timeout`` seconds after the last one.
        For an overall limit, wrap the call in ``trio.fail_after``.
        Cancellation: safe; parts still arriving are assembled as usual.  Closes: nothing.

        Returns:
            the complete report; an empty one when the station answered that there is nothing
            to report (EmptyResultSet, NoProfiles, Unknown, NotFound).

        Raises:
            RequestRejectedError: the station answered Rejected, NotSupported, Invalid, ...
            ReportIncompleteError: the last part arrived with parts missing (``.missing``).
            ReportTimeoutError: the parts stopped coming (the report expired).
            ConnectionLostError, CallError, CallTimeoutError, StateError: from the CALL.
            LocalProtocolError: not a report request.
        """
        kind = REPORT_KINDS.get(request.ACTION)
        request_id = getattr(request, "request_id", None)
        if kind is None or not isinstance(request_id, int):
            raise LocalProtocolError(f"{request.ACTION} is not a report request with a requestId")
        machines = self.machines
        with machines.expect_report(kind, request_id) as watch:
            response = await self.call(request)
            status, reason = _status(response)
            if status != "Accepted" and status not in EMPTY_ANSWERS:
                raise RequestRejectedError(request.ACTION, status, reason)
            report = await watch.wait()
        if report.status is ReportStatus.INCOMPLETE:
            raise ReportIncompleteError(report)
        if report.status is ReportStatus.EXPIRED:
            timeout_s = machines.config.report_timeout
            raise ReportTimeoutError(report, f"no part for {timeout_s} s")
        if report.status is ReportStatus.REJECTED:  # pragma: no cover - answered above
            raise RequestRejectedError(request.ACTION, report.answer or "", None)
        return report

    async def get_base_report(self: _StationLike, report_base: str = "FullInventory") -> Report:
        """GetBaseReport (2.x) and the assembled NotifyReport parts; the device model is
        updated from them as they arrive.  ``report_base``: ConfigurationInventory,
        FullInventory or SummaryInventory.  See :meth:`request_report` for the rest.
        """
        request = _build(
            self,
            "GetBaseReport",
            {"requestId": self.machines.allocate_request_id(), "reportBase": str(report_base)},
        )
        return await StationOperations.request_report(self, request)

    # -- variables -----------------------------------------------------------------------

    async def get_variables(
        self: _StationLike,
        items: Sequence[GetVariable | tuple[str, str]],
        *,
        call_timeout: float | None = None,
    ) -> list[VariableResult]:
        """GetVariables (2.x) for any number of items, split by the station's
        ``DeviceDataCtrlr.ItemsPerMessage``/``BytesPerMessage`` (instance ``GetVariables``)
        as far as the device model knows them.  The device model is updated with the values.

        Waits for: every batch's answer, one after the other.  Cancellation: safe (the
        batches answered so far are applied).  Closes: nothing.

        Returns:
            one result per item, in the station's order within each batch.

        Raises:
            the errors of :meth:`Station.call`; ``LocalProtocolError`` on 1.6.
        """
        wanted = [
            i if isinstance(i, GetVariable) else GetVariable(component=i[0], variable=i[1])
            for i in items
        ]
        results: list[VariableResult] = []
        for batch in _batches(
            self, "GetVariables", "getVariableData", [i.to_json() for i in wanted]
        ):
            response = await self.call(
                _build(self, "GetVariables", {"getVariableData": batch}), call_timeout=call_timeout
            )
            data = response.to_json()
            results += [
                VariableResult.from_get_json(as_map(r))
                for r in as_list(data.get("getVariableResult"))
            ]
        await self.machines.settle()
        return results

    async def set_variables(
        self: _StationLike, items: Sequence[SetVariable], *, call_timeout: float | None = None
    ) -> list[VariableResult]:
        """SetVariables (2.x) for any number of items, split like :meth:`get_variables`
        (instance ``SetVariables``).  Accepted values enter the device model;
        RebootRequired ones are kept as ``pending_value`` and published as
        :class:`~ocpp_trio.runtime.machines_events.RebootRequired` events.

        Waits for: every batch's answer.  Cancellation: safe.  Closes: nothing.

        Raises:
            the errors of :meth:`Station.call`; ``LocalProtocolError`` on 1.6.
        """
        results: list[VariableResult] = []
        payload = [i.to_json() for i in items]
        for batch in _batches(self, "SetVariables", "setVariableData", payload):
            response = await self.call(
                _build(self, "SetVariables", {"setVariableData": batch}), call_timeout=call_timeout
            )
            data = response.to_json()
            results += [
                VariableResult.from_set_json(as_map(r))
                for r in as_list(data.get("setVariableResult"))
            ]
        await self.machines.settle()
        return results

    async def get_configuration(
        self: _StationLike, keys: Sequence[str] = (), *, call_timeout: float | None = None
    ) -> ConfigurationResult:
        """GetConfiguration (1.6), split by the station's ``GetConfigurationMaxKeys`` when the
        device model knows it.  The device model (component ``OCPP16``) is updated.

        Waits for: every batch's answer.  Cancellation: safe.  Closes: nothing.
        """
        limit = as_int_text(
            self.machines.device_model.get(OCPP16_COMPONENT, "GetConfigurationMaxKeys")
        )
        batches: list[list[str]] = (
            split_batches(list(keys), max_items=limit, max_bytes=None, size=len) if keys else [[]]
        )
        values: dict[str, str | None] = {}
        readonly: set[str] = set()
        unknown: list[str] = []
        for batch in batches:
            response = await self.call(
                _build(self, "GetConfiguration", {"key": batch} if batch else {}),
                call_timeout=call_timeout,
            )
            data = response.to_json()
            for raw in as_list(data.get("configurationKey")):
                entry = as_map(raw)
                key = as_str(entry.get("key")) or ""
                values[key] = as_str(entry.get("value"))
                if entry.get("readonly") is True:
                    readonly.add(key)
            unknown += [k for k in as_list(data.get("unknownKey")) if isinstance(k, str)]
        await self.machines.settle()
        return ConfigurationResult(
            values=values, readonly=frozenset(readonly), unknown=tuple(unknown)
        )

    async def change_configuration(
        self: _StationLike, key: str, value: str, *, call_timeout: float | None = None
    ) -> str:
        """ChangeConfiguration (1.6); returns the station's status (Accepted, Rejected,
        RebootRequired, NotSupported).  Accepted values enter the device model.

        Waits for: the answer.  Cancellation: safe.  Closes: nothing.
        """
        response = await self.call(
            _build(self, "ChangeConfiguration", {"key": key, "value": value}),
            call_timeout=call_timeout,
        )
        await self.machines.settle()
        return _status(response)[0]

    # -- remote start / stop -------------------------------------------------------------

    async def remote_start(
        self: _StationLike,
        id_token: str,
        *,
        evse_id: int | None = None,
        id_token_type: str = "Central",
        wait_timeout: float = 60.0,
    ) -> Transaction:
        """Start a transaction remotely and return it once the station reports it.

        2.x: RequestStartTransaction with a fresh ``remoteStartId`` (``evse_id`` optional),
        matched by the TransactionEvent's ``remoteStartId``.  1.6: RemoteStartTransaction
        (``evse_id`` is the connector id), matched by idTag and connector.

        Waits for: the answer, then the transaction's first event, at most ``wait_timeout``
        seconds for the latter.  Cancellation: safe.  Closes: nothing.

        Raises:
            RequestRejectedError: the station answered Rejected.
            TransactionTimeoutError: no transaction came in time.
            ConnectionLostError: the connection ended meanwhile; and the errors of ``call``.
        """
        machines = self.machines
        if self.version is Version.V16:
            remote_id = machines.expect_remote_start(id_token, evse_id)
            payload: dict[str, Any] = {"idTag": id_token}
            if evse_id is not None:
                payload["connectorId"] = evse_id
            request = _build(self, "RemoteStartTransaction", payload)
        else:
            remote_id = machines.allocate_remote_start_id()
            payload = {
                "remoteStartId": remote_id,
                "idToken": {"idToken": id_token, "type": id_token_type},
            }
            if evse_id is not None:
                payload["evseId"] = evse_id
            request = _build(self, "RequestStartTransaction", payload)
        response = await self.call(request)
        status, reason = _status(response)
        if status != "Accepted":
            raise RequestRejectedError(request.ACTION, status, reason)
        return await machines.wait_transaction(
            lambda tx: tx.remote_start_id == remote_id, wait_timeout=wait_timeout
        )

    async def remote_stop(
        self: _StationLike, transaction_id: str | int, *, wait_timeout: float = 60.0
    ) -> Transaction:
        """Stop a transaction remotely and return it once its Ended event (1.6:
        StopTransaction) arrives.  2.x: RequestStopTransaction; 1.6: RemoteStopTransaction.

        Waits for: the answer, then the end, at most ``wait_timeout`` seconds for the latter.
        Cancellation: safe.  Closes: nothing.

        Raises:
            RequestRejectedError: the station answered Rejected.
            TransactionTimeoutError: it did not end in time; and the errors of ``call``.
        """
        tx_id = str(transaction_id)
        if self.version is Version.V16:
            request = _build(self, "RemoteStopTransaction", {"transactionId": int(tx_id)})
        else:
            request = _build(self, "RequestStopTransaction", {"transactionId": tx_id})
        response = await self.call(request)
        status, reason = _status(response)
        if status != "Accepted":
            raise RequestRejectedError(request.ACTION, status, reason)
        return await self.machines.wait_transaction(
            lambda tx: tx.transaction_id == tx_id and tx.ended, wait_timeout=wait_timeout
        )


def _batches(
    station: _StationLike, message: str, field: str, items: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    model = station.machines.device_model
    return split_batches(
        items,
        max_items=model.limit("ItemsPerMessage", message),
        max_bytes=model.limit("BytesPerMessage", message),
        size=lambda batch: json_size({field: batch}),
    )
