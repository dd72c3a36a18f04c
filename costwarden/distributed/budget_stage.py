"""Stage 2: budget evaluation, one owner per budget, totals read from the store.

Usage for budgets arrives on `usage.by-budget`, keyed by budget id, so each budget is evaluated
by exactly one worker (the owner of its partition) even when its scope spans workflows whose raw
usage was processed by other workers. Stage 1 writes an event to ClickHouse BEFORE it sends the
event's budget record, so when a record arrives its cost is already in the store. The running
total of each (budget, period) touched by a batch is therefore re-read from the store (one query
per distinct period per batch, cached across budgets): it is exact however the records were
batched, replayed, duplicated or lost in a crash, and whichever worker stored the events.

Per batch: feed the minute series (forecast and spike baselines) with the records' costs, drop
the touched budgets' cached totals (`BudgetLedger.forget`), then charge zero at the newest event
of each (budget, period, workflow) through part 1's `Processor.evaluate`: the ledger seeds the
total from the store and fires thresholds not yet fired, and controls follow exactly as in the
embedded loop. The commit point writes budget events (the fired marks), the alert outbox and
control changes to the store; the agent then sends them to `budget.events` and `controls`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from costwarden.alerts.outbox import Outbox
from costwarden.budgets.controls import ControlBook
from costwarden.budgets.evaluate import BudgetLedger, Seed, seed_from_rows
from costwarden.distributed.state import Core, controls_and_fired, to_json
from costwarden.persist import alert_for, budget_event_row, change_rows, control_from_row
from costwarden.store import Store
from costwarden.store.queries import SpendSeedQuery
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.process import Processor


@dataclass
class BudgetResult:
    budget_events: list[tuple[bytes, bytes]] = field(default_factory=list)  # (budget id, row JSON)
    controls: list[tuple[bytes, bytes]] = field(default_factory=list)       # (workflow, control JSON)
    signals: list = field(default_factory=list)
    alerts_enqueued: int = 0

# people's control changes newer than the last one taken (`{v}`: a version, time_ns)
PERSON_CONTROLS_SQL = ("SELECT * FROM {{db}}.controls FINAL WHERE set_by != 'rule' AND version > {v} "
                       "ORDER BY version")


class BudgetStage:
    def __init__(self, core: Core, store: Store, outbox: Outbox | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.core = core
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.outbox = outbox or Outbox(store, max_attempts=core.settings.alerts.max_attempts)
        controls, self.fired = controls_and_fired(store)
        self.controls = ControlBook(controls)
        self._person_version = max((r["version"] for r in store.query(PERSON_CONTROLS_SQL.format(v=0))),
                                   default=0)
        self.by_id = {b.id: b for b in core.budgets.budgets}
        self._own: dict[str, Processor] = {}
        self._spend: dict[tuple[datetime, datetime], list[dict]] = {}

    def owner(self, budget_id: str) -> Processor:
        """Part 1's Processor over a ledger of this one budget: charging it can never touch a
        budget another worker owns, even when the same dimensions match both."""
        proc = self._own.get(budget_id)
        if proc is None:
            one = self.core.budgets.model_copy(update={"budgets": [self.by_id[budget_id]]})
            ledger = BudgetLedger(one, seeder=self._seed,
                                  fired=(k for k in self.fired if k.startswith(budget_id + ":")))
            proc = self._own[budget_id] = Processor(self.core.catalogue, self.core.attributor, ledger,
                                                    self.controls, DedupeWindow(),
                                                    self.core.settings.limits.limits(), self.clock)
        return proc

    def _seed(self, budget, start: datetime, end: datetime) -> Seed:
        rows = self._spend.get((start, end))
        if rows is None:
            rows = self._spend[(start, end)] = self.store.query(SpendSeedQuery(start, end).to_sql())
        return seed_from_rows(budget, rows)

    def adopt_person_controls(self) -> int:
        """A person's release or extend made through the API (any replica) is written to the
        store's `controls` table before it goes on the controls topic: take the ones not seen yet,
        so a release holds here for the rest of the budget period (ControlBook.apply_rule)."""
        rows = self.store.query(PERSON_CONTROLS_SQL.format(v=self._person_version))
        for r in rows:
            self.controls.adopt(control_from_row(r))
            self._person_version = max(self._person_version, r["version"])
        return len(rows)

    def handle(self, records: list[dict]) -> BudgetResult:
        """Evaluate the budgets the records touch and store the outcome (the commit point)."""
        self._spend = {}
        self.adopt_person_controls()
        touched: dict[tuple, dict] = {}
        for r in records:
            b = self.by_id.get(r["budget_id"])
            if b is None:  # a budget removed from the file since the record was written
                continue
            series = self.owner(b.id).ledger.series(b)
            for at, cost in r.get("points", ()):
                series.add(_dt(at), int(cost))
            k = (r["budget_id"], r["period"], r["dims"].get("workflow"))
            if k not in touched or _dt(r["at"]) >= _dt(touched[k]["at"]):
                touched[k] = r
        kept_actions: dict[tuple, list] = {}
        for budget_id in {k[0] for k in touched}:
            for pt in self.owner(budget_id).ledger.forget(budget_id):
                kept_actions[(budget_id, pt.start)] = pt.control_actions
        signals, changes = [], []
        for r in sorted(touched.values(), key=lambda r: _dt(r["at"])):
            b = self.by_id[r["budget_id"]]
            proc, at = self.owner(b.id), _dt(r["at"])
            pt = proc.ledger.period(b, at)  # seeded from the store now
            if not pt.control_actions and (b.id, pt.start) in kept_actions:
                pt.control_actions = kept_actions.pop((b.id, pt.start))
            s, c = proc.evaluate(r["dims"], 0, at, r.get("key") or "")
            signals += s
            changes += c
        return self._flush(signals, changes)

    def _flush(self, signals: list, changes: list) -> BudgetResult:
        res = BudgetResult(signals=signals)
        if signals:
            rows = [budget_event_row(s) for s in signals]
            alerts = [a for a in (alert_for(s, changes) for s in signals) if a.channels]
            if alerts:
                res.alerts_enqueued = len(self.outbox.enqueue(alerts, self.clock()))
            self.store.insert("budget_events", rows)
            res.budget_events = [(r["budget_id"].encode(), to_json(r)) for r in rows]
        if changes:
            current, audit = change_rows(changes)
            self.store.insert("controls", current)
            self.store.insert("control_audit", audit)
            res.controls = [(r["workflow"].encode(), to_json(r)) for r in current]
        return res


def _dt(v) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)
