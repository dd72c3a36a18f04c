"""Showback / chargeback: the spend report (costwarden.reports) plus unit economics.

`finance_report` extends `costwarden.reports.spend_report` (same rollup query, same TOTAL row)
with every token class, unit costs (per request, per 1,000 requests, per workflow run where a
`run_id` tag exists, from the run rollup), the previous period's cost and the change.
"unallocated" is always a row when grouping by team, workflow or cost_center, even at $0.
"""
from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from costwarden.errors import CostwardenError
from costwarden.finance.queries import RunsQuery
from costwarden.money import from_nanos
from costwarden.reports import TOKEN_COLS, spend_report
from costwarden.store import Store
from costwarden.streams.attribution import UNALLOCATED

ALLOCATION_DIMS = ("team", "workflow", "cost_center")
_NANO = Decimal("0.000000001")
COLUMNS_AFTER_DIMS = ["requests", *TOKEN_COLS, "cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd",
                      "runs", "cost_per_run_usd", "previous_cost_usd", "change_pct", "cost_nanos",
                      "unpriced_events"]


def previous_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The period before [start, end): the previous calendar month(s) when the range is whole
    months, else the same length just before."""
    if start.day == 1 and end.day == 1 and start.time() == end.time() == datetime.min.time():
        months = (end.year - start.year) * 12 + end.month - start.month
        y, m = divmod(start.year * 12 + start.month - 1 - months, 12)
        return start.replace(year=y, month=m + 1), start
    return start - (end - start), start


def _key(r: dict, by: list[str]) -> tuple:
    return tuple(r.get(d) for d in by)


def _per(nanos: int, n: int, scale: int = 1) -> Decimal | None:
    if not n:
        return None
    return (Decimal(nanos) * scale / Decimal(n) / 1_000_000_000).quantize(_NANO, ROUND_HALF_EVEN)


def _zero_row(by: list[str]) -> dict:
    r = {d: (UNALLOCATED if d in ALLOCATION_DIMS else "") for d in by}
    for m in ["events", "requests", *TOKEN_COLS, "cost_nanos", "unpriced_events"]:
        r[m] = 0
    r["cost_usd"] = from_nanos(0)
    r["cost_per_request_usd"] = None
    return r


def finance_report(store: Store, by: list[str], start: datetime, end: datetime,
                   compare: bool = True) -> tuple[list[dict], list[str]]:
    """Rows (the last one TOTAL) and columns. Every money column is exact Decimal USD;
    `cost_nanos` is the exact integer the TOTAL row sums."""
    if not by:
        raise CostwardenError("a finance report needs at least one dimension (--by)")
    rows, _ = spend_report(store, by, start, end)
    body = [r for r in rows if not (by and r.get(by[0]) == "TOTAL")]
    total = rows[-1] if rows and by else (rows[0] if rows else None)
    if any(d in ALLOCATION_DIMS for d in by) and not any(
            r.get(d) == UNALLOCATED for r in body for d in by if d in ALLOCATION_DIMS):
        body.append(_zero_row(by))
    if total is None:
        total = _zero_row(by) | {d: "TOTAL" for d in by}
    runs = {_key(r, by): r for r in store.query(RunsQuery(by, start, end).to_sql())}
    prev: dict[tuple, int] = {}
    prev_total = None
    if compare:
        ps, pe = previous_period(start, end)
        prev_rows, _ = spend_report(store, by, ps, pe)
        for r in prev_rows:
            prev[_key(r, by)] = r["cost_nanos"]
        prev_total = sum(r["cost_nanos"] for r in prev_rows if not (by and r.get(by[0]) == "TOTAL"))
    out = []
    for r in [*body, total]:
        is_total = r is total
        run = runs.get(_key(r, by)) if not is_total else {
            "runs": sum(x["runs"] for x in runs.values()),
            "run_cost_nanos": sum(x["run_cost_nanos"] for x in runs.values())}
        # unit costs over the spend of rows with requests (the TOTAL row: not GPU hours over model calls)
        r["cost_per_1k_requests_usd"] = _per(r.get("request_cost_nanos", r["cost_nanos"]), r["requests"], 1000)
        r["runs"] = run["runs"] if run else 0
        r["cost_per_run_usd"] = _per(run["run_cost_nanos"], run["runs"]) if run else None
        if compare:
            p = prev_total if is_total else prev.get(_key(r, by), 0)
            r["previous_cost_usd"] = from_nanos(p)
            r["change_pct"] = ((Decimal(r["cost_nanos"] - p) * 100 / Decimal(p)).quantize(Decimal("0.1"))
                               if p else None)
        out.append(r)
    columns = [*by, *COLUMNS_AFTER_DIMS]
    if not compare:
        columns = [c for c in columns if c not in ("previous_cost_usd", "change_pct")]
    return out, columns
