"""Budget evaluation from running totals kept in memory (no I/O).

`BudgetLedger.charge()` is called for every priced, attributed event. It charges every budget
whose scope matches, and returns the signals that fire now: an actual or forecast threshold
crossed for the first time in the period (`>=`: spend >= amount * at / 100), or a spike. Each
signal key (budget:period:threshold) fires once; the runner persists fired keys.

A batch is staged: `begin()` starts an undo log of everything charging changes (totals touched,
thresholds fired, minute series, spike episodes), `commit()` keeps the changes once the batch is
stored, `rollback()` puts the ledger back exactly as it was before the batch (a failed store
write leaves no phantom spend and no used-up thresholds).

Running totals of a (budget, period) not yet in memory are seeded once through `seeder`
(the runner's store query), never per event. Event time decides the period; the forecast and
spike clocks are event time too (the newest event seen), so a replay gives the same answers.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from costwarden.budgets.forecast import MinuteSeries, forecast_period_end, is_spike
from costwarden.budgets.model import Budget, BudgetFile
from costwarden.budgets.periods import period_bounds, period_key
from costwarden.money import to_nanos

RECENT_WINDOW_S = 24 * 3600
_DIMS = ("org", "team", "workflow", "cost_center", "env", "provider", "model")


@dataclass
class Seed:
    spend_nanos: int = 0
    contributors: dict[str, Counter] = field(default_factory=dict)


def seed_from_rows(budget: Budget, rows: Iterable[Mapping]) -> Seed:
    """Running total and contributors of `budget` from stored spend rows (team, workflow, ..., key,
    cost_nanos), matched with the budget's own scope. Both runners seed through this."""
    seed = Seed(0, {"workflow": Counter(), "model": Counter(), "key": Counter()})
    for r in rows:
        if budget.scope.matches(r):
            c = r["cost_nanos"]
            seed.spend_nanos += c
            seed.contributors["workflow"][r["workflow"]] += c
            seed.contributors["model"][r["model"]] += c
            if r["key"]:
                seed.contributors["key"][r["key"]] += c
    return seed


@dataclass
class PeriodTotals:
    budget_id: str
    start: datetime
    end: datetime
    key: str
    spend: int = 0
    contributors: dict[str, Counter] = field(default_factory=lambda: {"workflow": Counter(), "model": Counter(),
                                                                       "key": Counter()})
    control_actions: list[tuple[str, object]] = field(default_factory=list)  # (threshold id, action) crossed

    def top(self, n: int = 3) -> list[tuple[str, str, int]]:
        out = []
        for dim in ("workflow", "model", "key"):
            for value, nanos in self.contributors[dim].most_common(n):
                out.append((dim, value, nanos))
        return sorted(out, key=lambda t: -t[2])[:n]


@dataclass(frozen=True)
class Signal:
    key: str
    budget: Budget
    period_start: datetime
    period_end: datetime
    period_label: str
    kind: str  # actual | forecast | spike
    threshold: str
    spend_nanos: int
    amount_nanos: int
    forecast_nanos: int
    at: datetime
    workflow: str
    actions: tuple
    top: tuple


Seeder = Callable[[Budget, datetime, datetime], Seed]
MinuteSeeder = Callable[[Budget, datetime, datetime], list[tuple[datetime, int]]]  # (minute, nanos) ascending


def _action_kind(a) -> str:
    if getattr(a, "block", None):
        return "block"
    if getattr(a, "throttle", None) is not None:
        return "throttle"
    return "notify"


