"""What a run left in the store, as comparable JSON (the crash tests compare runs with it).

    python -m costwarden.testing.snapshot DATA_DIR [--url URL]

Prints every table of the commit reduced to the columns that do not depend on when it ran:
raw events (FINAL) and each rollup summed by bucket and dimensions, the rollups' totals against
FINAL, budget event keys with the spend that fired them, alert outbox (key, channel), controls
(FINAL) and the control audit path per workflow.
"""
from __future__ import annotations

import json
import sys

ROLLUP = ("SELECT toString(bucket) AS b, team, workflow, model, sum(events) AS events, "
          "sum(cost_nanos) AS cost FROM {db}.usage_rollup_%s GROUP BY b, team, workflow, model ORDER BY b, team, workflow, model")
QUERIES = {
    "raw": "SELECT count() AS events, sum(cost_nanos) AS cost FROM {db}.usage_events FINAL",
    "raw_by_team": "SELECT team, count() AS events, sum(cost_nanos) AS cost FROM {db}.usage_events FINAL "
                   "GROUP BY team ORDER BY team",
    "minute": ROLLUP % "minute", "hour": ROLLUP % "hour", "day": ROLLUP % "day",
    "dead_letters": "SELECT reason, count() AS n FROM {db}.dead_letters FINAL GROUP BY reason ORDER BY reason",
    "budget_events": "SELECT key, threshold, spend_nanos, workflow, count() AS copies FROM {db}.budget_events "
                     "GROUP BY key, threshold, spend_nanos, workflow ORDER BY key",
    "alert_outbox": "SELECT key, channel FROM {db}.alert_outbox FINAL ORDER BY key, channel",
    "controls": "SELECT workflow, state, toString(rate_per_min) AS rate, budget_id, reason FROM {db}.controls FINAL "
                "ORDER BY workflow",
    "control_audit": "SELECT workflow, from_state, to_state, budget_id, reason, actor_kind FROM {db}.control_audit "
                     "ORDER BY workflow, at, seq",
}


# every rollup fed by usage_events' materialized views (report rollups, migration 001; budget
# rollups, migration 006), each as (events, cost_nanos) against usage_events FINAL
ROLLUP_TABLES = ("usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day", "budget_rollup_minute",
                 "budget_rollup_hour")


def rollup_totals(store) -> dict[str, tuple[int, int]]:
    """{"final": (events, cost)} of usage_events FINAL and the same sums of every rollup table."""
    out = {}
    raw = store.query("SELECT count() AS events, sum(cost_nanos) AS cost FROM {db}.usage_events FINAL")[0]
    out["final"] = (int(raw["events"] or 0), int(raw["cost"] or 0))
    for t in ROLLUP_TABLES:
        r = store.query(f"SELECT sum(events) AS events, sum(cost_nanos) AS cost FROM {{db}}.{t}")[0]
        out[t] = (int(r["events"] or 0), int(r["cost"] or 0))
    return out


def snapshot(store) -> dict:
    out = {name: store.query(sql) for name, sql in QUERIES.items()}
    return json.loads(json.dumps(out, default=str))


def main(argv: list[str]) -> int:
    from costwarden.store import open_store

    url = argv[argv.index("--url") + 1] if "--url" in argv else None
    store = open_store(url, argv[0])
    print(json.dumps(snapshot(store), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
