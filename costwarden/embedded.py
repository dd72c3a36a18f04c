"""The embedded runner: the whole loop in one process, chDB on local disk, no servers.

Payloads are processed in batches. Per batch: parse, ask the store once about late ids, run the
processing core per event (budget signals and controls take effect at once, in memory), then
flush at the commit point: raw events (rollups follow through the materialized views in the same
INSERT, with a deterministic dedup token), dead letters, budget events (the fired marks), the
alert outbox and control changes. Alert delivery runs in a background thread from the outbox.
State is rebuilt from the store at start, so a crash loses nothing not yet acknowledged and a
replay counts nothing twice.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from costwarden.alerts.outbox import DeliveryWorker, Outbox
from costwarden.budgets.controls import ControlBook, Decision
from costwarden.budgets.evaluate import BudgetLedger, Seed, seed_from_rows
from costwarden.budgets.model import BudgetFile
from costwarden.config import Settings
from costwarden.events import UsageEvent
from costwarden.persist import (alert_for, budget_event_row, change_rows, control_from_row, load_state_rows)
from costwarden.store import Store, migrate, open_store
from costwarden.store.queries import MinuteSpendQuery, SpendSeedQuery, known_ids_queries
from costwarden.streams.attribution import Attributor, default_rules, load_rules
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.process import DeadLetter, Outcome, Processor


@dataclass
class BatchReport:
    accepted: int = 0
    duplicates: int = 0
    dead: Counter = field(default_factory=Counter)
    signals: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    cost_micros: int = 0

    def add(self, other: "BatchReport") -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.dead.update(other.dead)
        self.signals.extend(other.signals)
        self.changes.extend(other.changes)
        self.cost_micros += other.cost_micros


def load_budget_file(settings: Settings) -> BudgetFile:
    from costwarden.budgets.loader import load_budgets

    if settings.budgets.budgets_file:
        return load_budgets(settings.budgets.budgets_file, known_channels=set(settings.alerts.channels) or None)
    return BudgetFile(version=1, timezone=settings.budgets.timezone, budgets=[])


class EmbeddedPipeline:
    def __init__(self, settings: Settings, *, store: Store | None = None, notifier=None,
                 budgets: BudgetFile | None = None, deliver: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or open_store(settings.store.url.get_secret_value(), str(settings.data_dir),
                                         settings.store.database)
        migrate(self.store)
        b = settings.budgets
        catalogue = PriceCatalogue.from_yaml(b.catalogue_file) if b.catalogue_file else PriceCatalogue.default()
        rules = load_rules(b.rules_file) if b.rules_file else default_rules()
        self.budgets = budgets if budgets is not None else load_budget_file(settings)
        state = load_state_rows(self.store, settings.pipeline.dedupe_horizon_hours,
                                settings.pipeline.dedupe_max_entries)
        dedupe = DedupeWindow(timedelta(hours=settings.pipeline.dedupe_horizon_hours),
                              settings.pipeline.dedupe_max_entries)
        dedupe.mark_seen(state.recent_ids)
        self.controls = ControlBook(control_from_row(r) for r in state.controls)
        ledger = BudgetLedger(self.budgets, seeder=self._seed, fired=state.fired, minute_seeder=self._seed_minutes)
        self.processor = Processor(catalogue, Attributor(rules), ledger, self.controls, dedupe,
                                   settings.limits.limits(), self.clock)
        self.outbox = Outbox(self.store, max_attempts=settings.alerts.max_attempts)
        self.notifier = notifier or _default_notifier(settings)
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
            if budget.scope.matches(r):  # no org tag in the minute rollup: an org-scoped series starts empty
                per_minute[r["bucket"]] = per_minute.get(r["bucket"], 0) + r["cost_micros"]
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
        proc = self.processor
        parsed = [p if isinstance(p, UsageEvent) else proc.parse(p, source) for p in payloads]
        self._mark_late([e for e in parsed if isinstance(e, UsageEvent)])
        rows, dead, outcomes = [], [], []
        report = BatchReport()
        for item, raw in zip(parsed, payloads):
            proc.metrics.events_in += 1
            if isinstance(item, DeadLetter):
                dead.append(item.row())
                report.dead[item.reason] += 1
                continue
            out: Outcome = proc.process(item)
            if out.duplicate:
                report.duplicates += 1
                continue
            rows.append(out.row)
            report.cost_micros += out.row["cost_micros"]
            outcomes.append(out)
            report.signals.extend(out.signals)
            report.changes.extend(out.changes)
        report.accepted = len(rows)
        try:
            self._flush(rows, dead, report)
        except Exception:
            proc.dedupe.forget(r["event_id"] for r in rows)
            raise
        finally:
            proc.dedupe.end_batch()
        return report

    def _mark_late(self, events: list[UsageEvent]) -> None:
        dd = self.processor.dedupe
        late = {e.event_id: e.occurred_at for e in events if e.event_id not in dd and dd.is_late(e.occurred_at)}
        if not late:
            return
        for q in known_ids_queries(late):
            dd.mark_late_seen(r["event_id"] for r in self.store.query(q.to_sql()))

    def _flush(self, rows: list[dict], dead: list[dict], report: BatchReport) -> None:
        """The commit point: data first, then the marks that depend on it."""
        if rows:
            token = hashlib.sha256("\n".join(r["event_id"] for r in rows).encode()).hexdigest()
            self.store.insert("usage_events", rows, dedup_token=token)
        if dead:
            self.store.insert("dead_letters", dead)
        now = self.clock()
        if report.signals:
            self.store.insert("budget_events", [budget_event_row(s) for s in report.signals])
            alerts = [alert_for(s, report.changes) for s in report.signals]
            alerts = [a for a in alerts if a.channels]
            if alerts:
                self.outbox.enqueue(alerts, now)
        if report.changes:
            current, audit = change_rows(report.changes)
            self.store.insert("controls", current)
            self.store.insert("control_audit", audit)

    # --- gateway and people ----------------------------------------------------------------------
    def check(self, workflow: str, now: datetime | None = None) -> Decision:
        return self.controls.check(workflow, now)

    def apply_change(self, change) -> None:
        current, audit = change_rows([change])
        self.store.insert("controls", current)
        self.store.insert("control_audit", audit)

    def status(self, at: datetime | None = None) -> list[dict]:
        return self.processor.ledger.status(at or self.clock())

    def close(self, flush_alerts: bool = True) -> None:
        if self.worker is not None:
            self.worker.stop(flush=flush_alerts)
            self.worker = None


def _default_notifier(settings: Settings):
    from costwarden.alerts.notifier import AppriseNotifier, LogNotifier

    if settings.alerts.channels:
        return AppriseNotifier(settings.alerts.channels)
    return LogNotifier()