class BudgetLedger:
    def __init__(self, budgets: BudgetFile, seeder: Seeder | None = None, fired: Iterable[str] = (),
                 minute_seeder: MinuteSeeder | None = None) -> None:
        self.file = budgets
        self.tz = ZoneInfo(budgets.timezone)
        self.budgets: list[Budget] = list(budgets.budgets)
        self.amounts = {b.id: to_nanos(b.amount) for b in self.budgets}
        self.seeder = seeder
        self.minute_seeder = minute_seeder
        self.fired: set[str] = set(fired)
        self.totals: dict[tuple[str, datetime], PeriodTotals] = {}
        self._current: dict[str, PeriodTotals] = {}
        self._series: dict[str, MinuteSeries] = {}
        self._last_spike: dict[str, datetime] = {}
        self._recent: dict[str, tuple[datetime, int]] = {}
        self._triggers: dict[tuple[str, str], list] = {}
        self._match_cache: dict[tuple, list[Budget]] = {}
        self.now: datetime | None = None
        self._undo: _Undo | None = None
        for k in self.fired:  # a spike episode that alerted before a restart stays one episode
            budget_id, sep, minute = k.rpartition(":spike:")
            if sep:
                at = datetime.strptime(minute, "%Y-%m-%dT%H:%M").replace(tzinfo=timezone.utc)
                bid = budget_id.split(":", 1)[0]
                if bid not in self._last_spike or at > self._last_spike[bid]:
                    self._last_spike[bid] = at

    # --- staging: one batch at a time -----------------------------------------------------------
    def begin(self) -> None:
        self._undo = _Undo(self.now, dict(self._current), dict(self._last_spike))

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        u, self._undo = self._undo, None
        if u is None:
            return
        self.now = u.now
        self._current = u.current
        self._last_spike = u.last_spike
        self.fired.difference_update(u.fired)
        for key in u.new_totals:
            self.totals.pop(key, None)
        for pt, spend, contributors, actions in u.pts.values():
            pt.spend, pt.contributors, pt.control_actions = spend, contributors, actions
        for budget_id in u.new_series:
            self._series.pop(budget_id, None)
        for budget_id, state in u.series.items():
            if budget_id in self._series:
                self._series[budget_id].restore(state)
        self._recent.clear()

    def reset(self) -> None:
        """Forget every running total and series: each is seeded again from the store when next
        touched (after the writer re-applied a journalled commit this process had rolled back)."""
        self.totals.clear()
        self._current.clear()
        self._series.clear()
        self._recent.clear()
        self._triggers.clear()

    def _touch(self, pt: "PeriodTotals", series: MinuteSeries | None, budget_id: str) -> None:
        u = self._undo
        if u is None:
            return
        if id(pt) not in u.pts:
            u.pts[id(pt)] = (pt, pt.spend, {d: Counter(c) for d, c in pt.contributors.items()},
                             list(pt.control_actions))
        if series is not None and budget_id not in u.series and budget_id not in u.new_series:
            u.series[budget_id] = series.snapshot()

    def matching(self, dims: Mapping[str, str | None]) -> list[Budget]:
        k = tuple([dims.get(d) for d in _DIMS])
        hit = self._match_cache.get(k)
        if hit is None:
            hit = [b for b in self.budgets if b.scope.matches(dims)]
            if len(self._match_cache) < 100_000:
                self._match_cache[k] = hit
        return hit

    def period(self, b: Budget, at: datetime) -> PeriodTotals:
        cur = self._current.get(b.id)
        if cur is not None and cur.start <= at < cur.end and b.period.rolling_seconds is None:
            return cur
        start, end = period_bounds(b.period, at, self.tz)
        if b.period.rolling_seconds is not None:  # one running window per budget
            start = datetime(1970, 1, 1, tzinfo=at.tzinfo)
        pt = self.totals.get((b.id, start))
        if pt is None:
            pt = PeriodTotals(b.id, start, end, period_key(b.period, start, self.tz))
            if self.seeder is not None and b.period.rolling_seconds is None:
                seed = self.seeder(b, start, end)
                pt.spend = seed.spend_nanos
                for dim, counter in seed.contributors.items():
                    pt.contributors.setdefault(dim, Counter()).update(counter)
            self.totals[(b.id, start)] = pt
            if self._undo is not None:
                self._undo.new_totals.append((b.id, start))
        if b.period.rolling_seconds is None and (cur is None or start >= cur.start):
            self._current[b.id] = pt
        pt.end = end
        return pt

    def forget(self, budget_id: str) -> list[PeriodTotals]:
        """Drop a budget's cached running totals, so its next charge seeds them again (the
        distributed budget stage re-reads totals from the store). Returns what was dropped."""
        self._current.pop(budget_id, None)
        keys = [k for k in self.totals if k[0] == budget_id]
        return [self.totals.pop(k) for k in keys]

    def series(self, b: Budget, at: datetime | None = None) -> MinuteSeries:
        """Per-minute spend of a budget by event time (spike baseline, recent rate, rolling windows).
        A new series is warmed from stored per-minute spend, so a restart keeps its baseline."""
        s = self._series.get(b.id)
        if s is None:
            minutes = RECENT_WINDOW_S // 60
            if b.spike is not None:
                minutes = max(minutes, b.spike.baseline_minutes + b.spike.window_minutes)
            if b.period.rolling_seconds is not None:
                minutes = max(minutes, b.period.rolling_seconds // 60 + 1)
            if self.minute_seeder is not None and at is not None:
                history = self.minute_seeder(b, at - timedelta(minutes=minutes), at)
                s = MinuteSeries(minutes, since=history[0][0] if history else None)
                for minute, nanos in history:
                    s.add(minute, nanos)
            else:
                s = MinuteSeries(minutes)
            self._series[b.id] = s
            if self._undo is not None:
                self._undo.new_series.append(b.id)
        return s

    def charge(self, dims: Mapping[str, str | None], cost_nanos: int, at: datetime,
               key: str = "") -> list[tuple[Signal | None, PeriodTotals, Budget]]:
        """Charge the event to every matching budget. Returns (signal or None, totals, budget) for
        each signal that fires now, and (None, totals, budget) for each budget past a control
        threshold (so the runner can hold this event's workflow to it)."""
        if self.now is None or at > self.now:
            self.now = at
        out: list[tuple[Signal | None, PeriodTotals, Budget]] = []
        workflow = dims.get("workflow") or ""
        for b in self.matching(dims):
            pt = self.period(b, at)
            series = self.series(b, at)
            self._touch(pt, series, b.id)
            series.add(at, cost_nanos)
            if b.period.rolling_seconds is not None:
                pt.spend = series.sum_last(b.period.rolling_seconds // 60, at)
            else:
                pt.spend += cost_nanos
            if cost_nanos:
                c = pt.contributors
                c["workflow"][workflow] += cost_nanos
                c["model"][dims.get("model") or ""] += cost_nanos
                if key:
                    c["key"][key] += cost_nanos
            out.extend((s, pt, b) for s in self._evaluate(b, pt, series, at, workflow))
            if pt.control_actions:
                out.append((None, pt, b))
        return out

    def _evaluate(self, b: Budget, pt: PeriodTotals, series: MinuteSeries, at: datetime,
                  workflow: str) -> list[Signal]:
        amount = self.amounts[b.id]
        fired: list[Signal] = []
        fc = None
        label = pt.key if b.period.rolling_seconds is None else f"rolling-{at.astimezone(self.tz):%Y-%m-%d}"
        triggers = self._triggers.get((b.id, label))
        if triggers is None:  # (threshold, its key, the smallest spend that fires it: spend >= amount*at/100)
            triggers = [(th, f"{b.id}:{label}:{th.id}", th.trigger_nanos(amount)) for th in b.thresholds]
            self._triggers[(b.id, label)] = triggers
        for th, key, trigger in triggers:
            if key in self.fired:
                continue
            if th.basis == "forecast":
                if not self._forecast_ready(pt, at):
                    continue
                if fc is None:
                    fc = self.forecast(b, pt, at)
                value = fc
            else:
                value = pt.spend
            if value < trigger:
                continue
            self._fire(key)
            for a in th.actions:
                if _action_kind(a) != "notify":
                    pt.control_actions.append((th.id, a))
            fired.append(self._signal(key, b, pt, label, th.basis, f"{th.at}%", at, workflow, th.actions, fc))
        if b.spike is not None:
            spiking, recent, expected = is_spike(b.spike, series, at)
            last = self._last_spike.get(b.id)
            if spiking:
                # One alert per spike episode: a spike that continues (or recurs within the
                # baseline window) belongs to the episode that already alerted.
                self._last_spike[b.id] = at
                if last is None or at - last > timedelta(minutes=b.spike.baseline_minutes):
                    key = f"{b.id}:{label}:spike:{at:%Y-%m-%dT%H:%M}"
                    if key not in self.fired:
                        self._fire(key)
                        for a in b.spike.actions:
                            if _action_kind(a) != "notify":
                                pt.control_actions.append(("spike", a))
                        fired.append(self._signal(key, b, pt, label, "spike", f"spike x{b.spike.factor}", at,
                                                  workflow, b.spike.actions, fc))
        return fired

    def mark(self, key: str) -> bool:
        """Fire `key` once (staged like a threshold): True the first time, False after."""
        if key in self.fired:
            return False
        self._fire(key)
        return True

    def _fire(self, key: str) -> None:
        self.fired.add(key)
        if self._undo is not None:
            self._undo.fired.append(key)

    @staticmethod
    def _forecast_ready(pt: PeriodTotals, at: datetime) -> bool:
        """A forecast is trusted once 10% of the period (and at least an hour) has passed."""
        elapsed = at - pt.start
        return elapsed >= timedelta(hours=1) and elapsed * 10 >= pt.end - pt.start

    def forecast(self, b: Budget, pt: PeriodTotals, at: datetime) -> int:
        """Projected spend at period end. The trailing rate is recomputed at most once per
        event-time minute per budget (it moves slowly); the spend part is always current."""
        if b.period.rolling_seconds is not None:
            return pt.spend
        minute = at.replace(second=0, microsecond=0)
        cached = self._recent.get(b.id)
        if cached is None or cached[0] != minute:
            cached = (minute, self.series(b).sum_last(RECENT_WINDOW_S // 60, at))
            self._recent[b.id] = cached
        return forecast_period_end(pt.spend, pt.start, pt.end, at, cached[1], RECENT_WINDOW_S)

    def _signal(self, key, b, pt, label, kind, threshold, at, workflow, actions, fc) -> Signal:
        if fc is None:
            fc = self.forecast(b, pt, at)
        return Signal(key, b, pt.start, pt.end, label, kind, threshold, pt.spend, self.amounts[b.id], fc, at,
                      workflow, tuple(actions), tuple(pt.top()))

    def status(self, at: datetime) -> list[dict]:
        """Spend, % used, forecast and state of every budget's period containing `at`."""
        rows = []
        for b in self.budgets:
            pt = self.period(b, at)
            amount = self.amounts[b.id]
            fc = self.forecast(b, pt, at)
            pct = (Decimal(pt.spend) * 100 / Decimal(amount)).quantize(Decimal("0.1"))
            state = "over" if pt.spend >= amount else ("at-risk" if fc >= amount else "ok")
            rows.append({"budget": b.id, "name": b.name, "period": pt.key, "spend_nanos": pt.spend,
                         "amount_nanos": amount, "pct_used": pct, "forecast_nanos": fc, "state": state,
                         "period_end": pt.end})
        return rows


@dataclass
class _Undo:
    now: datetime | None
    current: dict
    last_spike: dict
    fired: list = field(default_factory=list)
    new_totals: list = field(default_factory=list)
    new_series: list = field(default_factory=list)
    pts: dict = field(default_factory=dict)     # id(pt) -> (pt, spend, contributors, control_actions)
    series: dict = field(default_factory=dict)  # budget id -> MinuteSeries.snapshot()


def window_since(at: datetime, seconds: int) -> datetime:
    return at - timedelta(seconds=seconds)
