"""The station side's configuration, state, statistics and the handle of a queued message.

Kept apart from :mod:`ocpp_trio.client.charge_point` so that the runtime module stays about
the runtime.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from ocpp_trio import messages
from ocpp_trio.messages._base import Request, Response
from ocpp_trio.protocol.version import Version

__all__ = [
    "BootInfo",
    "ChargePointConfig",
    "ChargePointState",
    "ChargePointStatistics",
    "QueuedMessage",
    "RetryBackOff",
]

R = TypeVar("R", bound=Response)


class ChargePointState(enum.Enum):
    """Where a charge point stands, as one value (for displays and tests)."""

    #: not connected; waiting before the next attempt, or not started
    OFFLINE = "offline"
    #: opening the WebSocket connection
    CONNECTING = "connecting"
    #: connected, BootNotification sent or about to be, no answer yet
    BOOTING = "booting"
    #: connected, the CSMS answered Pending
    PENDING = "pending"
    #: connected, the CSMS answered Rejected
    REJECTED = "rejected"
    #: connected and accepted (after a boot, or resumed on a reconnect)
    ACCEPTED = "accepted"


@attrs.frozen(kw_only=True)
class RetryBackOff:
    """The randomized exponential back-off between connection attempts (OCPP 2.x
    ``OCPPCommCtrlr.RetryBackOff*``).

    The wait before attempt ``n`` (``n = 0`` after the first failure) is
    ``wait_minimum * 2 ** min(n, repeat_times) + uniform(0, random_range)``: it doubles with each
    consecutive failure, ``repeat_times`` times at most, and then stays there, with fresh
    randomness every time so that many stations do not reconnect in step after a CSMS restart.

    Attributes:
        wait_minimum: seconds of the first wait (``RetryBackOffWaitMinimum``).
        random_range: at most this many seconds are added at random (``RetryBackOffRandomRange``).
        repeat_times: how many times the wait doubles (``RetryBackOffRepeatTimes``).
    """

    wait_minimum: float = 10.0
    random_range: float = 15.0
    repeat_times: int = 5

    def __attrs_post_init__(self) -> None:
        if not (self.wait_minimum >= 0 and self.random_range >= 0 and self.repeat_times >= 0):
            raise ValueError("RetryBackOff values must be >= 0")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failed or lost connections (``>= 1``).

        Args:
            failures: consecutive failures so far, counting the one just seen.
            rng: the random source (``random`` module's by default); pass a seeded one for
                reproducible waits.
        """
        doublings = min(max(failures - 1, 0), self.repeat_times)
        uniform = rng.uniform if rng is not None else random.uniform
        jitter = uniform(0.0, self.random_range) if self.random_range else 0.0
        return self.wait_minimum * (1 << doublings) + jitter


@attrs.frozen(kw_only=True)
class BootInfo:
    """What a charge point says about itself in its BootNotification, for any version.

    Attributes:
        vendor: 1.6 ``chargePointVendor`` (20 characters), 2.x ``chargingStation.vendorName``.
        model: 1.6 ``chargePointModel`` (20 characters), 2.x ``chargingStation.model``.
        serial_number: 1.6 ``chargePointSerialNumber``, 2.x ``chargingStation.serialNumber``.
        firmware_version: ``firmwareVersion``.
    """

    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None

    def request(self, version: Version, reason: str = "PowerUp") -> Request[Any]:
        """The BootNotificationRequest of ``version``; ``reason`` is the 2.x ``BootReason``
        (ignored on 1.6).

        Raises:
            MessageValidationError: a field is too long or ``reason`` is not a boot reason.
        """
        payload: dict[str, Any]
        if version is Version.V16:
            payload = {"chargePointVendor": self.vendor, "chargePointModel": self.model}
            if self.serial_number is not None:
                payload["chargePointSerialNumber"] = self.serial_number
            if self.firmware_version is not None:
                payload["firmwareVersion"] = self.firmware_version
        else:
            station: dict[str, Any] = {"vendorName": self.vendor, "model": self.model}
            if self.serial_number is not None:
                station["serialNumber"] = self.serial_number
            if self.firmware_version is not None:
                station["firmwareVersion"] = self.firmware_version
            payload = {"reason": reason, "chargingStation": station}
        request = messages.decode_request(version, "BootNotification", payload)
        assert isinstance(request, Request)
        return request


#: Builds the BootNotificationRequest for a version and a 2.x boot reason.
BootFactory = Callable[[Version, str], Request[Any]]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value}")


