"""The batch loop with the one commit, shared by the embedded runner and the API.

Per batch:
    1. re-apply a journalled commit the writer still holds (a failed write, or a crash)
    2. parse; ask the store once which ids the dedupe window cannot vouch for
    3. stage: enrich + budget step (streams/process.py) -> rows, signals, control changes
    4. form the Commit (every table's rows) and hand it to the writer (store/writer.py)
    5. only then apply the staged state (dedupe, ledger, controls); on any failure roll it back
The result names each input item accepted / duplicate / rejected. docs/commit.md has the whole
story of a crash at each step.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from costwarden.alerts.outbox import Outbox
from costwarden.budgets.controls import ControlChange
from costwarden.persist import absorb, alert_for, budget_event_row, change_rows, stored_ids, unpriced_alert
from costwarden.store import Store, tables as T
from costwarden.store.writer import Commit, CommitWriter
from costwarden.streams.process import Enriched, Processor


@dataclass
class BatchReport:
    accepted: int = 0
    duplicates: int = 0
    dead: Counter = field(default_factory=Counter)
    signals: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    cost_nanos: int = 0
    statuses: list = field(default_factory=list)  # per input item: accepted | duplicate | rejected
    alerts: int = 0

    def add(self, other: "BatchReport") -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.dead.update(other.dead)
        self.signals.extend(other.signals)
        self.changes.extend(other.changes)
        self.cost_nanos += other.cost_nanos
        self.alerts += other.alerts


def form_commit(enriched: Enriched | None, signals: list, changes: list[ControlChange],
                outbox: Outbox | None, now: datetime) -> Commit:
    """Every row one batch writes, for every table (no writes here)."""
    tables: dict[str, list] = {}
    notices = enriched.notices if enriched is not None else []
    if enriched is not None:
        tables[T.USAGE] = enriched.rows
        tables[T.DEAD_LETTERS] = [d.row() for d in enriched.dead]
    if signals or notices:
        tables[T.BUDGET_EVENTS] = [budget_event_row(s) for s in signals] + [n.row() for n in notices]
        alerts = [*(alert_for(s, changes) for s in signals), *(unpriced_alert(n, changes) for n in notices)]
        alerts = [a for a in alerts if a.channels]
        if alerts and outbox is not None:
            tables[T.ALERT_OUTBOX] = outbox.enqueue(alerts, now, write=False)
    if changes:
        tables[T.CONTROLS], tables[T.CONTROL_AUDIT] = change_rows(changes)
    return Commit.form(tables)


class BatchLoop:
    def __init__(self, processor: Processor, store: Store, writer: CommitWriter, outbox: Outbox | None,
                 clock: Callable[[], datetime], on_recovered: Callable[[list[Commit]], None] | None = None) -> None:
        self.processor = processor
        self.store = store
        self.writer = writer
        self.outbox = outbox
        self.clock = clock
        self.on_recovered = on_recovered

    def recover(self) -> list[Commit]:
        """Re-apply what the journal holds, then take it into memory (it was rolled back)."""
        done = self.writer.recover()
        if done:
            absorb(self.processor, done)
            if self.on_recovered is not None:
                self.on_recovered(done)
        return done

    def run(self, payloads: list[Any], source: str) -> BatchReport:
        proc = self.processor
        if self.writer.pending:
            self.recover()
        items = [proc.parse(p, source) for p in payloads]
        known = stored_ids(self.store, proc.lookups(items))
        proc.begin()
        try:
            enriched = proc.enrich(items, known)
            signals, changes = proc.charge(enriched.charges)
            changes = enriched.changes + changes
            commit = form_commit(enriched, signals, changes, self.outbox, self.clock())
            self.writer.commit(commit)
        except BaseException:
            proc.rollback()
            raise
        proc.commit()
        report = BatchReport(accepted=len(enriched.rows), duplicates=len(enriched.duplicates),
                             dead=Counter(d.reason for d in enriched.dead), signals=signals, changes=changes,
                             cost_nanos=sum(r["cost_nanos"] for r in enriched.rows),
                             statuses=enriched.statuses, alerts=len(commit.rows(T.ALERT_OUTBOX)))
        return report

    def apply_change(self, change: ControlChange) -> None:
        """A person's control change (already made in the ControlBook): its own commit."""
        if self.writer.pending:
            self.recover()
        current, audit = change_rows([change])
        self.writer.commit(Commit.form({T.CONTROLS: current, T.CONTROL_AUDIT: audit}))
