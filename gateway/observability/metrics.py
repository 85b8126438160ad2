"""Every Prometheus metric of the gateway, defined in one place.

Metrics live in a registry the app owns (not the process-global default), so
two gateways in one test process do not collide. Label children are cached
in dicts, so the request path pays a dict lookup, not a label resolution.
Labels are bounded: endpoint, model, node, status class, outcome; never keys
or accounts.

The families (all prefixed ``infermesh_``), and what a dashboard does with them:

- ``requests_total{endpoint,model,status_class}``: traffic and error ratio;
- ``request_duration_seconds{endpoint}``, ``time_to_first_token_seconds{endpoint}``
  and ``gateway_overhead_seconds``: latency histograms (p50/p99);
- ``upstream_attempts_total{node,outcome}``, ``failovers_total{model}``,
  ``hedges_total{model}``, ``breaker_state{node,model}`` (read at scrape time);
- ``inflight_requests``, ``inflight_streams``: gauges;
- ``tokens_total{model,kind}`` (kind: input (every prompt token), output, cache_read,
  cache_write), ``cost_usd_total{model}``: usage and spend;
- ``ledger_fsync_seconds`` (observed on the journal's fsync thread;
  prometheus-client metrics are thread-safe), ``ledger_snapshot_seconds``;
- ``config_reloads_total{result}``, ``config_last_reload_successful``;
- plus the standard ``process_*`` (CPU, memory, fds) and ``python_*`` families.

Several processes (``--workers N``, gateway/workers.py): the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before forking, every worker's metrics are then
written to files there, and ``registry`` (what ``/metrics`` renders) is a
``MultiProcessCollector`` over them: one scrape of any worker shows the sum
of all, under the same names. Gauges of in-flight work are summed over live
workers; ``breaker_state`` is the answering worker's own view (each worker
keeps its own breakers); the ``process_*``/``python_*`` families are
single-process only and left out.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily

# LLM latencies span milliseconds (cached, embeddings) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
# Time to first token: mostly 0.1-5 s, so finer there for a useful p50/p99.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
FSYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self, breaker_states: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        registry = CollectorRegistry()  # where this gateway's metrics are defined
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            from prometheus_client import multiprocess
            self.registry = CollectorRegistry()  # what /metrics shows: every worker's files, aggregated
            multiprocess.MultiProcessCollector(self.registry)
        else:
            self.registry = registry
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.requests = Counter("infermesh_requests_total", "Client requests answered",
                                ("endpoint", "model", "status_class"), registry=registry)
        self.duration = Histogram("infermesh_request_duration_seconds", "Whole request time",
                                  ("endpoint",), buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram("infermesh_time_to_first_token_seconds", "Time to the first streamed byte",
                              ("endpoint",), buckets=TTFT_BUCKETS, registry=registry)
        self.overhead = Histogram("infermesh_gateway_overhead_seconds",
                                  "Request time minus time spent waiting on upstreams",
                                  buckets=OVERHEAD_BUCKETS, registry=registry)
        self.attempts = Counter("infermesh_upstream_attempts_total", "Upstream attempts by outcome",
                                ("node", "outcome"), registry=registry)
        self.failovers = Counter("infermesh_failovers_total", "Requests answered by a later attempt",
                                 ("model",), registry=registry)
        self.hedges = Counter("infermesh_hedges_total", "Hedged second attempts started",
                              ("model",), registry=registry)
        self.inflight = Gauge("infermesh_inflight_requests", "Requests in progress", registry=registry,
                              multiprocess_mode="livesum")
        self.streams = Gauge("infermesh_inflight_streams", "Streams being relayed", registry=registry,
                             multiprocess_mode="livesum")
        self.tokens = Counter("infermesh_tokens_total", "Tokens billed", ("model", "kind"), registry=registry)
        self.cost = Counter("infermesh_cost_usd_total", "USD billed", ("model",), registry=registry)
        self.fsync = Histogram("infermesh_ledger_fsync_seconds", "Journal fsync latency",
                               buckets=FSYNC_BUCKETS, registry=registry)
        self.snapshot = Histogram("infermesh_ledger_snapshot_seconds", "Ledger snapshot write time",
                                  buckets=SNAPSHOT_BUCKETS, registry=registry)
        self.reloads = Counter("infermesh_config_reloads_total", "Config reloads by result (ok, rejected)",
                               ("result",), registry=registry)
        self.reload_ok = Gauge("infermesh_config_last_reload_successful",
                               "1 if the last config reload was applied (or none was tried), 0 if rejected",
                               registry=registry, multiprocess_mode="livemin")
        self.reload_ok.set(1)
        for result in ("ok", "rejected"):
            self.reloads.labels(result)  # both series exist from the start, so rate() sees the first one
        self._children: dict[tuple[Any, ...], Any] = {}
        self._inflight = 0  # the one in-flight count: limits.max_inflight, the drain and the gauge follow it
        self._idle: asyncio.Event | None = None  # set when the in-flight count reaches 0 (the drain waits on it)
        self._streams = 0
        if breaker_states is not None:
            self.registry.register(_BreakerCollector(breaker_states))

    def request_started(self) -> None:
        self._inflight += 1
        self.inflight.inc()

    def request_ended(self) -> None:
        self._inflight -= 1
        self.inflight.dec()
        if not self._inflight and self._idle is not None:
            self._idle.set()

    def inflight_now(self) -> int:
        """Model requests in progress right now (streams included): what limits.max_inflight caps and a drain
        waits for."""
        return self._inflight

    async def wait_idle(self) -> None:
        """Return once no model request is in flight: the drain waits on this instead of polling the count."""
        while self._inflight:
            if self._idle is None or self._idle.is_set():  # an event already set belongs to an earlier idle moment
                self._idle = asyncio.Event()
            await self._idle.wait()

    def stream_started(self) -> None:
        self._streams += 1
        self.streams.inc()

    def stream_ended(self) -> None:
        self._streams -= 1
        self.streams.dec()

    def streams_now(self) -> int:
        return self._streams

    def child(self, metric: Any, *labels: str) -> Any:
        """The label child for these values, resolved once and then cached."""
        key = (id(metric),) + labels
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class _BreakerCollector:
    """Breaker states are read from the router at scrape time: nothing on the request path."""

    def __init__(self, states: Callable[[], list[dict[str, Any]]]) -> None:
        self._states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("infermesh_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                                   labels=("node", "model"))
        for row in self._states():
            family.add_metric((row["node"], row["model"]), BREAKER_VALUES.get(str(row["breaker"]), 2))
        yield family
