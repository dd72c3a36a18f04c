"""SQL as values: small query builders with `to_sql()`, tested as strings (tests/store/test_queries.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from costwarden.errors import CostwardenError


def lit(s: str) -> str:
    """A ClickHouse string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ts(d: datetime) -> str:
    return f"toDateTime64({lit(d.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3])}, 3, 'UTC')"


REPORT_DIMS = ("team", "workflow", "cost_center", "env", "provider", "model")
MEASURES = ("events", "requests", "input_tokens", "cache_read_tokens", "cache_write_tokens",
            "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "input_audio_tokens",
            "output_audio_tokens", "input_image_tokens", "output_image_tokens", "cost_nanos", "unpriced_events")


@dataclass(frozen=True)
class ReportQuery:
    """Spend per dimension over [start, end) from the day (or hour/minute) rollup."""

    by: Sequence[str]
    start: datetime
    end: datetime
    granularity: str = "day"

    def to_sql(self) -> str:
        for d in self.by:
            if d not in REPORT_DIMS:
                raise CostwardenError(f"cannot report by {d!r}; choose from {', '.join(REPORT_DIMS)}")
        if self.granularity not in ("minute", "hour", "day"):
            raise CostwardenError(f"unknown granularity {self.granularity!r}")
        dims = ", ".join(self.by)
        sums = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)
        group = f" GROUP BY {dims} ORDER BY cost_nanos DESC, {dims}" if self.by else ""
        select = f"{dims}, {sums}" if self.by else sums
        return (f"SELECT {select} FROM {{db}}.usage_rollup_{self.granularity} "
                f"WHERE bucket >= {ts(self.start)} AND bucket < {ts(self.end)}{group}")


def _hour_floor(d: datetime) -> datetime:
    return d.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(d: datetime) -> datetime:
    f = _hour_floor(d)
    return f if f == d else f + timedelta(hours=1)


@dataclass(frozen=True)
class SpendSeedQuery:
    """Spend in [start, end) by the dimensions budgets match on (org included) plus the key, from
    the budget rollups (migration 006): whole hours from the hour rollup, the edges of a period that
    does not start or end on an hour from the minute rollup. Its cost does not grow with the stored
    history, only with the period's buckets."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        dims = "org, team, workflow, cost_center, env, provider, model, key"
        h0, h1 = _hour_ceil(self.start), _hour_floor(self.end)
        parts = []
        if h0 < h1:
            parts.append(f"SELECT {dims}, cost_nanos FROM {{db}}.budget_rollup_hour "
                         f"WHERE bucket >= {ts(h0)} AND bucket < {ts(h1)}")
            edges = [(self.start, h0), (h1, self.end)]
        else:
            edges = [(self.start, self.end)]
        for a, b in edges:
            if a < b:
                parts.append(f"SELECT {dims}, cost_nanos FROM {{db}}.budget_rollup_minute "
                             f"WHERE bucket >= {ts(a)} AND bucket < {ts(b)}")
        if not parts:
            return f"SELECT {dims}, toInt64(0) AS cost_nanos FROM {{db}}.budget_rollup_hour WHERE 0"
        return (f"SELECT {dims}, sum(cost_nanos) AS cost_nanos FROM ({' UNION ALL '.join(parts)}) "
                f"GROUP BY {dims}")


@dataclass(frozen=True)
class SpendSeedsQuery:
    """SpendSeedQuery for several windows in one statement (one round trip for every budget period
    a batch touches); each row carries `w`, the index of its window in `windows`."""

    windows: tuple[tuple[datetime, datetime], ...]

    def to_sql(self) -> str:
        return " UNION ALL ".join(f"SELECT toUInt32({i}) AS w, * FROM ({SpendSeedQuery(a, b).to_sql()})"
                                  for i, (a, b) in enumerate(self.windows))


@dataclass(frozen=True)
class MinuteSpendQuery:
    """Per-minute spend in [start, end) by the dimensions budgets match on (warms spike baselines)."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT bucket, org, team, workflow, cost_center, env, provider, model, sum(cost_nanos) AS cost_nanos "
                f"FROM {{db}}.budget_rollup_minute WHERE bucket >= {ts(self.start)} AND bucket < {ts(self.end)} "
                "GROUP BY bucket, org, team, workflow, cost_center, env, provider, model ORDER BY bucket")


@dataclass(frozen=True)
class RecentIdsQuery:
    """Ids of the newest events (the dedupe window rebuilt at start)."""

    horizon_hours: int
    limit: int

    def to_sql(self) -> str:
        return ("SELECT event_id, occurred_at FROM {db}.usage_events WHERE occurred_at >= "
                f"(SELECT max(occurred_at) FROM {{db}}.usage_events) - INTERVAL {int(self.horizon_hours)} HOUR "
                f"ORDER BY occurred_at DESC LIMIT {int(self.limit)}")


@dataclass(frozen=True)
class KnownIdsQuery:
    ids: tuple[str, ...]

    def to_sql(self) -> str:
        return f"SELECT DISTINCT event_id FROM {{db}}.usage_events WHERE event_id IN ({', '.join(map(lit, self.ids))})"


def known_ids_queries(ids: Iterable[str], chunk: int = 5000) -> list[KnownIdsQuery]:
    ids = list(ids)
    return [KnownIdsQuery(tuple(ids[i:i + chunk])) for i in range(0, len(ids), chunk)]


CONTROLS_SQL = "SELECT * FROM {db}.controls FINAL ORDER BY workflow"
AUDIT_SQL = "SELECT * FROM {db}.control_audit ORDER BY at, seq"
FIRED_KEYS_SQL = "SELECT DISTINCT key FROM {db}.budget_events"
UNPRICED_MARKS_SQL = "SELECT DISTINCT key FROM {db}.budget_events WHERE kind = 'unpriced'"
TOTALS_SQL = "SELECT count() AS events, sum(cost_nanos) AS cost_nanos FROM {db}.usage_events FINAL"
