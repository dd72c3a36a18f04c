"""Budgets: every budget's current period (the runtime's `budget_status()`, the figures of
GET /v1/budgets), nested org > team > workflow by `parent`, each with a burn-down chart drawn from
the budget hour rollup (one query for all budgets; at most two, when day-long and longer periods
are both present)."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from costwarden.api.ui.auth import CONSOLE_PERMISSION, principal
from costwarden.api.ui.chart import burn_down
from costwarden.api.ui.data import BUDGET_DIMS, BurnQuery, matching_budgets
from costwarden.api.ui.views import ConsoleRoute, render
from costwarden.budgets.periods import period_bounds
from costwarden.money import from_nanos
from costwarden.persist import scope_text

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
HOURLY_UP_TO = timedelta(days=2)  # periods up to this long are charted by hour, longer ones by day
GRAIN = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def running_budgets(rt):
    """The BudgetFile the runtime evaluates: the embedded pipeline's (reloads included) or, in
    distributed mode, the one this replica loaded (the workers' file); else read from settings."""
    core = getattr(rt, "core", None) or getattr(getattr(rt, "pipeline", None), "core", None)
    if core is not None:
        return core.budgets
    from costwarden.components import load_budget_file

    return load_budget_file(rt.settings)


def tree_order(budgets) -> list[tuple[object, int]]:
    """(budget, depth) parents first, children after their parent in file order; a budget whose
    parent is unknown is a root."""
    ids = {b.id for b in budgets}
    kids: dict[str | None, list] = defaultdict(list)
    for b in budgets:
        kids[b.parent if b.parent in ids else None].append(b)
    out: list[tuple[object, int]] = []
    seen: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for b in kids.get(parent, []):
            if b.id not in seen:
                seen.add(b.id)
                out.append((b, depth))
                walk(b.id, depth + 1)
    walk(None, 0)
    out += [(b, 0) for b in budgets if b.id not in seen]  # a cycle the loader would have refused
    return out


def burn_points(rows_by_grain: dict[str, list[dict]], spans: dict[str, tuple], budgets, now: datetime) -> dict:
    """budget id -> [(instant, cumulative nanos)]: at the start and the end of each bucket with spend."""
    per: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for grain, rows in rows_by_grain.items():
        mine = [b for b in budgets if spans[b.id][2] == grain]
        for r, bs in zip(rows, _matches(rows, mine)):
            for b in bs:
                start, end, _ = spans[b.id]
                if start <= r["t"] < end:
                    per[b.id][r["t"]] += r["cost_nanos"]
    out = {}
    for bid, buckets in per.items():
        start, _, grain = spans[bid]
        acc, pts = 0, []
        for t in sorted(buckets):  # flat until a bucket starts, then its spend by the bucket's end
            pts.append((max(t, start), acc))
            acc += buckets[t]
            pts.append((min(t + GRAIN[grain], now), acc))
        out[bid] = pts
    return out


def _matches(rows: list[dict], budgets) -> list[list]:
    combos = matching_budgets(rows, budgets)
    return [combos[tuple(r[d] for d in BUDGET_DIMS)] for r in rows]


@router.get("/budgets")
async def budgets_page(request: Request) -> Response:
    who = await principal(request, CONSOLE_PERMISSION)
    rt = request.app.state.runtime
    status = {r["budget"]: r for r in await rt.budget_status()}
    now = datetime.now(timezone.utc)
    bf = running_budgets(rt)
    tz = ZoneInfo(bf.timezone)
    shown = [b for b in bf.budgets if b.id in status]
    spans = {}
    for b in shown:
        start, end = period_bounds(b.period, now, tz)
        spans[b.id] = (start, end, "hour" if end - start <= HOURLY_UP_TO else "day")
    ranges: dict[str, tuple[datetime, datetime]] = {}
    for start, _, grain in spans.values():
        ranges[grain] = (min(start, ranges.get(grain, (start,))[0]), now)

    def read():
        return {g: rt.store.query(BurnQuery(lo, hi, g, bf.timezone).to_sql()) for g, (lo, hi) in ranges.items()}
    points = burn_points(await rt.thread.run(read), spans, shown, now)

    rows = []
    for b, depth in tree_order(shown):
        s = status[b.id]
        start, end, _ = spans[b.id]
        amount = s["amount_nanos"]
        thresholds = [(f"{t.at.normalize():f}%" + (" forecast" if t.basis == "forecast" else ""),
                       t.trigger_nanos(amount)) for t in b.thresholds]
        chart = burn_down({"budget": b.id, "period_start": start, "period_end": end, "now": now,
                           "points": points.get(b.id, []), "spend_nanos": s["spend_nanos"], "amount_nanos": amount,
                           "forecast_nanos": s["forecast_nanos"], "thresholds": thresholds}, tz)
        rows.append({**s, "depth": min(depth, 3), "parent": b.parent or "", "scope": scope_text(b),
                     "period_kind": str(b.period), "spend_usd": from_nanos(s["spend_nanos"]),
                     "amount_usd": from_nanos(amount), "forecast_usd": from_nanos(s["forecast_nanos"]),
                     "thresholds": thresholds, "chart": chart})
    counts = {k: sum(1 for r in rows if r["state"] == k) for k in ("over", "at-risk", "ok")}
    return render(request, "budgets.html", who=who, page="budgets", rows=rows, counts=counts, now=now,
                  tz=bf.timezone)