@attrs.frozen(kw_only=True)
class ChargePointConfig:
    """How a charge point behaves.

    Attributes:
        call_timeout: seconds :meth:`~ocpp_trio.ChargePoint.call` waits for the CSMS's answer.
        connect_timeout: seconds the TCP/TLS connection and the WebSocket handshake may take.
        retry_back_off: the waits between connection attempts.
        boot_retry_interval: seconds before the next BootNotification when the CSMS answered
            Pending or Rejected with ``interval`` 0, or did not answer the boot at all.
        heartbeat_interval: seconds of inactivity between Heartbeats; ``None`` uses the
            interval of the Accepted boot answer, ``0`` sends none.
        offline_queue_size: transaction messages the offline queue holds;
            :meth:`~ocpp_trio.ChargePoint.enqueue` waits for room beyond that.
        message_attempts: how often a queued message is sent before it is given up when the
            CSMS answers it with a CALLERROR, an invalid answer or none in time (a lost
            connection does not count: the message is sent again after the reconnect).
        message_attempt_interval: seconds between two such attempts.
        handler_queue_size: CSMS CALLs that may wait for the handler task; more are answered
            ``GenericError`` (the CSMS should send one at a time).
        max_message_size: the largest WebSocket message accepted, in bytes (UTF-8).
        send_timeout: seconds one WebSocket send may take before the connection is aborted.
        close_timeout: seconds the WebSocket close handshake may take.
        validate_outbound: check our own messages against the schema before they leave.
    """

    call_timeout: float = attrs.field(default=30.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    retry_back_off: RetryBackOff = attrs.Factory(RetryBackOff)
    boot_retry_interval: float = attrs.field(default=60.0, validator=_positive)
    heartbeat_interval: float | None = None
    offline_queue_size: int = 1000
    message_attempts: int = 3
    message_attempt_interval: float = attrs.field(default=10.0, validator=_non_negative)
    handler_queue_size: int = 4
    max_message_size: int = 1024 * 1024
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    close_timeout: float = attrs.field(default=5.0, validator=_non_negative)
    validate_outbound: bool = True

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_interval is not None and not self.heartbeat_interval >= 0:
            raise ValueError("heartbeat_interval must be >= 0 or None")
        if self.offline_queue_size < 1 or self.message_attempts < 1:
            raise ValueError("offline_queue_size and message_attempts must be >= 1")
        if self.handler_queue_size < 1 or self.max_message_size < 1:
            raise ValueError("handler_queue_size and max_message_size must be >= 1")


@attrs.frozen(kw_only=True)
class ChargePointStatistics:
    """A snapshot of a charge point's counters and state."""

    identity: str
    state: ChargePointState
    #: the version of the current (or last) connection
    version: Version | None
    connects: int
    connect_failures: int
    disconnects: int
    boots_sent: int
    calls_sent: int
    calls_answered: int
    #: CALLERRORs and invalid answers
    calls_failed: int
    calls_timed_out: int
    calls_received: int
    handler_errors: int
    #: transaction messages waiting in the offline queue (or being sent)
    queued: int
    #: queued messages given up after ``message_attempts``
    queue_given_up: int


class QueuedMessage(Generic[R]):
    """A transaction message in the offline queue: wait for its answer with :meth:`wait`.

    Made by :meth:`~ocpp_trio.ChargePoint.enqueue`; resolved by the charge point once the CSMS
    answers it, or failed when it was given up (the error is the last one seen).
    """

    def __init__(self, action: str, offline: bool) -> None:
        #: the action, or ``"?"`` when the request is built at send time
        self.action = action
        #: whether it was queued while the charge point had no accepted connection
        self.offline = offline
        self._done = trio.Event()
        self._response: R | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """Whether it was answered or given up."""
        return self._done.is_set()

    def result(self) -> R:
        """The CSMS's answer.

        Raises:
            RuntimeError: not done yet.
            Exception: the error that made the charge point give it up (a ``CallError``, a
                ``CallTimeoutError``, a ``LocalProtocolError``, or what its factory raised).
        """
        if not self._done.is_set():
            raise RuntimeError(f"queued {self.action} has not been answered yet")
        if self._error is not None:
            raise self._error
        assert self._response is not None
        return self._response

    async def wait(self) -> R:
        """Wait until the message is answered (or given up) and return the answer.

        Waits for: the connection, the messages queued before it, and the CSMS's answer,
        without a time limit (wrap it in ``trio.move_on_after`` to bound it).  Cancellation:
        only of the wait; the message stays queued.

        Raises:
            Exception: what :meth:`result` raises.
        """
        await self._done.wait()
        return self.result()

    def _resolve(self, response: R) -> None:
        self._response = response
        self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def __repr__(self) -> str:
        state = "done" if self.done() else "queued"
        return f"<QueuedMessage {self.action} {state}{' offline' if self.offline else ''}>"


def clamp_interval(value: float | None, fallback: float) -> float:
    """``value`` when it is a usable positive number of seconds, else ``fallback``."""
    if value is None or not math.isfinite(value) or value <= 0:
        return fallback
    return float(value)
