"""The console's pieces without a browser: its SQL as strings (rollups only, bounded), what it
shows of a delivery error, the budget tree, the form token, where sign-in may send you."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from costwarden.api.ui.auth import csrf_token
from costwarden.api.ui.data import BurnQuery, DeliveriesQuery, RecentQuery, signals_query, without_urls
from costwarden.api.ui.pages_budgets import burn_points, tree_order
from costwarden.api.ui.pages_controls import since
from costwarden.api.ui.session import _next
from costwarden.budgets.model import Budget

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_the_burn_query_reads_the_budget_rollup_by_local_day_or_by_hour():
    day = BurnQuery(T0, T0 + timedelta(days=30), "day", "Europe/Berlin").to_sql()
    assert day == ("SELECT toStartOfDay(bucket, 'Europe/Berlin') AS t, org, team, workflow, cost_center, env, "
                   "provider, model, sum(cost_nanos) AS cost_nanos FROM {db}.budget_rollup_hour WHERE bucket >= "
                   "toDateTime64('2026-11-01 00:00:00.000', 3, 'UTC') AND bucket < toDateTime64('2026-12-01 "
                   "00:00:00.000', 3, 'UTC') GROUP BY t, org, team, workflow, cost_center, env, provider, model")
    assert BurnQuery(T0, T0 + timedelta(days=1), "hour").to_sql().startswith("SELECT bucket AS t, org")
    with pytest.raises(ValueError):
        BurnQuery(T0, T0, "minute").to_sql()


def test_history_queries_are_bounded_and_never_read_raw_events():
    assert RecentQuery("control_audit").to_sql() == (
        "SELECT * FROM {db}.control_audit ORDER BY at DESC, seq DESC LIMIT 200")
    assert signals_query(50).to_sql().endswith("FROM {db}.budget_events ORDER BY at DESC, key LIMIT 50")
    with pytest.raises(ValueError):
        RecentQuery("usage_events").to_sql()
    q = DeliveriesQuery(("a:1", "b'2"), limit=40).to_sql()
    assert "FROM {db}.alert_outbox FINAL WHERE key IN ('a:1', 'b\\'2') " in q and q.endswith("LIMIT 40")
    assert "url" not in q.lower()  # a channel is its name; the address stays in the configuration


def test_a_delivery_error_never_shows_an_address():
    text = "alert channel 'x' (json): failed for json://user:pw@hooks.example/t0k3n and mailto://a:b@c.example"
    assert without_urls(text) == "alert channel 'x' (json): failed for [address hidden] and [address hidden]"
    assert without_urls("") == ""


def _b(id_: str, parent: str | None = None) -> Budget:
    return Budget(id=id_, parent=parent, period="month", amount="10")


def test_the_budget_tree_puts_children_under_their_parent_in_file_order():
    bs = [_b("wf-a", "team-1"), _b("org"), _b("team-2", "org"), _b("team-1", "org"), _b("wf-b", "team-2"),
          _b("orphan", "gone")]
    assert [(b.id, d) for b, d in tree_order(bs)] == [
        ("org", 0), ("team-2", 1), ("wf-b", 2), ("team-1", 1), ("wf-a", 2), ("orphan", 0)]


def test_burn_points_step_at_each_bucket_and_stop_now():
    b = Budget(id="b", scope={"team": "search"}, period="day", amount="10")
    now = T0 + timedelta(hours=5, minutes=30)
    rows = [{"t": T0 + timedelta(hours=h), "org": "", "team": team, "workflow": "w", "cost_center": "", "env": "",
             "provider": "openai", "model": "m", "cost_nanos": v}
            for h, team, v in ((1, "search", 100), (5, "search", 50), (2, "other", 999), (-1, "search", 7))]
    pts = burn_points({"hour": rows}, {"b": (T0, T0 + timedelta(days=1), "hour")}, [b], now)
    assert pts == {"b": [(T0 + timedelta(hours=1), 0), (T0 + timedelta(hours=2), 100),
                         (T0 + timedelta(hours=5), 100), (now, 150)]}


def test_since_reads_like_people_talk():
    assert since(T0, T0 + timedelta(seconds=40)) == "40 s"
    assert since(T0, T0 + timedelta(hours=2, minutes=5)) == "2 h 5 min"
    assert since(T0, T0 + timedelta(days=3, hours=4)) == "3 d 4 h"
    assert since(None, T0) == ""


def test_the_form_token_belongs_to_the_session_and_sign_in_only_goes_to_console_pages():
    assert csrf_token("cw_a") == csrf_token("cw_a") != csrf_token("cw_b")
    assert "cw_a" not in csrf_token("cw_a") and len(csrf_token("cw_a")) == 64
    assert _next("/ui/spend") == "/ui/spend"
    for bad in ("https://evil.example/", "//evil.example/ui/", "/v1/tokens", "/ui/../v1/tokens", None, ""):
        assert _next(bad) == "/ui/budgets", bad
