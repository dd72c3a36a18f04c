"""costwarden schema v8: audio and image tokens, priced at their own rates, kept as their own columns.

`usage_events` and the three report rollups gain input/output audio and image token counts
(disjoint from the text counts); the report views are re-created to sum them. Safe to run again
from any point (ADD COLUMN IF NOT EXISTS; a view is dropped and created from its definition).
"""
from __future__ import annotations

from costwarden.store.base import Store

COLUMNS = ("input_audio_tokens", "output_audio_tokens", "input_image_tokens", "output_image_tokens")
_SUMMED = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "output_tokens", "reasoning_tokens", *COLUMNS)
GRAINS = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}


def report_view(grain: str) -> str:
    sums = ", ".join(f"sum({c}) AS {c}" for c in _SUMMED)
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mv_rollup_{grain} TO {{db}}.usage_rollup_{grain} AS "
            f"SELECT {GRAINS[grain]}(occurred_at) AS bucket, team, workflow, cost_center, env, provider, "
            f"priced_model AS model, count() AS events, {sums}, "
            "sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, sum(cost_nanos) AS cost_nanos, "
            "sum(unpriced) AS unpriced_events FROM {db}.usage_events "
            "GROUP BY bucket, team, workflow, cost_center, env, provider, model")


def apply(store: Store) -> None:
    for grain in GRAINS:
        store.command(f"DROP VIEW IF EXISTS {{db}}.mv_rollup_{grain}")
    for table, after in (("usage_events", "reasoning_tokens"), *((f"usage_rollup_{g}", "reasoning_tokens")
                                                                  for g in GRAINS)):
        prev = after
        for c in COLUMNS:
            store.command(f"ALTER TABLE {{db}}.{table} ADD COLUMN IF NOT EXISTS {c} UInt64 AFTER {prev}")
            prev = c
    for grain in GRAINS:
        store.command(report_view(grain))
