"""costwarden schema v7: money in nano-dollars (was micro-dollars).

Every integer money column `*_micros` becomes `*_nanos` holding 1,000 times the value, so
stored history keeps its exact amounts and new events keep sub-micro-dollar precision. The
materialized views that sum the cost are re-created over the new column. Safe to run again
from any point: a column is converted only while its old name still exists, and the
conversion is a pure function of the old column.
"""
from __future__ import annotations

from costwarden.store.base import Store

MONEY_COLUMNS = {
    "usage_events": ("cost",),
    "usage_rollup_minute": ("cost",), "usage_rollup_hour": ("cost",), "usage_rollup_day": ("cost",),
    "budget_rollup_hour": ("cost",), "budget_rollup_minute": ("cost",),
    "budget_events": ("spend", "amount", "forecast"),
}

_REPORT_VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mv_rollup_{grain} TO {{db}}.usage_rollup_{grain} AS
SELECT toStartOf{fn}(occurred_at) AS bucket, team, workflow, cost_center, env, provider,
       priced_model AS model, count() AS events, sum(requests) AS requests,
       sum(input_tokens) AS input_tokens, sum(cache_read_tokens) AS cache_read_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(toDecimal128(gpu_hours, 9)) AS gpu_hours, sum(cost_nanos) AS cost_nanos, sum(unpriced) AS unpriced_events
FROM {{db}}.usage_events
GROUP BY bucket, team, workflow, cost_center, env, provider, model"""

_BUDGET_VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mv_budget_{grain} TO {{db}}.budget_rollup_{grain} AS
SELECT toStartOf{fn}(occurred_at) AS bucket, tags['org'] AS org, team, workflow, cost_center, env, provider,
       model, if(api_key_id != '', api_key_id, project_id) AS key, count() AS events, sum(cost_nanos) AS cost_nanos
FROM {{db}}.usage_events
GROUP BY bucket, org, team, workflow, cost_center, env, provider, model, key"""

VIEWS = {
    "mv_rollup_minute": _REPORT_VIEW.format(grain="minute", fn="Minute"),
    "mv_rollup_hour": _REPORT_VIEW.format(grain="hour", fn="Hour"),
    "mv_rollup_day": _REPORT_VIEW.format(grain="day", fn="Day"),
    "mv_budget_hour": _BUDGET_VIEW.format(grain="hour", fn="Hour"),
    "mv_budget_minute": _BUDGET_VIEW.format(grain="minute", fn="Minute"),
}


def apply(store: Store) -> None:
    for view in VIEWS:  # no insert may reach a view over a column being converted
        store.command(f"DROP VIEW IF EXISTS {{db}}.{view}")
    for table, names in MONEY_COLUMNS.items():
        have = {r["name"] for r in store.query(
            "SELECT name FROM system.columns WHERE database = '{db}' AND table = " f"'{table}'")}
        for name in names:
            old, new = f"{name}_micros", f"{name}_nanos"
            if old not in have:
                continue
            store.command(f"ALTER TABLE {{db}}.{table} ADD COLUMN IF NOT EXISTS {new} Int64 AFTER {old}")
            store.command(f"ALTER TABLE {{db}}.{table} UPDATE {new} = {old} * 1000 WHERE 1 "
                          "SETTINGS mutations_sync = 2")
            store.command(f"ALTER TABLE {{db}}.{table} DROP COLUMN IF EXISTS {old}")
    for sql in VIEWS.values():
        store.command(sql)
