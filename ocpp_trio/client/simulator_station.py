"""One simulated station of ``ocpp-trio simulate``, on the station-side API.

Each :class:`SimulatedStation` is one :class:`~ocpp_trio.ChargePoint` plus the state of a small
station: its EVSEs (one connector each), its variables (2.x) or configuration keys (1.6), and a
meter per EVSE.  It boots, reports every EVSE with StatusNotification, heartbeats (the charge
point does that), and on every EVSE runs charging sessions on a schedule: authorize, start,
periodic meter values, stop.  Transaction messages go through the charge point's offline queue,
so a session that runs while the CSMS is away reaches it later, in order (``offline=true`` on
2.x).  It answers the CSMS's commands: Reset, ChangeAvailability, TriggerMessage,
Get/SetVariables and GetBaseReport (2.x), Get/ChangeConfiguration (1.6),
RequestStart/StopTransaction (2.x) or RemoteStart/StopTransaction (1.6), ClearCache,
UnlockConnector; anything else is answered ``NotSupported``.

Messages are written as wire dicts and built with :func:`ocpp_trio.messages.decode_request`,
so one code path serves 2.0.1 and 2.1 and every payload is checked against its schema.

:mod:`ocpp_trio.client.simulator` runs many of them; :mod:`ocpp_trio._simulator_view` is the command
line's live view and summary.
"""

from __future__ import annotations

import datetime
import logging
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.config import (
    BootInfo,
    ChargePointConfig,
    ChargePointState,
    QueuedMessage,
    RetryBackOff,
)
from ocpp_trio.client.entry import start_charge_point
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.errors import CallError, ConnectionLostError, ErrorCode, OCPPError
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version
from ocpp_trio.transport.connect import Connector

__all__ = ["SimulatedStation", "SimulatorConfig"]

log = logging.getLogger("ocpp_trio.simulator")

_ENERGY: Final = "Energy.Active.Import.Register"
_WRITABLE_16: Final = frozenset({"HeartbeatInterval", "MeterValueSampleInterval"})
#: seconds a CSMS CALL arriving while booting waits, at most, for the boot answer to be read
_BOOT_READ_TIMEOUT: Final = 5.0


def _now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """What to simulate.

    Attributes:
        url: the CSMS endpoint (identities are appended).
        stations: how many stations.
        version: the OCPP version every station speaks.
        id_prefix: identities are ``<id_prefix>-001``, ``-002``, ...
        evses: EVSEs per station (one connector each).
        session_every: seconds between the end of one session and the start of the next, per
            EVSE (each wait is drawn from 50% to 100% of it).
        session_length: seconds a session charges, unless stopped earlier.
        meter_interval: seconds between meter values during a session.
        power: watts drawn while charging.
        id_token: the idToken (1.6 idTag) the sessions authorize with.
        password: the Basic-auth password of every station (security profile 1 or 2).
        back_off: the reconnection back-off.
        call_timeout: seconds each CALL waits for the CSMS.
        connect_spread: stations connect spread evenly over this many seconds.
        seed: seeds the random schedule (and the back-off) for reproducible runs.
        ssl_context: the TLS context for ``wss://`` (default: the system's CAs), e.g. one
            that also trusts a private CA.
        connect: makes each station's connector from its identity, replacing the WebSocket
            one (``url`` is then unused); for tests over memory transports.
    """

    url: str
    stations: int = 1
    version: Version = Version.V201
    id_prefix: str = "SIM"
    evses: int = 2
    session_every: float = 30.0
    session_length: float = 60.0
    meter_interval: float = 10.0
    power: float = 11000.0
    id_token: str = "SIMTOKEN01"
    password: str | None = None
    back_off: RetryBackOff = attrs.Factory(
        lambda: RetryBackOff(wait_minimum=1.0, random_range=2.0, repeat_times=4)
    )
    call_timeout: float = 30.0
    connect_spread: float = 0.0
    seed: int | None = None
    ssl_context: ssl.SSLContext | None = None
    connect: Callable[[str], Connector] | None = None

    def identity(self, index: int) -> str:
        """The identity of station ``index`` (0-based)."""
        return f"{self.id_prefix}-{index + 1:03d}"


