"""The Faust app of a distributed worker, and the runtime its agents call.

    app = create_app(settings)            # agents registered, nothing started
    run_worker(settings)                   # create topics, migrate, serve metrics, run until SIGTERM

The runtime owns the two stages and runs their commit points in a worker thread (ClickHouse
I/O never blocks the event loop, so heartbeats and the lag timer keep running while it is
down). A failed commit point is retried with backoff until it succeeds: its Kafka records stay
unacknowledged, so their offsets cannot commit, and consumer lag shows the wait.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import timezone
from pathlib import Path

import faust

from costwarden.config import Settings
from costwarden.distributed.budget_stage import BudgetStage
from costwarden.distributed.metrics import WorkerMetrics
from costwarden.distributed.raw_stage import RawStage, Slice
from costwarden.distributed.state import Core

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.core = Core.load(settings)
        self.raw_store = self.core.open_store(migrate_schema=True)
        self.budget_store = self.core.open_store()  # its own connection: the stages run concurrently
        self.raw = RawStage(self.core, self.raw_store)
        self.budget = BudgetStage(self.core, self.budget_store)
        self.next_offset: dict[tuple[str, int], int] = {}  # per partition: next offset to commit
        self.delivery = None

    async def commit_point(self, stage: str, fn, *args):
        """Run a stage's commit point in a thread; retry with backoff until it succeeds."""
        delay = 0.5
        loop = asyncio.get_running_loop()
        while True:
            t = time.monotonic()
            try:
                res = await loop.run_in_executor(None, fn, *args)
            except Exception as e:  # StoreError after the store's own retries, or anything unexpected
                self.metrics.write_failures.labels(stage).inc()
                log.warning("%s commit point failed, retrying in %.1fs (offsets stay uncommitted): %s",
                            stage, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.metrics.write_seconds.labels(stage).observe(time.monotonic() - t)
            return res

    def start_delivery(self) -> None:
        from costwarden.alerts.outbox import DeliveryWorker
        from costwarden.embedded import _default_notifier

        metrics = self.metrics

        class CountingDelivery(DeliveryWorker):
            def _pass(self) -> None:
                try:
                    metrics.delivered(self.outbox.deliver_due(self.notifier, self.clock()))
                except Exception:
                    log.exception("alert delivery pass failed")
                self.passes += 1

        s = self.settings
        self.delivery = CountingDelivery(self.budget.outbox, _default_notifier(s),
                                         interval=s.alerts.delivery_interval_s).start()


def slices(events) -> list[Slice]:
    """A take of events -> one Slice per partition, offsets ascending (deterministic per range)."""
    by_tp: dict[tuple[str, int], list] = {}
    for e in events:
        m = e.message
        by_tp.setdefault((m.topic, m.partition), []).append(e)
    out = []
    for (topic, partition), evs in sorted(by_tp.items()):
        evs.sort(key=lambda e: e.message.offset)
        out.append(Slice(topic, partition, evs[0].message.offset, evs[-1].message.offset,
                         [e.value for e in evs]))
    return out


def create_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    k = settings.kafka
    hosts = [h.strip() for h in k.bootstrap_servers.split(",") if h.strip()]
    app = faust.App(
        k.app_id, broker=[f"kafka://{h}" for h in hosts], processing_guarantee=k.processing_guarantee,
        store="memory://", web_enabled=False, autodiscover=False,
        datadir=str(Path(settings.data_dir) / "faust"), topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor, topic_allow_declare=False,
        consumer_auto_offset_reset="earliest", broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=max(1.0, k.session_timeout_s / 4), broker_commit_every=k.batch_max,
        broker_commit_interval=k.batch_within_s, producer_acks=-1, stream_buffer_maxsize=4 * k.batch_max,
        timezone=timezone.utc)
    if runtime is not None:
        from costwarden.distributed.agents import register

        register(app, runtime)
    return app


def run_worker(settings: Settings, metrics_port: int | None = None, loglevel: str = "info") -> None:
    from costwarden.distributed.topics import create_topics, topic_specs

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    create_topics(settings.kafka.bootstrap_servers, topic_specs(settings.kafka))
    runtime = Runtime(settings)
    port = runtime.metrics.serve(settings.kafka.metrics_port if metrics_port is None else metrics_port)
    print(f"costwarden worker: metrics on port {port}", flush=True)
    runtime.start_delivery()
    app = create_app(settings, runtime)
    worker = faust.Worker(app, loglevel=loglevel, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        if runtime.delivery is not None:
            runtime.delivery.stop(flush=False)
