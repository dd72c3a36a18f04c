"""The embedded runtime behind the API: one pipeline thread owns the EmbeddedPipeline.

chDB and the processing state are not made for concurrent use, so every call that touches the
pipeline or the store (ingest, budget status, reservations, control changes, audit reads) is a job
on one queue, run in order by one thread. HTTP handlers await the job's future; decisions are
answered from the DecisionCache without touching the queue.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from costwarden.api.decisions import DecisionCache, EmbeddedControlFeed
from costwarden.api.reservations import ReservationBook
from costwarden.budgets.controls import ControlChange
from costwarden.embedded import BatchReport, EmbeddedPipeline
from costwarden.money import from_nanos

log = logging.getLogger("costwarden.api")
T = TypeVar("T")
_STOP = object()


class PipelineThread:
    def __init__(self, name: str = "costwarden-pipeline") -> None:
        self._q: queue.Queue = queue.Queue()
        self._t = threading.Thread(target=self._run, name=name, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)

    def submit(self, fn: Callable[[], T]) -> "Future[T]":
        fut: Future = Future()
        self._q.put((fn, fut))
        return fut

    def call(self, fn: Callable[[], T], timeout: float | None = 60) -> T:
        return self.submit(fn).result(timeout)

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    @property
    def backlog(self) -> int:
        return self._q.qsize()

    def stop(self) -> None:
        self._q.put(_STOP)
        self._t.join(timeout=30)


class EmbeddedRuntime:
    """Pipeline + decision cache + reservations, for `costwarden serve` and the tests."""

    mode = "embedded"
    router = None  # one process: no owner routing (api/owner.py is for distributed mode)

    def __init__(self, pipeline: EmbeddedPipeline, reservation_ttl_s: float | None = None) -> None:
        self.pipeline = pipeline
        self.thread = PipelineThread()
        self.cache = DecisionCache()
        self.feed = EmbeddedControlFeed(pipeline.controls)
        self.feed.start(self.cache.apply)
        # a commit re-applied from the journal after a failed write: its controls go out too
        pipeline.loop.on_recovered = lambda commits: self.feed.push(pipeline.controls.all())
        ttl = reservation_ttl_s or pipeline.settings.api.reservation_ttl_s
        self.reservations = ReservationBook(pipeline, ttl)
        self.started_at = datetime.now(timezone.utc)
        self.ready = True

    @classmethod
    def open(cls, settings, **kw) -> "EmbeddedRuntime":
        return cls(EmbeddedPipeline(settings, **kw))

    @property
    def store(self):
        return self.pipeline.store

    @property
    def settings(self):
        return self.pipeline.settings

    # --- the runtime interface the routes call (DistributedRuntime has the same) --------------
    async def ingest(self, parsed, source: str) -> dict:
        return await self.thread.run(lambda: self.ingest_items(parsed, source))

    async def budget_status(self) -> list[dict]:
        return await self.thread.run(self.pipeline.status)

    async def release(self, workflow: str, reason: str, by: str) -> ControlChange:
        return await self.thread.run(lambda: self.change_now(
            lambda book: book.release(workflow, reason=reason, by=by)))

    async def extend(self, workflow: str, until, reason: str, by: str) -> ControlChange:
        return await self.thread.run(lambda: self.change_now(
            lambda book: book.extend(workflow, until=until, reason=reason, by=by)))

    async def reload_budgets(self, reason: str, actor: str) -> dict:
        return await self.thread.run(lambda: self.pipeline.reload_budgets(reason, actor))

    async def settle(self, hold_id: str, event, raw, source: str) -> dict:
        def now():
            hold = self.reservations.holds.get(hold_id)
            report = self.ingest_now([event], source)  # record the spend first ...
            self.reservations.release(hold_id)         # ... then drop the hold: no instant undercounts
            return {"id": hold_id, "hold": "released" if hold else "expired_or_unknown",
                    "accepted": report.accepted, "duplicates": report.duplicates,
                    "cost_usd": str(from_nanos(report.cost_nanos)),
                    "estimate_usd": str(from_nanos(hold.nanos)) if hold else None}
        return await self.thread.run(now)

    # --- jobs on the pipeline thread ---------------------------------------------------------
    def ingest_now(self, items: list[Any], source: str) -> BatchReport:
        """Runs ON the pipeline thread: process and flush one batch, then publish its controls."""
        report = self.pipeline.process_batch(items, source)
        self._publish(report.changes)
        return report

    def ingest_items(self, parsed, source: str) -> dict:
        """Runs ON the pipeline thread: the per-event answer to POST /v1/events, after the commit.
        Rejected items are dead letters of the same commit as their good neighbours."""
        proc = self.pipeline.processor
        items = [i.event if i.event is not None else proc.dead_letter(i.raw, source, i.reason, i.detail)
                 for i in parsed.items]
        report = self.ingest_now(items, source) if items else BatchReport()
        results = []
        for i, status in zip(parsed.items, report.statuses):
            if i.event is None:
                results.append({"index": i.index, "status": "rejected", "reason": i.reason, "detail": i.detail})
            else:
                results.append({"index": i.index, "event_id": i.event.event_id, "status": status})
        return {"accepted": report.accepted, "duplicates": report.duplicates, "rejected": sum(report.dead.values()),
                "cost_nanos": report.cost_nanos,
                "control_changes": [{"workflow": c.after.workflow, "state": c.after.state.value}
                                    for c in report.changes], "results": results}

    def change_now(self, make) -> ControlChange:
        """Runs ON the pipeline thread: a person's change, committed, then published."""
        change = self.pipeline.change_control(make)
        self._publish([change])
        return change

    def _publish(self, changes: list[ControlChange]) -> None:
        if changes:
            self.feed.push(c.after for c in changes)

    def close(self) -> None:
        self.ready = False
        self.thread.stop()
        self.feed.stop()
        self.pipeline.close()
