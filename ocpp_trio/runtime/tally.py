"""The counters of the calls of many stations: plain numbers on the call path, snapshots to read.

A :class:`CallTally` is shared by every station of a CSMS (a station run on its own has its
own) and lives as long as the CSMS, so its counts only grow, whatever the stations do: what a
metrics scrape needs.  Recording is a dictionary lookup and a few integer additions per call
(the per-call path is benchmarked); nothing is formatted or allocated until
:meth:`CallTally.statistics` copies it all into frozen records.

Outcomes of a station's CALL (``received``): ``result`` (a CALLRESULT went out) or ``error`` (a
CALLERROR, whoever decided it: the handler, the registration rules, a full queue, the RPC
layer for a broken CALL).  Outcomes of ours (``sent``): ``result``, ``error`` (a CALLERROR
came back), ``invalid`` (a broken answer, or one that failed its schema), ``timeout``, ``lost``
(the connection dropped first).  CALLERROR codes are counted per direction under their
version-independent names (``ErrorCode.value``); a code from the peer that is not an OCPP code
counts as ``other``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Final

import attrs

from ocpp_trio.errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    ErrorCode,
    OCPPError,
)

__all__ = [
    "LATENCY_BUCKETS",
    "UNKNOWN_ACTION",
    "CallStatistics",
    "CallTally",
    "Latency",
    "LatencySnapshot",
    "code_name",
]

#: upper bounds (seconds) of the latency histograms
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: how an action the registry does not know is counted (a peer's broken CALL)
UNKNOWN_ACTION: Final = "unknown"


@attrs.frozen
class LatencySnapshot:
    """A latency histogram: ``counts[i]`` observations were at most ``buckets[i]`` seconds and
    above the bound before (not cumulative); the last count is above the last bound."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    #: the sum of the observations, in seconds
    total: float

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)


class Latency:
    """A latency histogram kept as plain numbers (see :data:`LATENCY_BUCKETS`)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> LatencySnapshot:
        """A copy of the histogram."""
        return LatencySnapshot(LATENCY_BUCKETS, tuple(self.counts), self.total)


def code_name(code: ErrorCode | str) -> str:
    """How CALLERROR codes are counted: the version-independent name, ``other`` for a code
    that is not an OCPP one."""
    return code.value if isinstance(code, ErrorCode) else "other"


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class _Received:
    __slots__ = ("error", "latency", "result")

    def __init__(self) -> None:
        self.result = 0
        self.error = 0
        self.latency = Latency()


class _Sent:
    __slots__ = ("error", "invalid", "latency", "lost", "result", "timeout")

    def __init__(self) -> None:
        self.result = 0
        self.error = 0
        self.invalid = 0
        self.timeout = 0
        self.lost = 0
        self.latency = Latency()


@attrs.frozen(kw_only=True)
class CallStatistics:
    """A snapshot of a :class:`CallTally` (see the module docs for the outcomes)."""

    #: the stations' CALLs by (action, outcome)
    received: Mapping[tuple[str, str], int]
    #: our CALLs by (action, outcome)
    sent: Mapping[tuple[str, str], int]
    #: CALLERRORs we sent, and received, by code
    errors_sent: Mapping[str, int]
    errors_received: Mapping[str, int]
    #: per action: from a station CALL's arrival to its answer being sent (queueing, the
    #: handler, the write-ahead commit)
    handling: Mapping[str, LatencySnapshot]
    #: per action: from our CALL being sent to its end (answer, error, timeout)
    round_trip: Mapping[str, LatencySnapshot]
    #: exchanges extra handlers missed because their channel was full
    extra_dropped: int
    #: times a station's reading paused (over ``StationConfig.max_message_rate``), and the
    #: seconds those pauses took
    throttled: int = 0
    throttled_seconds: float = 0.0


class CallTally:
    """The counters of the calls of every station of a CSMS (see the module docs)."""

    def __init__(self) -> None:
        self._received: dict[str, _Received] = {}
        self._sent: dict[str, _Sent] = {}
        self._errors_sent: dict[str, int] = {}
        self._errors_received: dict[str, int] = {}
        #: exchanges extra handlers missed (stations add to it)
        self.extra_dropped = 0
        #: pauses of stations' reading for their message rate, and their seconds (stations
        #: add to them)
        self.throttled = 0
        self.throttled_seconds = 0.0

    def answered(self, action: str, error: CallError | None, seconds: float) -> None:
        """A station's CALL was answered (``error``: the CALLERROR sent), ``seconds`` after it
        arrived."""
        tally = self._received.get(action) or self._new_received(action)
        if error is None:
            tally.result += 1
        else:
            tally.error += 1
            _count(self._errors_sent, code_name(error.code))
        tally.latency.observe(seconds)

    def rejected(self, action: str, code: ErrorCode) -> None:
        """The RPC layer answered a station's broken CALL itself (no handler time to count);
        ``action`` is :data:`UNKNOWN_ACTION` when the registry does not know it."""
        tally = self._received.get(action) or self._new_received(action)
        tally.error += 1
        _count(self._errors_sent, code.value)

    def _new_received(self, action: str) -> _Received:
        tally = self._received[action] = _Received()
        return tally

    def call_done(self, action: str, error: OCPPError | None, seconds: float) -> None:
        """Our CALL of ``action`` ended (``error``: how it failed), ``seconds`` after it was
        sent."""
        tally = self._sent.get(action)
        if tally is None:
            tally = self._sent[action] = _Sent()
        if error is None:
            tally.result += 1
        elif isinstance(error, CallError):
            tally.error += 1
            _count(self._errors_received, code_name(error.code))
        elif isinstance(error, CallTimeoutError):
            tally.timeout += 1
        elif isinstance(error, ConnectionLostError):
            tally.lost += 1
        else:  # a RemoteProtocolError: a broken answer, or one that failed its schema
            tally.invalid += 1
        tally.latency.observe(seconds)

    def statistics(self) -> CallStatistics:
        """A snapshot of the counters."""
        received: dict[tuple[str, str], int] = {}
        for action, r in self._received.items():
            received[action, "result"] = r.result
            received[action, "error"] = r.error
        sent: dict[tuple[str, str], int] = {}
        for action, s in self._sent.items():
            sent[action, "result"] = s.result
            sent[action, "error"] = s.error
            sent[action, "invalid"] = s.invalid
            sent[action, "timeout"] = s.timeout
            sent[action, "lost"] = s.lost
        return CallStatistics(
            received=received,
            sent=sent,
            errors_sent=dict(self._errors_sent),
            errors_received=dict(self._errors_received),
            # an action only ever rejected by the RPC layer has no handling time
            handling={
                action: r.latency.snapshot()
                for action, r in self._received.items()
                if any(r.latency.counts)
            },
            round_trip={a: s.latency.snapshot() for a, s in self._sent.items()},
            extra_dropped=self.extra_dropped,
            throttled=self.throttled,
            throttled_seconds=self.throttled_seconds,
        )
