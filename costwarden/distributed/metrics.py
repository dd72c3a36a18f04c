"""Prometheus metrics of one worker, served on its own HTTP port (`/metrics`).

Counters move only at the commit point (after ClickHouse accepted a batch), so a retried batch
is not counted twice by the worker that retries it.
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from costwarden.money import from_nanos

log = logging.getLogger(__name__)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "costwarden_"
        self.events_in = Counter(p + "events_in", "Raw usage records consumed and committed", registry=r)
        self.processed = Counter(p + "events_processed", "Events priced, attributed and stored", registry=r)
        self.duplicates = Counter(p + "events_duplicate", "Events recognised as already counted", registry=r)
        self.dead = Counter(p + "events_dead_lettered", "Events sent to the dead-letter topic", ["reason"],
                            registry=r)
        self.unpriced = Counter(p + "events_unpriced", "Events with no price in the catalogue",
                                ["provider", "model"], registry=r)
        self.cost = Counter(p + "cost_processed_usd", "Cost of stored events (USD)", registry=r)
        self.lag = Gauge(p + "consumer_lag", "Records behind the end of the partition", ["topic", "partition"],
                         registry=r)
        self.assigned = Gauge(p + "partition_assigned", "1 while this worker holds the partition",
                              ["topic", "partition"], registry=r)
        self.write_seconds = Histogram(p + "clickhouse_write_seconds", "Duration of a stage's commit point",
                                       ["stage"], registry=r,
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.write_failures = Counter(p + "clickhouse_write_failures", "Failed commit points (retried)",
                                      ["stage"], registry=r)
        self.signals = Counter(p + "budget_signals", "Budget thresholds crossed and spikes", ["kind"], registry=r)
        self.control_changes = Counter(p + "control_changes", "Control changes published", registry=r)
        self.alerts_sent = Counter(p + "alerts_sent", "Alert notifications delivered", registry=r)
        self.alerts_failed = Counter(p + "alerts_failed", "Alert notifications given up", registry=r)
        self.alerts_retried = Counter(p + "alerts_retried", "Alert notifications to retry", registry=r)

    def raw_committed(self, res) -> None:
        self.events_in.inc(res.events_in)
        self.processed.inc(res.accepted)
        self.duplicates.inc(res.duplicates)  # replayed ones included
        for reason, n in res.dead_reasons.items():
            self.dead.labels(reason).inc(n)
        for pm, n in res.unpriced.items():
            provider, _, model = pm.partition("/")
            self.unpriced.labels(provider, model).inc(n)
        if res.cost_nanos:
            # Prometheus samples are floats; the exact figure is in ClickHouse.
            self.cost.inc(float(from_nanos(res.cost_nanos)))

    def budget_committed(self, res) -> None:
        for s in res.signals:
            self.signals.labels(s.kind).inc()
        self.control_changes.inc(len(res.controls))

    def assignment(self, assigned, revoked=()) -> None:
        for topic, partition in revoked:
            self.assigned.labels(topic, str(partition)).set(0)
        for topic, partition in assigned:
            self.assigned.labels(topic, str(partition)).set(1)

    def delivered(self, report) -> None:
        self.alerts_sent.inc(report.sent)
        self.alerts_failed.inc(report.failed)
        self.alerts_retried.inc(report.retried)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Start the /metrics endpoint; returns the port (port 0: a free one)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        bound = server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", addr, bound)
        return bound

