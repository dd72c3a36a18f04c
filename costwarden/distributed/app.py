"""The Faust app of a distributed worker, and the runtime its agents call.

    app = create_app(settings)            # agents registered, nothing started
    run_worker(settings)                   # create topics, migrate, serve metrics, run until SIGTERM

The runtime owns the two stages and runs their commit points in a worker thread (ClickHouse
I/O never blocks the event loop, so heartbeats and the lag timer keep running while it is
down). A failed commit point is retried with backoff until it succeeds: its Kafka records stay
unacknowledged, so their offsets cannot commit, and consumer lag shows the wait.

Rebalances (hooked by agents.py on Faust's on_partitions_revoked / on_partitions_assigned): a
revoked partition is released by both stages and its alert deliveries stop; an assigned one is
taken over (its journal re-applied; for budgets, marks and controls reloaded from the store and
the current controls sent again) before any of its records is processed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import timezone
from functools import partial
from pathlib import Path

import faust

from costwarden.alerts.outbox import DeliveryWorker
from costwarden.components import Core, load_notifier
from costwarden.config import Settings
from costwarden.distributed.budget_stage import BudgetStage
from costwarden.distributed.metrics import WorkerMetrics
from costwarden.distributed.raw_stage import RawStage, Slice

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.core = Core.load(settings)
        self.raw_store = self.core.open_store(migrate_schema=True)
        self.budget_store = self.core.open_store()  # its own connection: the stages run concurrently
        self.raw = RawStage(self.core, self.raw_store, route_by_id=True)
        self.budget = BudgetStage(self.core, self.budget_store)
        self.next_offset: dict[tuple[str, int], int] = {}  # per partition: next offset to commit
        self.assigned: frozenset[tuple[str, int]] = frozenset()  # this worker's partitions now
        self.delivery: "OwnedDelivery | None" = None

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

    # --- partitions -----------------------------------------------------------------------------
    def owns_budget(self, budget_id: str) -> bool:
        """True while this worker holds the `usage.by-budget` partition the budget id is produced
        to (alert delivery: one process at a time per budget; see start_delivery)."""
        return (self.settings.kafka.topic_budget_usage, self.budget.partition_of(budget_id)) in self.assigned

    async def partitions_revoked(self, revoked: set[tuple[str, int]]) -> None:
        """Called by the agents' rebalance hook after Faust waited for the agents to go idle and
        before this member rejoins: after it returns, this worker delivers no alert and writes
        nothing more for these partitions, so their next owner starts from a quiet store."""
        k = self.settings.kafka
        self.assigned = frozenset(self.assigned - revoked)
        self.metrics.assignment((), revoked)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.raw.release, [tp for tp in revoked if tp[0] == k.topic_raw])
        await loop.run_in_executor(None, self.budget.release,
                                   [p for t, p in revoked if t == k.topic_budget_usage])
        if self.delivery is not None:  # a send in flight finishes (and its outcome is stored) first
            await loop.run_in_executor(None, self.delivery.quiesce, k.session_timeout_s / 2)

    def partitions_assigned(self, assigned: set[tuple[str, int]], budget_partitions: int | None = None) -> None:
        if budget_partitions:
            self.budget.partitions = budget_partitions  # the topic's own count, from the consumer
        self.metrics.assignment(assigned, self.assigned - assigned)
        self.assigned = frozenset(assigned)

    async def take_over(self, tp: tuple[str, int]):
        """Take an assigned partition over (replay its journal; budget: reload marks and controls),
        retried with backoff while it stays assigned. Returns the budget stage's sends, or None."""
        k = self.settings.kafka
        if tp[0] == k.topic_raw:
            fn = partial(self.raw.take_over, *tp)
        elif tp[0] == k.topic_budget_usage:
            fn = partial(self.budget.take_over, tp[1])
        else:
            return None
        delay = 0.5
        loop = asyncio.get_running_loop()
        while tp in self.assigned:
            try:
                return await loop.run_in_executor(None, fn)
            except Exception as e:
                log.warning("taking over %s:%d failed, retrying in %.1fs: %s", tp[0], tp[1], delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        return None

    # --- alerts ---------------------------------------------------------------------------------
    def start_delivery(self) -> None:
        """One delivery thread per worker over the shared outbox, sending only the rows of budgets
        whose by-budget partition this worker holds (reconciliation alerts, budget_id "reconcile",
        belong to the partition that id hashes to, like any other): each row has one deliverer
        at a time, and a revoked partition's deliveries stop before its next owner gets it."""
        from costwarden.alerts.outbox import Outbox

        s = self.settings
        store = self.core.open_store()  # its own connection: delivery runs beside the stages
        outbox = Outbox(store, max_attempts=s.alerts.max_attempts)
        self.delivery = OwnedDelivery(outbox, load_notifier(s), self.owns_budget, self.metrics,
                                      interval=s.alerts.delivery_interval_s).start()


class OwnedDelivery(DeliveryWorker):
    def __init__(self, outbox, notifier, owns, metrics: WorkerMetrics, interval: float) -> None:
        super().__init__(outbox, notifier, interval=interval)
        self.owns = owns
        self.metrics = metrics
        self.pass_lock = threading.Lock()

    def _pass(self) -> None:
        with self.pass_lock:
            try:
                self.metrics.delivered(self.outbox.deliver_due(self.notifier, self.clock(), owns=self.owns))
            except Exception:
                log.exception("alert delivery pass failed")
            self.passes += 1

    def quiesce(self, timeout: float) -> bool:
        """Wait for a pass in progress to end (a send in flight and the write of its outcome)."""
        if self.pass_lock.acquire(timeout=timeout):
            self.pass_lock.release()
            return True
        log.warning("an alert delivery pass did not end within %.0fs of a revocation", timeout)
        return False


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
    app = create_app(settings, runtime)  # imports Faust's Kafka driver before any thread of ours runs
    runtime.start_delivery()
    worker = faust.Worker(app, loglevel=loglevel, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        if runtime.delivery is not None:
            runtime.delivery.stop(flush=False)
