"""Prometheus metrics of a CSMS, read at scrape time.

Nothing here runs on the per-call path: the runtime keeps plain counters (the stations',
:class:`~ocpp_trio.runtime.tally.CallTally`, the store writer's, the authenticator's), and
:class:`CSMSCollector` turns one :meth:`~ocpp_trio.CSMS.statistics` snapshot into metric
families each time it is collected.  Serve it with :func:`metrics_text` (the admin API's
``GET /metrics`` does), or register :func:`csms_collector` in a registry of the application's
own.  The metrics are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Protocol

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ocpp_trio.csms.core import CSMS, CSMSStatistics
from ocpp_trio.runtime.tally import LatencySnapshot

__all__ = [
    "METRICS_CONTENT_TYPE",
    "CSMSCollector",
    "csms_collector",
    "csms_registry",
    "metrics_text",
]

#: the content type of :func:`metrics_text` (Prometheus's text format)
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_PREFIX: Final = "ocpp_trio_"
# what an authenticator counts that is not a refusal: every other counter is one
_AUTH_NOT_FAILURES: Final = frozenset({"accepted", "pending_adopted", "remembered"})


class _HasStatistics(Protocol):
    def statistics(self) -> object: ...


class CSMSCollector(Collector):
    """A Prometheus collector of one CSMS (see docs/metrics.md for the metrics).

    Args:
        csms: the CSMS.
        authenticator: whose ``statistics()`` give the authentication counters (an attrs
            record of counts, as :class:`~ocpp_trio.StationAuthenticator` has); by default
            the ``check_request`` the CSMS serves with, when it has one.
    """

    def __init__(self, csms: CSMS, *, authenticator: _HasStatistics | None = None) -> None:
        self.csms = csms
        self.authenticator = authenticator

    def collect(self) -> Iterator[Metric]:
        """The metric families of one snapshot of the CSMS's counters."""
        stats = self.csms.statistics()
        yield from _stations(stats)
        yield from _calls(stats)
        yield from _store(stats)
        yield from _auth(self._auth_statistics())

    def _auth_statistics(self) -> Mapping[str, int] | None:
        source: object = self.authenticator
        if source is None:
            source = self.csms.check_request
        statistics = getattr(source, "statistics", None)
        if not callable(statistics):
            return None
        snapshot = statistics()
        kind = type(snapshot)
        if not attrs.has(kind):
            return None
        counts: dict[str, int] = {}
        for field in attrs.fields(kind):
            value = getattr(snapshot, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[field.name] = value
        return counts


def csms_collector(csms: CSMS, *, authenticator: _HasStatistics | None = None) -> Collector:
    """The Prometheus collector of ``csms`` (what the admin API's ``/metrics`` serves), for a
    registry of the application's own::

        registry = prometheus_client.CollectorRegistry()
        registry.register(csms_collector(csms))

    (or ``prometheus_client.REGISTRY.register(...)`` beside the process metrics).  Each
    collection reads :meth:`~ocpp_trio.CSMS.statistics` once and never waits; the metrics are
    listed in docs/metrics.md.

    Args:
        csms: the CSMS.
        authenticator: what the authentication counters are read from (its
            ``statistics()``, as :class:`~ocpp_trio.StationAuthenticator` has); by default
            the ``check_request`` the CSMS serves with, when it has ``statistics()``.
    """
    return CSMSCollector(csms, authenticator=authenticator)


def csms_registry(csms: CSMS, *, authenticator: _HasStatistics | None = None) -> CollectorRegistry:
    """A registry holding only :func:`csms_collector` of ``csms`` (what ``/metrics`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(csms_collector(csms, authenticator=authenticator))
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus's text format (:data:`METRICS_CONTENT_TYPE`)."""
    return generate_latest(registry)


# -- the families --------------------------------------------------------------------------


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_PREFIX + name, documentation, value=value)


def _labelled(
    make: Callable[..., CounterMetricFamily | GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: list[str],
    values: Iterable[tuple[tuple[str, ...], float]],
) -> Metric:
    family = make(_PREFIX + name, documentation, labels=labels)
    for label_values, value in sorted(values):
        family.add_metric(list(label_values), value)
    return family


# plain numbers of a snapshot: (family, name, help, attribute)
_Scalar = tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str, str]
_CSMS_SCALARS: Final[tuple[_Scalar, ...]] = (
    (
        GaugeMetricFamily,
        "stations_known",
        "Station identities with machines (added, or seen connected).",
        "stations_known",
    ),
    (CounterMetricFamily, "connections", "Station connections served.", "connections_served"),
    (
        CounterMetricFamily,
        "connections_replaced",
        "Connections closed because the same identity connected again.",
        "connections_replaced",
    ),
    (
        CounterMetricFamily,
        "connections_refused",
        "Connections refused as duplicates of a connected identity.",
        "connections_refused",
    ),
    (
        GaugeMetricFamily,
        "handler_queue_calls",
        "Station CALLs waiting for their station's handler, in all.",
        "handler_queue",
    ),
    (
        GaugeMetricFamily,
        "handler_queue_max_calls",
        "Station CALLs waiting for the handler of the busiest station.",
        "handler_queue_max",
    ),
)
_STORE_SCALARS: Final[tuple[_Scalar, ...]] = (
    (
        GaugeMetricFamily,
        "store_queue_writes",
        "Store writes waiting for the next commit.",
        "queued",
    ),
    (
        GaugeMetricFamily,
        "store_committing_writes",
        "Store writes in the commit running now.",
        "committing",
    ),
    (CounterMetricFamily, "store_commits", "Store commits that succeeded.", "commits"),
    (CounterMetricFamily, "store_writes", "Writes in the store commits that succeeded.", "writes"),
    (CounterMetricFamily, "store_commit_failures", "Store commits that failed.", "failures"),
    (
        CounterMetricFamily,
        "store_stale_writes",
        "Station writes the store refused because another process claimed the station.",
        "stale",
    ),
)


