"""What the console reads from the store: SQL as values (`to_sql()`, tested as strings in
tests/ui/test_ui_units.py), each bounded by a period or a LIMIT and read from the rollups, never
from `usage_events`, so a page costs the same with ten thousand or ten million stored events."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

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


def reconcile_rows(store, start: datetime, end: datetime, threshold_pct) -> list[dict]:
    """GET /v1/reconcile's rows: whole days, so our side comes from the source rollup."""
    from costwarden.connectors.reconcile import reconcile

    return [r.as_row() for r in reconcile(store, start, end, threshold_pct)]
