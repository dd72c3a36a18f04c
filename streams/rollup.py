"""Rows and rollups (no I/O).

`event_row` turns a priced, attributed event into its raw-table row. `rollup` aggregates rows per
minute / hour / day by team, workflow, cost_center, env, provider, model, exactly as the store's
materialized views do (the contract tests compare the two); rollups are sums of integers, so
the sum of any rollup equals the sum of its events' costs to the nano-dollar.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from costwarden.events import UsageEvent
from costwarden.streams.attribution import Attributed

DIMS = ("team", "workflow", "cost_center", "env", "provider", "model")
MEASURES = ("events", "requests", "input_tokens", "cache_read_tokens", "cache_write_tokens",
            "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "input_audio_tokens",
            "output_audio_tokens", "input_image_tokens", "output_image_tokens", "gpu_hours", "cost_nanos",
            "unpriced_events")
GRANULARITIES = ("minute", "hour", "day")


def event_row(ev: UsageEvent, price, a: Attributed, ingested_at: datetime) -> dict[str, Any]:
    t, at = ev.tokens, ev.attribution
    pc = ev.provider_cost
    return {
        "event_id": ev.event_id, "occurred_at": ev.occurred_at, "ingested_at": ingested_at,
        "source": ev.source, "provider": ev.provider, "model": ev.model, "priced_model": price.priced_model,
        "operation": ev.operation, "service_tier": ev.service_tier.value, "requests": ev.requests,
        "input_tokens": t.input, "cache_read_tokens": t.cache_read, "cache_write_tokens": t.cache_write,
        "cache_write_1h_tokens": t.cache_write_1h, "output_tokens": t.output, "reasoning_tokens": t.reasoning,
        "input_audio_tokens": t.input_audio, "output_audio_tokens": t.output_audio,
        "input_image_tokens": t.input_image, "output_image_tokens": t.output_image,
        "gpu_hours": ev.compute.gpu_hours if ev.compute else Decimal(0),
        "gpu_type": (ev.compute.gpu_type or "") if ev.compute else "",
        "api_key_id": at.api_key_id or "", "project_id": at.project_id or "", "workspace_id": at.workspace_id or "",
        "user_id": at.user_id or "", "service_account": at.service_account or "", "trace_id": at.trace_id or "",
        "tags": dict(at.tags), "team": a.team, "workflow": a.workflow, "cost_center": a.cost_center,
        "env": a.env, "rule_id": a.rule_id, "cost_nanos": price.cost_nanos, "unpriced": int(price.unpriced),
        "catalogue_version": price.catalogue_version,
        "provider_cost": pc.amount if pc else None, "provider_cost_currency": pc.currency if pc else "",
    }


def bucket(at: datetime, granularity: str) -> datetime:
    if granularity == "minute":
        return at.replace(second=0, microsecond=0)
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown granularity {granularity!r}")


def rollup(rows: Iterable[dict[str, Any]], granularity: str) -> dict[tuple, dict[str, Any]]:
    """Aggregate raw rows: key (bucket, *DIMS) -> measures. Model is the priced (canonical) model."""
    out: dict[tuple, dict[str, Any]] = defaultdict(lambda: {m: 0 for m in MEASURES})
    for r in rows:
        key = (bucket(r["occurred_at"], granularity), r["team"], r["workflow"], r["cost_center"], r["env"],
               r["provider"], r["priced_model"])
        agg = out[key]
        agg["events"] += 1
        agg["requests"] += r["requests"]
        for m in MEASURES[2:-2]:
            agg[m] += r[m]
        agg["cost_nanos"] += r["cost_nanos"]
        agg["unpriced_events"] += r["unpriced"]
    return dict(out)
