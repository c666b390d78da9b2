"""The configuration of station connections (:class:`StationConfig`), and their counters."""

from __future__ import annotations

import math

import attrs

from ocpp_trio.protocol.supervisor import SupervisorConfig
from ocpp_trio.runtime.machines import MachinesConfig
from ocpp_trio.runtime.session import SessionCounts

__all__ = ["StationConfig"]


@attrs.frozen(kw_only=True)
class StationConfig:
    """How each station connection behaves.

    Attributes:
        call_timeout: seconds :meth:`Station.call` waits for the station's answer.
        handler_queue_size: station CALLs that may wait for the handler runner (a station
            should have one at a time; the excess is answered GenericError). With the one
            being handled, at most ``handler_queue_size + 1`` station CALLs are in flight.
        auto_heartbeat: answer Heartbeat with the current UTC time in the reader (no trip
            through the handler runner) when the application has no Heartbeat handler of its
            own; off, Heartbeat goes the way of every CALL (its default answer is the same).
        extra_handler_buffer: default channel size of each extra handler.
        extra_handler_max_failures: consecutive failures after which an extra handler is
            removed (``0``: never).
        supervisor: the registration rules (allow-lists, early-boot policy).
        validate_outbound: check our own messages against the schema before sending.
        accept_binary: read binary frames as text (lenient mode) instead of rejecting them.
        machines: the EVSE, transaction and report machines (see :class:`MachinesConfig`).
        idle_timeout: seconds without any frame from the station after which the connection
            is closed (1000, "idle timeout"); ``None`` (the default) never. WebSocket pings
            do not count: set it above the station's heartbeat interval.
        max_message_rate: frames per second a station may send, sustained; ``None``: any.
            Over it, reading from that station pauses until it is back within the rate, so
            its own sends back up: nothing is lost or refused, and one station flooding the
            CSMS cannot take the CPU from the others.  A station sends one CALL at a time
            and waits for its answer, so in service it stays far below the default.
        message_burst: frames a station may send at once above the rate (its boot, an
            offline queue, a report's parts).
    """

    call_timeout: float = 30.0
    handler_queue_size: int = 4
    auto_heartbeat: bool = True
    extra_handler_buffer: int = 16
    extra_handler_max_failures: int = 10
    supervisor: SupervisorConfig = attrs.Factory(SupervisorConfig)
    validate_outbound: bool = True
    accept_binary: bool = False
    machines: MachinesConfig = attrs.Factory(MachinesConfig)
    idle_timeout: float | None = None
    max_message_rate: float | None = attrs.field(default=50.0)
    message_burst: int = attrs.field(default=200, validator=attrs.validators.ge(1))

    @max_message_rate.validator
    def _check_rate(self, attribute: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None and not 0 < value < math.inf:
            raise ValueError(f"max_message_rate must be > 0 and finite, or None, not {value}")


@attrs.define
class _Counts(SessionCounts):
    heartbeats_answered: int = 0
    extra_dropped: int = 0
