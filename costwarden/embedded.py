"""The embedded runner: the whole loop in one process, chDB on local disk, no servers.

Payloads are processed in batches through the one batch loop (costwarden/pipeline.py): the core
stages every effect, the commit writer journals the formed commit and writes every table, and only
then does the staged state take effect. Alert delivery runs in a background thread from the
outbox. At start the writer re-applies whatever the journal holds, then state (dedupe window,
controls, fired thresholds) is rebuilt from the store; running totals are seeded from the store
when first touched. So a crash at any instant loses nothing and a replay counts nothing twice.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from costwarden.alerts.outbox import DeliveryWorker, Outbox
from costwarden.budgets.controls import ControlBook, ControlChange, Decision
from costwarden.budgets.evaluate import BudgetLedger, Seed, seed_from_rows
from costwarden.budgets.model import BudgetFile
from costwarden.components import Core, load_budget_file, load_notifier
from costwarden.config import Settings
from costwarden.persist import control_from_row, load_state_rows, recent_ids
from costwarden.pipeline import BatchLoop, BatchReport
from costwarden.store import Store, tables as T
from costwarden.store.journal import FileJournal
from costwarden.store.queries import MinuteSpendQuery, SpendSeedQuery
from costwarden.store.writer import CommitWriter
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.process import Processor

__all__ = ["BatchReport", "EmbeddedPipeline", "load_budget_file"]


class EmbeddedPipeline:
    def __init__(self, settings: Settings, *, store: Store | None = None, notifier=None,
                 budgets: BudgetFile | None = None, deliver: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.core = Core.load(settings, budgets)
        self.store = store or self.core.open_store()
        from costwarden.store import migrate

        migrate(self.store)
        self.budgets = self.core.budgets
        self.writer = CommitWriter(self.store, FileJournal(settings.data_dir / "journal" / settings.store.database))
        self.writer.recover()  # a crashed commit first: the state below is read from the store
        p = settings.pipeline
        state = load_state_rows(self.store)
        # the window's ids are read at the first batch (up to dedupe_max_entries rows: seconds on a big
        # store, which a command that only reads should not wait for); until then every id is asked
        dedupe = DedupeWindow(timedelta(hours=p.dedupe_horizon_hours), p.dedupe_max_entries, lookup_all=True)
        self._window_loaded = False
        self.controls = ControlBook(control_from_row(r) for r in state.controls)
        self.processor = Processor(self.core.catalogue, self.core.attributor, self._ledger(self.budgets, state.fired), self.controls, dedupe,
                                   settings.limits.limits(), self.clock, settings.pricing.unpriced.notify)
        self.outbox = Outbox(self.store, max_attempts=settings.alerts.max_attempts)
        self.loop = BatchLoop(self.processor, self.store, self.writer, self.outbox, self.clock)
        self.notifier = notifier or load_notifier(settings)
        self.worker = None
        if deliver:
            self.worker = DeliveryWorker(self.outbox, self.notifier, interval=settings.alerts.delivery_interval_s)
            self.worker.start()

    # --- state seeding (one store query per (budget, period) first touched) -------------------
    def _seed(self, budget, start: datetime, end: datetime) -> Seed:
        return seed_from_rows(budget, self.store.query(SpendSeedQuery(start, end).to_sql()))

    def _seed_minutes(self, budget, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
        per_minute: dict[datetime, int] = {}
        for r in self.store.query(MinuteSpendQuery(start, end).to_sql()):
            if budget.scope.matches(r):
                per_minute[r["bucket"]] = per_minute.get(r["bucket"], 0) + r["cost_nanos"]
        return sorted(per_minute.items())

    # --- the loop -------------------------------------------------------------------------------
    def ingest(self, payloads: Iterable[Any], source: str = "ingest",
               progress: Callable[[int], None] | None = None) -> BatchReport:
        total = BatchReport()
        batch: list[Any] = []
        size = self.settings.pipeline.batch_size
        for p in payloads:
            batch.append(p)
            if len(batch) >= size:
                total.add(self.process_batch(batch, source))
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            total.add(self.process_batch(batch, source))
            if progress:
                progress(len(batch))
        return total

    def process_batch(self, payloads: list[Any], source: str = "ingest") -> BatchReport:
        """One batch, one commit. Raises StoreError (retryable) with memory as before the batch."""
        if not self._window_loaded:
            self.load_window()
        report = self.loop.run(payloads, source)
        if report.alerts and self.worker is not None:
            self.worker.wake()
        return report

    def load_window(self) -> None:
        """Read the dedupe window from the store (done by the first batch; a runner may do it ahead)."""
        p = self.settings.pipeline
        ids, floor = recent_ids(self.store, p.dedupe_horizon_hours, p.dedupe_max_entries)
        d = self.processor.dedupe
        d.mark_seen(ids, floor=floor)
        d.lookup_all = False
        self._window_loaded = True

    # --- gateway and people ----------------------------------------------------------------------
    def check(self, workflow: str, now: datetime | None = None) -> Decision:
        return self.controls.check(workflow, now)

    def change_control(self, make: Callable[[ControlBook], ControlChange]) -> ControlChange:
        """A person's release / extend / manual control: staged, committed, then applied."""
        if self.writer.pending:
            self.loop.recover()
        self.controls.begin()
        try:
            change = make(self.controls)
            self.loop.apply_change(change)
        except BaseException:
            self.controls.rollback()
            raise
        self.controls.commit()
        return change

    def reload_budgets(self, reason: str, actor: str) -> dict:
        """Re-read the budgets file: a bad file raises FileError and the running budgets stay; a
        good one is audited (who, why, what changed), then takes effect with a fresh ledger
        seeded from the store (fired marks kept)."""
        if self.writer.pending:
            self.loop.recover()
        new_file = load_budget_file(self.settings)
        old = {b.id: b for b in self.budgets.budgets}
        new = {b.id: b for b in new_file.budgets}
        added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
        changed = sorted(k for k in new.keys() & old.keys() if new[k] != old[k])
        at = self.clock()
        self.writer.write(T.BUDGET_AUDIT, [{
            "at": at, "seq": time.time_ns(), "action": "reload", "budget_ids": ",".join(added + removed + changed),
            "detail": f"added={','.join(added)}; removed={','.join(removed)}; changed={','.join(changed)}",
            "reason": reason, "actor": actor}])
        self.budgets = self.core.budgets = new_file
        self.processor.ledger = self._ledger(new_file, self.processor.ledger.fired)
        return {"added": added, "removed": removed, "changed": changed, "by": actor, "at": at.isoformat()}

    def _ledger(self, budgets: BudgetFile, fired) -> BudgetLedger:
        return BudgetLedger(budgets, seeder=self._seed, fired=fired, minute_seeder=self._seed_minutes)

    def status(self, at: datetime | None = None) -> list[dict]:
        return self.processor.ledger.status(at or self.clock())

    def close(self, flush_alerts: bool = True) -> None:
        if self.worker is not None:
            self.worker.stop(flush=flush_alerts)
            self.worker = None

