"""What the console reads from the store: SQL as values (`to_sql()`, tested as strings in
tests/ui/test_ui_units.py), each bounded by a period or a LIMIT and read from the rollups, never
from `usage_events`, so a page costs the same with ten thousand or ten million stored events."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from costwarden.connectors.reconcile import REPORT_SOURCES
from costwarden.store.queries import lit, ts

BUDGET_DIMS = ("org", "team", "workflow", "cost_center", "env", "provider", "model")
LIMIT = 200


@dataclass(frozen=True)
class BurnQuery:
    """Spend per bucket in [start, end) by every dimension a budget scope matches on, from the
    budget hour rollup: `day` buckets start at local midnight in `tz` (the budgets file's zone)."""

    start: datetime
    end: datetime
    grain: str = "day"
    tz: str = "UTC"

    def to_sql(self) -> str:
        if self.grain not in ("hour", "day"):
            raise ValueError(f"unknown grain {self.grain!r}")
        t = "bucket" if self.grain == "hour" else f"toStartOfDay(bucket, {lit(self.tz)})"
        dims = ", ".join(BUDGET_DIMS)
        return (f"SELECT {t} AS t, {dims}, sum(cost_nanos) AS cost_nanos FROM {{db}}.budget_rollup_hour "
                f"WHERE bucket >= {ts(self.start)} AND bucket < {ts(self.end)} GROUP BY t, {dims}")


@dataclass(frozen=True)
class RecentQuery:
    """The newest `limit` rows of an append-only table, newest first."""

    table: str
    columns: str = "*"
    order: str = "at DESC, seq DESC"
    limit: int = LIMIT

    def to_sql(self) -> str:
        if self.table not in ("control_audit", "budget_audit", "budget_events"):
            raise ValueError(f"not a history table: {self.table!r}")
        return f"SELECT {self.columns} FROM {{db}}.{self.table} ORDER BY {self.order} LIMIT {int(self.limit)}"


SIGNAL_COLUMNS = ("key, at, budget_id, period_start, kind, threshold, spend_nanos, amount_nanos, forecast_nanos, "
                  "workflow, detail")


def signals_query(limit: int = LIMIT) -> RecentQuery:
    return RecentQuery("budget_events", SIGNAL_COLUMNS, "at DESC, key", limit)


@dataclass(frozen=True)
class DeliveriesQuery:
    """Each (alert, channel)'s latest state: the channel's name, never its URL (config holds that)."""

    keys: tuple[str, ...] = ()
    limit: int = LIMIT

    def to_sql(self) -> str:
        cols = "key, channel, budget_id, title, status, attempts, created_at, next_attempt_at, last_error"
        where = f"WHERE key IN ({', '.join(lit(k) for k in self.keys)}) " if self.keys else ""
        return (f"SELECT {cols} FROM {{db}}.alert_outbox FINAL {where}"
                f"ORDER BY created_at DESC, key, channel LIMIT {int(self.limit)}")


CURSORS_SQL = ("SELECT connector, cursor, updated_at, detail FROM {db}.connector_cursors FINAL ORDER BY connector")

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def without_urls(text: str) -> str:
    """A delivery error as people may read it: any URL in it (a channel's, with its secrets) hidden."""
    return _URL.sub("[address hidden]", text or "")


def matching_budgets(rows: Iterable[dict], budgets) -> dict[tuple, list]:
    """Dimension combinations of `rows` -> the budgets whose scope matches them (each computed once)."""
    out: dict[tuple, list] = {}
    for r in rows:
        k = tuple(r[d] for d in BUDGET_DIMS)
        if k not in out:
            dims = dict(zip(BUDGET_DIMS, k))
            dims["org"] = dims["org"] or None
            out[k] = [b for b in budgets if b.scope.matches(dims)]
    return out


def _whole_days(start: datetime, end: datetime) -> str:
    for d in (start, end):
        if d.hour or d.minute or d.second or d.microsecond:
            raise ValueError(f"{d.isoformat()}: a reconciliation period is whole UTC days")
    return f"bucket >= toDate({ts(start)}) AND bucket < toDate({ts(end)})"


@dataclass(frozen=True)
class OursDailyQuery:
    """Our cost per day, provider and project (workspace for Anthropic) from the source rollup
    (migration 009): the rows connectors.reconcile's OursQuery reads from raw events."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        provs = ", ".join(lit(p) for p in sorted(set(REPORT_SOURCES.values())))
        return ("SELECT bucket AS day, provider, if(provider = 'anthropic', workspace_id, project_id) AS scope, "
                "sum(cost_nanos) AS cost_nanos, sum(unpriced) AS unpriced FROM {db}.source_rollup_day "
                f"WHERE {_whole_days(self.start, self.end)} AND provider IN ({provs}) GROUP BY day, provider, scope")


@dataclass(frozen=True)
class EventCostDailyQuery:
    """Events that carry the cost their source reported (LiteLLM, OpenCost) against our price of
    them, per day, source, provider and project, from the source rollup: connectors.reconcile's
    EventCostQuery without the raw events."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT bucket AS day, source, provider, if(project_id != '', project_id, workspace_id) AS scope, "
                "sum(cost_nanos) AS cost_nanos, sum(reported_cost) AS reported, sum(unpriced) AS unpriced "
                "FROM {db}.source_rollup_day WHERE with_provider_cost = 1 AND provider_cost_currency = 'USD' "
                f"AND {_whole_days(self.start, self.end)} GROUP BY day, source, provider, scope")


def reconcile_rows(store, start: datetime, end: datetime, threshold_pct) -> list[dict]:
    """GET /v1/reconcile's rows (connectors.reconcile.compare over the same three inputs), with our
    side read from the source rollup instead of `usage_events FINAL`."""
    from costwarden.connectors.reconcile import ReportedQuery, compare

    rows = compare(store.query(OursDailyQuery(start, end).to_sql()), store.query(ReportedQuery(start, end).to_sql()),
                   store.query(EventCostDailyQuery(start, end).to_sql()), threshold_pct)
    return [r.as_row() for r in rows]
