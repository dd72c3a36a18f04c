"""Per budget: spend to date, daily burn (for the burn-down chart) and the forecast with its method."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from costwarden.budgets.model import BudgetFile
from costwarden.budgets.periods import period_bounds, period_key
from costwarden.finance.forecast import linear, project
from costwarden.finance.queries import BudgetDailyQuery
from costwarden.money import to_nanos
from costwarden.store import Store
from costwarden.store.queries import SpendSeedQuery

HISTORY_DAYS = 28


def _dims(r: dict) -> dict:
    d = {k: r[k] for k in ("team", "workflow", "cost_center", "env", "provider", "model")}
    d["org"] = r.get("org") or None
    return d


def budget_forecasts(store: Store, budgets: BudgetFile, now: datetime) -> list[dict]:
    """One row per calendar budget for the period containing `now` (rolling windows have no end
    to forecast): spend, amount, forecast, linear forecast, method, exhaustion, daily spend."""
    tz = ZoneInfo(budgets.timezone)
    cal = [b for b in budgets.budgets if b.period.rolling_seconds is None]
    if not cal:
        return []
    bounds = {b.id: period_bounds(b.period, now, tz) for b in cal}
    lo = min(min(s for s, _ in bounds.values()), now - timedelta(days=HISTORY_DAYS + 1))
    lo = lo.replace(hour=0, minute=0, second=0, microsecond=0)
    daily: dict[str, dict[date, int]] = {b.id: defaultdict(int) for b in cal}
    rows = store.query(BudgetDailyQuery(lo, now).to_sql())
    for r in rows:
        dims = _dims(r)
        for b in cal:
            if b.scope.matches(dims):
                daily[b.id][r["day"].date()] += r["cost_nanos"]
    seeds = {s: store.query(SpendSeedQuery(s, now).to_sql()) for s in {s for s, _ in bounds.values()}}
    out = []
    for b in cal:
        start, end = bounds[b.id]
        spend = sum(r["cost_nanos"] for r in seeds[start] if b.scope.matches(_dims(r)))  # exact, [start, now)
        amount = to_nanos(b.amount)
        complete = {d: v for d, v in daily[b.id].items() if d < now.date()}
        if rows:  # the store's history starts at its first day with any spend
            complete.setdefault(min(r["day"].date() for r in rows), 0)
        p = project(complete, spend, amount, start, end, now)
        exhausted = p.exhausted_at
        if spend >= amount:  # already over: the day the running total crossed the amount
            exhausted = crossed_at(daily[b.id], amount, start, now)
        out.append({"budget": b.id, "name": b.name, "period": period_key(b.period, start, tz),
                    "period_start": start, "period_end": end, "spend_nanos": spend, "amount_nanos": amount,
                    "forecast_nanos": p.forecast_nanos,
                    "linear_forecast_nanos": linear(complete, spend, start, end, now),
                    "method": p.method, "exhausted_at": exhausted,
                    "daily": sorted((d, v) for d, v in daily[b.id].items() if d >= start.date())})
    return out



def crossed_at(daily: dict[date, int], amount: int, start: datetime, now: datetime) -> datetime:
    """When the daily running total since `start` reached `amount`, interpolated within that day
    (to the second); `now` if the days alone never reach it (e.g. a period starting mid-day)."""
    total = 0
    for d, v in sorted((d, v) for d, v in daily.items() if d >= start.date()):
        if v > 0 and total + v >= amount:
            day0 = max(datetime(d.year, d.month, d.day, tzinfo=start.tzinfo), start)
            return day0 + timedelta(seconds=(amount - total) * 86_400 // v)
        total += v
    return now
