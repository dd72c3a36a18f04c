"""Finance SQL as strings (no database)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from costwarden.errors import CostwardenError
from costwarden.finance.queries import FocusQuery, ReplayQuery, RunsQuery
from costwarden.finance.reprice import month_partitions

A, B = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_runs_query_reads_the_run_rollup_for_whole_days_and_raw_events_only_for_the_edges():
    sql = RunsQuery(["team", "model"], A, B).to_sql()  # whole days: the rollup alone
    assert sql == ("SELECT team, model, uniqExact(run_id) AS runs, sum(cost_nanos) AS run_cost_nanos FROM "
                   "(SELECT team, model, run_id, cost_nanos FROM {db}.run_rollup_day WHERE bucket >= "
                   "toDateTime64('2026-10-01 00:00:00.000', 3, 'UTC') AND bucket < "
                   "toDateTime64('2026-11-01 00:00:00.000', 3, 'UTC')) GROUP BY team, model")
    edges = RunsQuery(["team", "model"], A.replace(hour=6), B.replace(hour=12)).to_sql()
    assert edges.count("FROM {db}.usage_events FINAL") == 2 and "priced_model AS model" in edges
    assert "tags['run_id'] AS run_id" in edges and "tags['run_id'] != ''" in edges
    assert "bucket >= toDateTime64('2026-10-02 00:00:00.000', 3, 'UTC')" in edges
    inside = RunsQuery(["team"], A.replace(hour=6), A.replace(hour=9)).to_sql()  # within one day: raw only
    assert "run_rollup_day" not in inside and inside.endswith("GROUP BY team")
    with pytest.raises(CostwardenError):
        RunsQuery(["team; DROP TABLE x"], A, B).to_sql()


def test_replay_is_in_event_time_order_and_focus_groups_per_day():
    assert ReplayQuery(A, B).to_sql().endswith("ORDER BY occurred_at, event_id")
    assert "toStartOfDay(occurred_at) AS day" in FocusQuery(A, B).to_sql()
    assert "2026-10-01 00:00:00.000" in FocusQuery(A, B).to_sql()


def test_month_partitions_cover_the_range_exactly():
    parts = month_partitions(datetime(2026, 8, 15, tzinfo=timezone.utc), datetime(2026, 10, 2, tzinfo=timezone.utc))
    assert [(p, a.date().isoformat(), b.date().isoformat()) for p, a, b in parts] == [
        ("202608", "2026-08-15", "2026-09-01"), ("202609", "2026-09-01", "2026-10-01"),
        ("202610", "2026-10-01", "2026-10-02")]
