"""Finance SQL as strings (no database)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from costwarden.errors import CostwardenError
from costwarden.finance.queries import FocusQuery, ReplayQuery, RunsQuery
from costwarden.finance.reprice import month_partitions

A, B = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_runs_query_reads_deduplicated_raw_events_by_priced_model():
    sql = RunsQuery(["team", "model"], A, B).to_sql()
    assert "FROM {db}.usage_events FINAL" in sql and "priced_model AS model" in sql
    assert "uniqExact(tags['run_id'])" in sql and "tags['run_id'] != ''" in sql
    assert sql.endswith("GROUP BY team, model")
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
