"""SQL as values for the finance reports and tools (tested as strings in tests/finance)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from costwarden.errors import CostwardenError
from costwarden.store.queries import REPORT_DIMS, ts

# Raw-table expressions for the rollup dimensions (the rollups' `model` is the priced model).
RAW_DIM = {"team": "team", "workflow": "workflow", "cost_center": "cost_center", "env": "env",
           "provider": "provider", "model": "priced_model"}


def _dims(by: Sequence[str]) -> list[str]:
    for d in by:
        if d not in REPORT_DIMS:
            raise CostwardenError(f"cannot report by {d!r}; choose from {', '.join(REPORT_DIMS)}")
    return [f"{RAW_DIM[d]} AS {d}" if RAW_DIM[d] != d else d for d in by]


def _range(start: datetime, end: datetime) -> str:
    return f"occurred_at >= {ts(start)} AND occurred_at < {ts(end)}"


def _day_floor(d: datetime) -> datetime:
    return d.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(d: datetime) -> datetime:
    f = _day_floor(d)
    return f if f == d else f + timedelta(days=1)


@dataclass(frozen=True)
class RunsQuery:
    """Distinct workflow runs (the `run_id` tag) and their spend per dimension: whole UTC days from
    the run rollup (migration 009), the edges of a range that does not start or end at midnight
    from deduplicated raw events. Its cost grows with the runs in the range, not with stored events."""

    by: Sequence[str]
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        sel = _dims(self.by)
        group = f" GROUP BY {', '.join(self.by)}" if self.by else ""
        head = ", ".join(self.by) + ", " if self.by else ""
        d0, d1 = _day_ceil(self.start), _day_floor(self.end)
        parts, edges = [], [(self.start, self.end)]
        if d0 < d1:
            parts.append(f"SELECT {head}run_id, cost_nanos FROM {{db}}.run_rollup_day "
                         f"WHERE bucket >= {ts(d0)} AND bucket < {ts(d1)}")
            edges = [(self.start, d0), (d1, self.end)]
        raw = ", ".join(sel) + ", " if sel else ""
        for a, b in edges:
            if a < b:
                parts.append(f"SELECT {raw}tags['run_id'] AS run_id, cost_nanos FROM {{db}}.usage_events FINAL "
                             f"WHERE {_range(a, b)} AND tags['run_id'] != ''")
        if not parts:
            parts.append(f"SELECT {head}run_id, cost_nanos FROM {{db}}.run_rollup_day WHERE 0")
        return (f"SELECT {head}uniqExact(run_id) AS runs, sum(cost_nanos) AS run_cost_nanos "
                f"FROM ({' UNION ALL '.join(parts)}){group}")


@dataclass(frozen=True)
class DailyQuery:
    """Spend per UTC day and dimensions (from the day rollup)."""

    by: Sequence[str]
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        _dims(self.by)
        dims = "".join(f", {d}" for d in self.by)
        return (f"SELECT bucket AS day{dims}, sum(cost_nanos) AS cost_nanos, sum(requests) AS requests "
                f"FROM {{db}}.usage_rollup_day WHERE bucket >= {ts(self.start)} AND bucket < {ts(self.end)} "
                f"GROUP BY day{dims} ORDER BY day{dims}")


@dataclass(frozen=True)
class BudgetDailyQuery:
    """Spend per UTC day by every dimension a budget scope matches on (raw events, deduplicated)."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT toStartOfDay(occurred_at) AS day, team, workflow, cost_center, env, provider, model, "
                "tags['org'] AS org, sum(cost_nanos) AS cost_nanos FROM {db}.usage_events FINAL "
                f"WHERE {_range(self.start, self.end)} "
                "GROUP BY day, team, workflow, cost_center, env, provider, model, org ORDER BY day")


FOCUS_COLUMNS = ("day", "provider", "model", "priced_model", "service_tier", "operation", "team", "workflow",
                 "cost_center", "env", "gpu_type", "catalogue_version")


@dataclass(frozen=True)
class FocusQuery:
    """Usage per UTC day and charge identity (raw events, deduplicated): the FOCUS export's rows."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        keys = ", ".join(FOCUS_COLUMNS)
        return ("SELECT toStartOfDay(occurred_at) AS day, provider, model, priced_model, service_tier, operation, "
                "team, workflow, cost_center, env, gpu_type, catalogue_version, count() AS events, "
                "sum(requests) AS requests, sum(input_tokens) AS input_tokens, "
                "sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens, "
                "sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(output_tokens) AS output_tokens, "
                "sum(reasoning_tokens) AS reasoning_tokens, sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, "
                "sum(input_audio_tokens) AS input_audio_tokens, sum(output_audio_tokens) AS output_audio_tokens, "
                "sum(input_image_tokens) AS input_image_tokens, sum(output_image_tokens) AS output_image_tokens, "
                "sum(cost_nanos) AS cost_nanos, sum(unpriced) AS unpriced_events "
                f"FROM {{db}}.usage_events FINAL WHERE {_range(self.start, self.end)} "
                f"GROUP BY {keys} ORDER BY {keys}")


@dataclass(frozen=True)
class ReplayQuery:
    """Stored usage in event-time order, with what a budget scope and the ledger need."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT event_id, occurred_at, team, workflow, cost_center, env, provider, model, "
                "tags['org'] AS org, if(api_key_id != '', api_key_id, project_id) AS key, requests, cost_nanos "
                f"FROM {{db}}.usage_events FINAL WHERE {_range(self.start, self.end)} ORDER BY occurred_at, event_id")
