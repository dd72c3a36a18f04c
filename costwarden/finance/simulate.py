"""Budget simulation: replay stored usage against a proposed budgets file, in memory only.

A FRESH `BudgetLedger` (no seeder: the replay starts every period at the totals the replayed
events make) and an empty `ControlBook` see the stored events in event-time order. Nothing is
written, no alert is sent, live controls are never read or changed.

The gateway is modelled as the real one answers: before each event the simulated controls are
checked for its workflow. Under a block the call would have been refused: its spend is counted
as refused and it is NOT charged. Under a throttle of R requests/minute, requests beyond R in the
same event-time minute are refused the same way (a fixed one-minute window, like the SDK's
limiter); the rest pass and are charged. Each event's budgets are charged as in the live loop.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from costwarden.budgets.controls import ControlBook, State
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.budgets.model import BudgetFile
from costwarden.finance.queries import ReplayQuery
from costwarden.store import Store


@dataclass
class Fired:
    at: datetime
    period: str
    threshold: str  # "80%", "100%", "spike x5"
    kind: str  # actual | forecast | spike
    spend_nanos: int
    forecast_nanos: int


@dataclass
class Tripped:
    at: datetime
    workflow: str
    state: str  # throttle | block
    rate_per_min: Decimal | None
    reason: str
    expires_at: datetime | None


@dataclass
class BudgetOutcome:
    budget_id: str
    amount_nanos: int
    fired: list[Fired] = field(default_factory=list)
    tripped: list[Tripped] = field(default_factory=list)
    refused_block_nanos: int = 0
    refused_throttle_nanos: int = 0
    refused_events: int = 0
    refused_by_workflow: Counter = field(default_factory=Counter)
    charged_nanos: int = 0

    @property
    def refused_nanos(self) -> int:
        return self.refused_block_nanos + self.refused_throttle_nanos


@dataclass
class Simulation:
    start: datetime
    end: datetime
    events: int = 0
    spend_nanos: int = 0  # spend as it happened (all replayed events)
    refused_nanos: int = 0
    budgets: dict[str, BudgetOutcome] = field(default_factory=dict)


class _MinuteWindow:
    """Requests per workflow in the current event-time minute (events arrive in time order)."""

    def __init__(self) -> None:
        self.minute: datetime | None = None
        self.used: dict[str, int] = defaultdict(int)

    def take(self, workflow: str, at: datetime, n: int) -> int:
        m = at.replace(second=0, microsecond=0)
        if m != self.minute:
            self.minute, self.used = m, defaultdict(int)
        self.used[workflow] += n
        return self.used[workflow]


def _windows(start: datetime, end: datetime, step: timedelta = timedelta(days=1)):
    t = start
    while t < end:
        yield t, min(t + step, end)
        t += step


def simulate(store: Store, budgets: BudgetFile, start: datetime, end: datetime,
             progress: Callable[[int], None] | None = None) -> Simulation:
    ledger = BudgetLedger(budgets)  # no seeder, no fired marks: a fresh, in-memory ledger
    controls = ControlBook()
    sim = Simulation(start, end, budgets={b.id: BudgetOutcome(b.id, ledger.amounts[b.id])
                                          for b in budgets.budgets})
    minute_count = _MinuteWindow()
    for a, b in _windows(start, end):
        rows = store.query(ReplayQuery(a, b).to_sql())
        for r in rows:
            _replay(r, ledger, controls, sim, minute_count)
        if progress:
            progress(len(rows))
    return sim


def _replay(r: dict, ledger: BudgetLedger, controls: ControlBook, sim: Simulation,
            minute_count: "_MinuteWindow") -> None:
    at, wf, cost = r["occurred_at"], r["workflow"], r["cost_nanos"]
    sim.events += 1
    sim.spend_nanos += cost
    d = controls.check(wf, at)
    refused = None
    if d.action is State.block:
        refused = "block"
    elif d.action is State.throttle:
        if d.rate_per_min is not None and minute_count.take(wf, at, max(r["requests"], 1)) > d.rate_per_min:
            refused = "throttle"
    if refused:
        sim.refused_nanos += cost
        o = sim.budgets.get(d.budget_id)
        if o is not None:
            if refused == "block":
                o.refused_block_nanos += cost
            else:
                o.refused_throttle_nanos += cost
            o.refused_events += 1
            o.refused_by_workflow[wf] += cost
        return
    dims = {k: r[k] for k in ("team", "workflow", "cost_center", "env", "provider", "model")}
    dims["org"] = r["org"] or None  # as the live loop: an event without an org tag has no org
    for signal, pt, budget in ledger.charge(dims, cost, at, r["key"]):
        o = sim.budgets[budget.id]
        if signal is not None:
            o.fired.append(Fired(signal.at, signal.period_label, signal.threshold, signal.kind,
                                 signal.spend_nanos, signal.forecast_nanos))
        for th_id, action in pt.control_actions:
            _control(controls, o, wf, action, budget, pt, th_id, at)
    for b in ledger.matching(dims):
        sim.budgets[b.id].charged_nanos += cost


def _control(controls: ControlBook, o: BudgetOutcome, workflow: str, action, budget, pt, th_id: str,
             at: datetime) -> None:
    """As streams.process.Processor._control does in the live loop, on the simulated book."""
    if getattr(action, "block", None):
        state, rate = State.block, None
    else:
        state, rate = State.throttle, Decimal(action.throttle.rate_per_min)
    rolling = budget.period.rolling_seconds
    expires = at + timedelta(seconds=rolling) if rolling else pt.end
    change = controls.apply_rule(workflow, state, rate_per_min=rate, budget_id=budget.id, period_start=pt.start,
                                 expires_at=expires, reason=f"budget {budget.id} {pt.key} reached {th_id}", at=at)
    if change is not None:
        a = change.after
        o.tripped.append(Tripped(at, workflow, a.state.value, a.rate_per_min, a.reason, a.expires_at))
