"""Spend: the finance report of GET /v1/reports/spend (costwarden.finance.reports.finance_report,
the same code and so the same figures) for a chosen period, by team / workflow / model / provider /
cost centre, with a drill-down team -> workflow -> model, unit costs, the unallocated spend always
in view, and a CSV of exactly the rows on screen."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from costwarden.api.ingest import BodyError
from costwarden.api.routes_reports import CSV, _filename, period_range
from costwarden.api.ui.auth import principal
from costwarden.api.ui.views import ConsoleRoute, render
from costwarden.finance.export import to_csv
from costwarden.finance.reports import finance_report
from costwarden.streams.attribution import UNALLOCATED

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
DIMS = {"team": "team", "workflow": "workflow", "model": "model", "provider": "provider", "cost_center": "cost centre"}
PERMISSION = "status:read"  # as GET /v1/reports/spend
SHOWN = ["requests", "cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd", "cost_per_run_usd",
         "previous_cost_usd", "change_pct", "unpriced_events"]


def _params(period: str | None = Query(None, max_length=64), by: str = Query("team", max_length=32),
            team: str | None = Query(None, max_length=256), workflow: str | None = Query(None, max_length=256)):
    """The page's query: period (default this month), dimension, and the drill-down's team and workflow."""
    return period, by, team, workflow


@dataclass
class View:
    """What the page shows: `rows` (the report's, filtered to the drill-down) and `total` (the
    report's TOTAL row, or in a drill-down the parent's own row in the coarser report)."""

    period: str
    start: datetime
    end: datetime
    by: str
    team: str | None
    workflow: str | None
    group: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    total: dict | None = None
    columns: list[str] = field(default_factory=list)
    unallocated: dict | None = None
    grand_total: dict | None = None

    @property
    def level(self) -> int:
        return 2 if self.workflow is not None else 1 if self.team is not None else 0

    @property
    def next_dim(self) -> str | None:
        """The dimension a row's link drills into."""
        if self.level == 0 and self.by == "team":
            return "workflow"
        return "model" if self.level == 1 else None

    def query(self, **change) -> str:
        """This view's query string, with `change` applied (None drops a parameter)."""
        q = {"period": self.period, "by": self.by, "team": self.team, "workflow": self.workflow, **change}
        return urlencode({k: v for k, v in q.items() if v is not None})


def this_month(now: datetime) -> str:
    return f"{now:%Y-%m}"


def suggestions(now: datetime) -> list[str]:
    """Periods offered in the picker: the last three months and the last two quarters."""
    out, y, m = [], now.year, now.month
    for _ in range(3):
        out.append(f"{y}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    q = (now.month - 1) // 3 + 1
    out += [f"{now.year}-Q{q}", f"{now.year}-Q{q - 1}" if q > 1 else f"{now.year - 1}-Q4"]
    return out


def _split(key: tuple, rows: list[dict], group: list[str]) -> tuple[list[dict], dict | None]:
    """The report's rows under `key` (values of the first dimensions) and its TOTAL row."""
    body = [r for r in rows if r.get(group[0]) != "TOTAL"]
    total = next((r for r in rows if r.get(group[0]) == "TOTAL"), None)
    n = len(key)
    return [r for r in body if tuple(r[d] for d in group[:n]) == key], total


def build(store, v: View) -> View:
    """Runs on the store thread: one to three finance reports (each a few rollup queries)."""
    team_rows, team_cols = finance_report(store, ["team"], v.start, v.end, compare=v.level > 0 or v.by == "team")
    _, grand = _split((), team_rows, ["team"])
    v.grand_total = grand
    v.unallocated = next((r for r in team_rows if r.get("team") == UNALLOCATED), None)
    if v.level == 0:
        v.group = [v.by]
        rows, cols = (team_rows, team_cols) if v.by == "team" else finance_report(store, v.group, v.start, v.end)
        v.rows, v.total = _split((), rows, v.group)
    elif v.level == 1:
        v.group = ["team", "workflow"]
        rows, cols = finance_report(store, v.group, v.start, v.end)
        v.rows, _ = _split((v.team,), rows, v.group)
        v.total = next((r for r in team_rows if r.get("team") == v.team), None)
    else:
        parent, _ = finance_report(store, ["team", "workflow"], v.start, v.end)
        v.group = ["team", "workflow", "model"]
        rows, cols = finance_report(store, v.group, v.start, v.end)
        v.rows, _ = _split((v.team, v.workflow), rows, v.group)
        v.total = next((r for r in parent if (r.get("team"), r.get("workflow")) == (v.team, v.workflow)), None)
    v.columns = cols
    return v


def csv_rows(v: View) -> list[dict]:
    """The rows on screen, then the total line (its first finer dimension reads TOTAL)."""
    rows = list(v.rows)
    if v.total is not None:
        t = dict(v.total)
        for d in v.group[v.level:]:
            t[d] = "TOTAL"
        rows.append(t)
    return rows


async def _view(request: Request, period: str | None, by: str, team: str | None, workflow: str | None):
    now = datetime.now(timezone.utc)
    period = (period or "").strip() or this_month(now)
    by = by if by in DIMS else "team"
    if workflow is not None and team is None:
        workflow = None
    start, end = period_range(period)  # BodyError 422 for an unreadable period
    v = View(period, start, end, by if team is None else "team", team, workflow)
    rt = request.app.state.runtime
    return await rt.thread.run(lambda: build(rt.store, v))


@router.get("/spend")
async def spend_page(request: Request, params: tuple = Depends(_params)) -> Response:
    who = await principal(request, PERMISSION)
    period, by, team, workflow = params
    now = datetime.now(timezone.utc)
    try:
        v = await _view(request, period, by, team, workflow)
    except BodyError as e:
        return render(request, "spend.html", 422, who=who, page="spend", view=None, error=e.detail,
                      period=period, by=by, dims=DIMS, suggestions=suggestions(now))
    shown = [c for c in SHOWN if c in v.columns]
    if not any(r.get("runs") for r in [*v.rows, v.total or {}]):
        shown = [c for c in shown if c != "cost_per_run_usd"]
    if not any(r.get("unpriced_events") for r in [*v.rows, v.total or {}]):
        shown = [c for c in shown if c != "unpriced_events"]
    return render(request, "spend.html", who=who, page="spend", view=v, shown=shown, period=v.period, by=v.by,
                  dims=DIMS, suggestions=suggestions(now), unallocated_label=UNALLOCATED)


@router.get("/spend.csv")
async def spend_csv(request: Request, params: tuple = Depends(_params)) -> Response:
    await principal(request, PERMISSION)
    v = await _view(request, *params)
    return Response(to_csv(csv_rows(v), v.columns), media_type=CSV, headers=_filename("spend", v.period, "csv"))