def _scalars(table: tuple[_Scalar, ...], source: object) -> Iterator[Metric]:
    for family, name, documentation, attribute in table:
        yield family(_PREFIX + name, documentation, value=getattr(source, attribute))


def _stations(stats: CSMSStatistics) -> Iterator[Metric]:
    yield _labelled(
        GaugeMetricFamily,
        "stations_connected",
        "Connected stations by OCPP version and registration state.",
        ["version", "state"],
        stats.stations_by_state.items(),
    )
    yield from _scalars(_CSMS_SCALARS, stats)


def _calls(stats: CSMSStatistics) -> Iterator[Metric]:
    calls = stats.calls
    if calls is None:
        return
    yield _labelled(
        CounterMetricFamily,
        "calls_received",
        "Station CALLs by action and outcome (result: a CALLRESULT was sent; error: a CALLERROR).",
        ["action", "outcome"],
        calls.received.items(),
    )
    yield _labelled(
        CounterMetricFamily,
        "calls_sent",
        "CSMS CALLs by action and outcome (result, error, invalid, timeout, lost).",
        ["action", "outcome"],
        calls.sent.items(),
    )
    errors = [(("sent", code), n) for code, n in calls.errors_sent.items()]
    errors += [(("received", code), n) for code, n in calls.errors_received.items()]
    yield _labelled(
        CounterMetricFamily,
        "callerrors",
        "CALLERRORs by direction and code.",
        ["direction", "code"],
        errors,
    )
    yield _histogram(
        "call_duration_seconds",
        "CSMS CALLs: from sending to the answer (or the timeout), by action.",
        calls.round_trip,
    )
    yield _histogram(
        "handling_duration_seconds",
        "Station CALLs: from arrival to the answer being sent (queue, handler, store), by action.",
        calls.handling,
    )
    yield _counter(
        "extra_handler_dropped",
        "Exchanges extra handlers missed because their buffer was full.",
        calls.extra_dropped,
    )
    yield _counter(
        "extra_handler_errors",
        "Exceptions raised by CSMS-wide extra handlers.",
        stats.extra_errors,
    )
    yield _counter(
        "station_reads_throttled",
        "Pauses in reading from a station that sent faster than its message rate allows.",
        calls.throttled,
    )
    yield _counter(
        "station_reads_throttled_seconds",
        "Seconds reading from stations was paused for their message rate.",
        calls.throttled_seconds,
    )
    dropped = stats.events.dropped
    if stats.machine_events is not None:
        dropped += stats.machine_events.dropped
    yield _counter(
        "events_dropped", "Events subscribers missed because their buffer was full.", dropped
    )


def _store(stats: CSMSStatistics) -> Iterator[Metric]:
    store = stats.store
    if store is None:
        return
    yield from _scalars(_STORE_SCALARS, store)
    if stats.store_commits is not None:
        yield _histogram(
            "store_commit_duration_seconds",
            "How long store commits took (successful or not).",
            {"": stats.store_commits},
            label=None,
        )


def _auth(counts: Mapping[str, int] | None) -> Iterator[Metric]:
    if counts is None:
        return
    yield _counter(
        "auth_accepted", "Connections the authenticator let through.", counts.get("accepted", 0)
    )
    failures = [((name,), n) for name, n in counts.items() if name not in _AUTH_NOT_FAILURES]
    yield _labelled(
        CounterMetricFamily,
        "auth_failures",
        "Connections the authenticator refused, by reason.",
        ["reason"],
        failures,
    )


def _histogram(
    name: str,
    documentation: str,
    histograms: Mapping[str, LatencySnapshot],
    *,
    label: str | None = "action",
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        _PREFIX + name, documentation, labels=[label] if label is not None else None
    )
    for key in sorted(histograms):
        snapshot = histograms[key]
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(snapshot.buckets, snapshot.counts, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", snapshot.count))
        family.add_metric([key] if label is not None else [], buckets, snapshot.total)
    return family