@attrs.define(eq=False)
class _Session:
    evse_id: int
    transaction_id: str
    stop: trio.Event = attrs.Factory(trio.Event)
    reason: str = "Local"
    remote_start_id: int | None = None
    #: 1.6: the queued StartTransaction, whose answer carries the CSMS's transaction id
    start: QueuedMessage[Any] | None = None
    #: 1.6: the id the CSMS assigned, once known
    csms_id: int | None = None


@attrs.define(eq=False)
class _Evse:
    evse_id: int
    operative: bool = True
    meter_wh: float = 0.0
    session: _Session | None = None
    wake: trio.Event = attrs.Factory(trio.Event)
    #: a ChangeAvailability(Inoperative) answered Scheduled: applied when the session ends
    inoperative_when_idle: bool = False


class SimulatedStation:
    """One simulated station: a charge point, its EVSEs and its answers to the CSMS.

    Args:
        config: the simulation.
        index: which station (0-based): sets the identity.
        rng: the random source of its schedule.
    """

    def __init__(self, config: SimulatorConfig, index: int, rng: random.Random) -> None:
        self.config = config
        self.identity = config.identity(index)
        self.version = config.version
        self._rng = rng
        self._evses = {n: _Evse(n) for n in range(1, config.evses + 1)}
        self._stopping = trio.Event()
        self._changed = trio.Event()
        self._report_status = True
        self._reset_when_idle = False  # a Reset(OnIdle) answered Scheduled
        self._nursery: trio.Nursery | None = None
        self.cp: ChargePoint | None = None
        self.sessions_started = 0
        self.sessions_completed = 0
        self.sessions_refused = 0
        self._meter_interval = config.meter_interval
        self._variables: dict[tuple[str, str], tuple[str, bool]] = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): ("0", True),
            ("SampledDataCtrlr", "TxUpdatedInterval"): (str(int(config.meter_interval)), True),
            ("AuthCtrlr", "Enabled"): ("true", True),
            ("SecurityCtrlr", "Identity"): (self.identity, False),
            ("ChargingStation", "Model"): ("Simulator", False),
        }
        self._keys: dict[str, str] = {
            "HeartbeatInterval": "0",
            "MeterValueSampleInterval": str(int(config.meter_interval)),
            "NumberOfConnectors": str(config.evses),
            "AuthorizeRemoteTxRequests": "false",
        }

    # -- state -------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_idle(self) -> None:
        """Wait until no session runs and the offline queue is delivered (or the charge point
        is not accepted: then nothing can be delivered now)."""
        assert self.cp is not None
        cp = self.cp
        while self.charging:
            await self._changed.wait()
        await cp.wait_state(lambda c: not c.accepted or not c.statistics().queued)

    @property
    def charging(self) -> int:
        """EVSEs with a session running."""
        return sum(1 for evse in self._evses.values() if evse.session is not None)

    def _request(self, action: str, payload: dict[str, Any]) -> Request[Any]:
        request = messages.decode_request(self.version, action, payload)
        assert isinstance(request, Request)
        return request

    async def _call(self, action: str, payload: dict[str, Any]) -> Response | None:
        """Send a CALL that is lost when offline (status, authorize, meter outside sessions)."""
        assert self.cp is not None
        try:
            response: Response = await self.cp.call(self._request(action, payload))
        except ConnectionLostError:
            return None
        except OCPPError as exc:
            log.warning("%s: %s failed: %s", self.identity, action, exc)
            return None
        return response

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the station until cancelled (or until :meth:`stop` and the queue is empty).

        Waits for: cancellation.  Closes: its charge point's connection.
        """
        config = self.config
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.cp = await start_charge_point(
                nursery,
                config.url,
                self.identity,
                versions=(config.version,),
                router=self._router(),
                boot=BootInfo(vendor="ocpp-trio", model="Simulator", serial_number=self.identity),
                password=config.password,
                ssl_context=config.ssl_context,
                connect=config.connect(self.identity) if config.connect is not None else None,
                config=ChargePointConfig(
                    call_timeout=config.call_timeout,
                    retry_back_off=config.back_off,
                    boot_retry_interval=10.0,
                    message_attempt_interval=2.0,
                ),
                rng=self._rng,
            )
            nursery.start_soon(self._status_reporter)
            for evse in self._evses.values():
                nursery.start_soon(self._evse_loop, evse)
            task_status.started()
            await self._stopping.wait()
            await self._wind_down()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop gracefully: end the running sessions, start none, then close once the queue is
        delivered (the caller bounds how long that may take)."""
        self._stopping.set()
        for evse in self._evses.values():
            self._end_session(evse, "Local")
            evse.wake.set()

    async def _wind_down(self) -> None:
        await self._wait_idle()

    def _end_session(self, evse: _Evse, reason: str) -> bool:
        session = evse.session
        if session is None:
            return False
        session.reason = reason
        session.stop.set()
        return True

    async def _status_reporter(self) -> None:
        """After each boot (not on a mere reconnect), report every EVSE's status."""
        assert self.cp is not None
        cp = self.cp
        while True:
            await cp.wait_accepted()
            if self._report_status:
                self._report_status = False
                for evse in self._evses.values():
                    await self._send_status(evse)
            await cp.wait_state(lambda c: not c.accepted)

    async def _send_status(self, evse: _Evse, status: str | None = None) -> None:
        if status is None:
            if not evse.operative:
                status = "Unavailable"
            elif evse.session is not None:
                status = "Charging" if self.version is Version.V16 else "Occupied"
            else:
                status = "Available"
        if self.version is Version.V16:
            payload: dict[str, Any] = {
                "connectorId": evse.evse_id,
                "errorCode": "NoError",
                "status": status,
                "timestamp": _now(),
            }
        else:
            payload = {
                "timestamp": _now(),
                "connectorStatus": status,
                "evseId": evse.evse_id,
                "connectorId": 1,
            }
        await self._call("StatusNotification", payload)

    # -- sessions ----------------------------------------------------------------------------

    async def _evse_loop(self, evse: _Evse) -> None:
        assert self.cp is not None
        cp = self.cp
        while not self._stopping.is_set():
            wait = self.config.session_every * self._rng.uniform(0.5, 1.0)
            with trio.move_on_after(wait):
                await evse.wake.wait()
            evse.wake = trio.Event()
            if self._stopping.is_set():
                return
            if (
                evse.session is not None
                or not evse.operative
                or cp.state
                in (
                    ChargePointState.PENDING,
                    ChargePointState.REJECTED,
                )
            ):
                continue
            await self._charge(evse, self.config.id_token, remote_start_id=None)

    def _new_session(self, evse: _Evse, remote_start_id: int | None) -> _Session:
        session = _Session(evse.evse_id, str(uuid.uuid4()), remote_start_id=remote_start_id)
        evse.session = session
        self.sessions_started += 1
        self._notify()
        return session

    async def _charge(self, evse: _Evse, token: str, remote_start_id: int | None) -> None:
        """One charging session on ``evse``, start to stop (a remote start has set the session
        already)."""
        session = evse.session or self._new_session(evse, remote_start_id)
        last: QueuedMessage[Any] | None = None
        try:
            await self._send_status(
                evse, "Preparing" if self.version is Version.V16 else "Occupied"
            )
            if remote_start_id is None and not await self._authorize(token):
                self.sessions_refused += 1
                return
            if self.version is Version.V16:
                last = await self._charge_16(evse, session, token)
            else:
                last = await self._charge_2x(evse, session, token)
        finally:
            evse.session = None
            if evse.inoperative_when_idle:  # the availability change it was waiting for
                evse.inoperative_when_idle = False
                evse.operative = False
            self._notify()
            if self._reset_when_idle and not self.charging and not self._stopping.is_set():
                self._reset_when_idle = False
                if self._nursery is not None:
                    self._nursery.start_soon(self._reset, "ImmediateReset")
        if not self._stopping.is_set():
            await self._send_status(evse)
        if last is not None:
            await self._count_completed(last)

    async def _authorize(self, token: str) -> bool:
        if self.version is Version.V16:
            response = await self._call("Authorize", {"idTag": token})
            info = getattr(response, "id_tag_info", None)
        else:
            response = await self._call(
                "Authorize", {"idToken": {"idToken": token, "type": "ISO14443"}}
            )
            info = getattr(response, "id_token_info", None)
        # offline (no answer): authorized locally, as a station with a local list would
        return info is None or str(info.status) == "Accepted"

    async def _meter_loop(
        self, evse: _Evse, session: _Session, sample: Callable[[], Awaitable[None]]
    ) -> None:
        """Charge until the session length has passed or the session is stopped, sampling
        every meter interval."""
        deadline = trio.current_time() + self.config.session_length
        last = trio.current_time()
        while True:
            next_sample = min(trio.current_time() + self._meter_interval, deadline)
            with trio.move_on_at(next_sample):
                await session.stop.wait()
            now = trio.current_time()
            evse.meter_wh += self.config.power * (now - last) / 3600.0
            last = now
            if session.stop.is_set() or now >= deadline:
                return
            await sample()

    async def _charge_2x(self, evse: _Evse, session: _Session, token: str) -> QueuedMessage[Any]:
        assert self.cp is not None
        cp = self.cp
        seq = 0

        def event(kind: str, trigger: str, context: str, **info: Any) -> Request[Any]:
            nonlocal seq
            transaction: dict[str, Any] = {"transactionId": session.transaction_id, **info}
            payload: dict[str, Any] = {
                "eventType": kind,
                "timestamp": _now(),
                "triggerReason": trigger,
                "seqNo": seq,
                "transactionInfo": transaction,
                "meterValue": [self._meter_value_2x(evse, context)],
            }
            if kind == "Started":
                payload["evse"] = {"id": evse.evse_id, "connectorId": 1}
                payload["idToken"] = {"idToken": token, "type": "ISO14443"}
            seq += 1
            return self._request("TransactionEvent", payload)

        started_info: dict[str, Any] = {"chargingState": "Charging"}
        if session.remote_start_id is not None:
            started_info["remoteStartId"] = session.remote_start_id
        trigger = "RemoteStart" if session.remote_start_id is not None else "Authorized"
        await cp.enqueue(event("Started", trigger, "Transaction.Begin", **started_info))

        async def sample() -> None:
            await cp.enqueue(event("Updated", "MeterValuePeriodic", "Sample.Periodic"))

        await self._meter_loop(evse, session, sample)
        reason = session.reason
        trigger = {"Remote": "RemoteStop", "ImmediateReset": "ResetCommand"}.get(
            reason, "StopAuthorized"
        )
        return await cp.enqueue(
            event(
                "Ended",
                trigger,
                "Transaction.End",
                chargingState="EVConnected",
                stoppedReason=reason,
            )
        )

    def _meter_value_2x(self, evse: _Evse, context: str) -> dict[str, Any]:
        return {
            "timestamp": _now(),
            "sampledValue": [
                {
                    "value": round(evse.meter_wh, 1),
                    "context": context,
                    "measurand": _ENERGY,
                    "unitOfMeasure": {"unit": "Wh"},
                }
            ],
        }

    async def _charge_16(self, evse: _Evse, session: _Session, token: str) -> QueuedMessage[Any]:
        assert self.cp is not None
        cp = self.cp
        start = await cp.enqueue(
            self._request(
                "StartTransaction",
                {
                    "connectorId": evse.evse_id,
                    "idTag": token,
                    "meterStart": int(evse.meter_wh),
                    "timestamp": _now(),
                },
            )
        )
        session.start = start
        await self._send_status(evse, "Charging")

        def csms_id() -> int:
            known = self._csms_id(session)
            if known is None:  # the StartTransaction was given up: nothing can follow it
                start.result()
                raise RuntimeError("StartTransaction has not been answered")
            return known

        async def sample() -> None:
            value = {
                "value": str(int(evse.meter_wh)),
                "context": "Sample.Periodic",
                "measurand": _ENERGY,
                "unit": "Wh",
            }
            payload = {"timestamp": _now(), "sampledValue": [value]}
            await cp.enqueue(
                lambda: self._request(
                    "MeterValues",
                    {
                        "connectorId": evse.evse_id,
                        "transactionId": csms_id(),
                        "meterValue": [payload],
                    },
                )
            )

        await self._meter_loop(evse, session, sample)
        meter_stop = int(evse.meter_wh)
        stopped_at = _now()
        reason = session.reason
        await self._send_status(evse, "Finishing")
        return await cp.enqueue(
            lambda: self._request(
                "StopTransaction",
                {
                    "transactionId": csms_id(),
                    "meterStop": meter_stop,
                    "timestamp": stopped_at,
                    "reason": reason,
                },
            )
        )

    @staticmethod
    def _csms_id(session: _Session) -> int | None:
        """1.6: the transaction id the CSMS assigned, once its StartTransaction is answered."""
        start = session.start
        if session.csms_id is None and start is not None and start.done():
            try:
                session.csms_id = int(getattr(start.result(), "transaction_id"))  # noqa: B009
            except Exception:
                return None
        return session.csms_id

    async def _count_completed(self, last: QueuedMessage[Any]) -> None:
        try:
            await last.wait()
        except Exception as exc:
            log.warning("%s: a session's last message was lost: %s", self.identity, exc)
        else:
            self.sessions_completed += 1

    # -- answering the CSMS ------------------------------------------------------------------

    def _router(self) -> ChargePointRouter:
        router = ChargePointRouter()
        answers: dict[str, Callable[[ChargePoint, Any], dict[str, Any]]] = {
            "Reset": self._on_reset,
            "ChangeAvailability": self._on_change_availability,
            "TriggerMessage": self._on_trigger,
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
            "GetBaseReport": self._on_get_base_report,
            "GetConfiguration": self._on_get_configuration,
            "ChangeConfiguration": self._on_change_configuration,
            "RequestStartTransaction": self._on_remote_start,
            "RemoteStartTransaction": self._on_remote_start,
            "RequestStopTransaction": self._on_remote_stop,
            "RemoteStopTransaction": self._on_remote_stop,
            "ClearCache": lambda cp, request: {"status": "Accepted"},
            "UnlockConnector": lambda cp, request: {"status": "Unlocked"},
        }

        @router.fallback
        async def answer(cp: ChargePoint, request: Request[Any]) -> Response:
            respond = answers.get(request.ACTION)
            if respond is None:
                raise CallError(ErrorCode.NOT_SUPPORTED, f"{request.ACTION} is not simulated")
            await self._boot_read(cp)
            self._sync_heartbeat(cp)
            return type(request).RESPONSE.from_json(respond(cp, request))

        return router

    async def _boot_read(self, cp: ChargePoint) -> None:
        """Wait (briefly) until the charge point has read the boot answer that came before
        this CALL: a CSMS may call the moment it has answered the boot, and the CALL can
        reach this handler before the boot task has taken in its answer."""
        if cp.state is ChargePointState.BOOTING:
            with trio.move_on_after(_BOOT_READ_TIMEOUT):
                await cp.wait_state(lambda c: c.state is not ChargePointState.BOOTING)

    def _sync_heartbeat(self, cp: ChargePoint) -> None:
        """Show the interval the charge point heartbeats with (the boot answer's, or the
        one a SetVariables / ChangeConfiguration set) as ``HeartbeatInterval``."""
        interval = cp.heartbeat_interval
        if interval is not None:
            value = str(int(interval))
            self._variables["OCPPCommCtrlr", "HeartbeatInterval"] = (value, True)
            self._keys["HeartbeatInterval"] = value

    def _later(self, action: Callable[[], Awaitable[None]]) -> None:
        """Start ``action`` (an async function) once the current answer has been sent."""
        assert self.cp is not None
        nursery = self._nursery
        if nursery is not None:
            self.cp.after_answer(lambda: nursery.start_soon(action))

    def _on_reset(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        kind = str(request.type)
        if kind == "OnIdle" and self.charging:
            self._reset_when_idle = True  # once the last session has ended
            return {"status": "Scheduled"}
        reason = {"Hard": "HardReset", "Soft": "SoftReset"}.get(kind, "ImmediateReset")
        self._later(partial(self._reset, reason))
        return {"status": "Accepted"}

    async def _reset(self, reason: str) -> None:
        assert self.cp is not None
        for evse in self._evses.values():
            self._end_session(evse, reason)
        with trio.move_on_after(5.0):
            await self._wait_idle()
        self._report_status = True
        self.cp.request_reboot("RemoteReset")

    def _target_evses(self, evse_id: int | None) -> list[_Evse]:
        if not evse_id:
            return list(self._evses.values())
        evse = self._evses.get(evse_id)
        return [evse] if evse is not None else []

    def _on_change_availability(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        if self.version is Version.V16:
            evse_id: int | None = request.connector_id
            operative = str(request.type) == "Operative"
        else:
            evse_id = request.evse.id if request.evse is not None else None
            operative = str(request.operational_status) == "Operative"
        targets = self._target_evses(evse_id)
        if not targets:
            return {"status": "Rejected"}
        now: list[_Evse] = []
        for evse in targets:
            if not operative and evse.session is not None:
                evse.inoperative_when_idle = True  # applied when its session ends
            else:
                evse.inoperative_when_idle = False
                evse.operative = operative
                now.append(evse)

        async def report() -> None:
            for evse in now:
                await self._send_status(evse)

        self._later(report)
        return {"status": "Accepted" if len(now) == len(targets) else "Scheduled"}

    def _on_trigger(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        wanted = str(request.requested_message)
        if wanted in ("BootNotification", "Heartbeat"):
            # the charge point's built-in answers know the registration rules
            raise CallError(ErrorCode.NOT_SUPPORTED, "left to the charge point")
        if self.version is Version.V16:
            evse_id: int | None = request.connector_id
        else:
            evse_id = request.evse.id if request.evse is not None else None
        targets = self._target_evses(evse_id)
        if wanted == "StatusNotification" and targets:

            async def report() -> None:
                for evse in targets:
                    await self._send_status(evse)

            self._later(report)
            return {"status": "Accepted"}
        if wanted == "MeterValues" and targets:

            async def meter() -> None:
                for evse in targets:
                    await self._send_meter_values(evse)

            self._later(meter)
            return {"status": "Accepted"}
        return {"status": "NotImplemented"}

    async def _send_meter_values(self, evse: _Evse) -> None:
        if self.version is Version.V16:
            value = {"value": str(int(evse.meter_wh)), "measurand": _ENERGY, "unit": "Wh"}
            payload: dict[str, Any] = {
                "connectorId": evse.evse_id,
                "meterValue": [{"timestamp": _now(), "sampledValue": [value]}],
            }
        else:
            payload = {
                "evseId": evse.evse_id,
                "meterValue": [self._meter_value_2x(evse, "Trigger")],
            }
        await self._call("MeterValues", payload)

    def _on_get_variables(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        results = []
        for item in request.get_variable_data:
            component, variable = item.component.name, item.variable.name
            result: dict[str, Any] = {
                "component": {"name": component},
                "variable": {"name": variable},
            }
            found = self._variables.get((component, variable))
            if found is not None:
                result.update(attributeStatus="Accepted", attributeValue=found[0])
            elif any(c == component for c, _ in self._variables):
                result["attributeStatus"] = "UnknownVariable"
            else:
                result["attributeStatus"] = "UnknownComponent"
            results.append(result)
        return {"getVariableResult": results}

    def _on_set_variables(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        results = []
        for item in request.set_variable_data:
            component, variable = item.component.name, item.variable.name
            result: dict[str, Any] = {
                "component": {"name": component},
                "variable": {"name": variable},
            }
            found = self._variables.get((component, variable))
            if found is None:
                known = any(c == component for c, _ in self._variables)
                result["attributeStatus"] = "UnknownVariable" if known else "UnknownComponent"
            elif not found[1]:
                result["attributeStatus"] = "Rejected"
            else:
                status = self._apply_setting(variable, item.attribute_value)
                if status == "Accepted":
                    self._variables[component, variable] = (item.attribute_value, True)
                result["attributeStatus"] = status
            results.append(result)
        return {"setVariableResult": results}

    def _apply_setting(self, name: str, value: str) -> str:
        """Apply a numeric setting that changes behaviour; ``"Rejected"`` for a bad value."""
        if name in ("HeartbeatInterval", "TxUpdatedInterval", "MeterValueSampleInterval"):
            try:
                seconds = int(value)
            except ValueError:
                return "Rejected"
            if seconds < 0:
                return "Rejected"
            assert self.cp is not None
            if name == "HeartbeatInterval":
                self.cp.set_heartbeat_interval(seconds)
            elif seconds > 0:
                self._meter_interval = float(seconds)
        return "Accepted"

    def _on_get_base_report(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        request_id = int(request.request_id)
        report_data = [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "variableAttribute": [
                    {
                        "type": "Actual",
                        "value": value,
                        "mutability": "ReadWrite" if writable else "ReadOnly",
                    }
                ],
                "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
            }
            for (component, variable), (value, writable) in sorted(self._variables.items())
        ]

        async def report() -> None:
            await self._call(
                "NotifyReport",
                {
                    "requestId": request_id,
                    "generatedAt": _now(),
                    "seqNo": 0,
                    "tbc": False,
                    "reportData": report_data,
                },
            )

        self._later(report)
        return {"status": "Accepted"}

    def _on_get_configuration(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        wanted = list(request.key or self._keys)
        known = [key for key in wanted if key in self._keys]
        unknown = [key for key in wanted if key not in self._keys]
        answer: dict[str, Any] = {
            "configurationKey": [
                {"key": key, "readonly": key not in _WRITABLE_16, "value": self._keys[key]}
                for key in known
            ]
        }
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    def _on_change_configuration(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        key, value = str(request.key), str(request.value)
        if key not in self._keys:
            return {"status": "NotSupported"}
        if key not in _WRITABLE_16:
            return {"status": "Rejected"}
        status = self._apply_setting(key, value)
        if status == "Accepted":
            self._keys[key] = value
        return {"status": status}

    def _on_remote_start(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        if self.version is Version.V16:
            evse_id: int | None = request.connector_id
            token = str(request.id_tag)
            remote_start_id = 0
        else:
            evse_id = request.evse_id
            token = str(request.id_token.id_token)
            remote_start_id = int(request.remote_start_id)
        free = [
            evse for evse in self._target_evses(evse_id) if evse.session is None and evse.operative
        ]
        if not free or not cp.accepted or self._stopping.is_set():
            return {"status": "Rejected"}
        evse = free[0]
        self._new_session(evse, remote_start_id)
        self._later(partial(self._charge, evse, token, remote_start_id))
        return {"status": "Accepted"}

    def _on_remote_stop(self, cp: ChargePoint, request: Any) -> dict[str, Any]:
        wanted = str(request.transaction_id)
        for evse in self._evses.values():
            session = evse.session
            if session is None:
                continue
            if self.version is Version.V16:
                ours = str(self._csms_id(session))
            else:
                ours = session.transaction_id
            if ours == wanted:
                self._end_session(evse, "Remote")
                return {"status": "Accepted"}
        return {"status": "Rejected"}
