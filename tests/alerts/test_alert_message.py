from datetime import datetime

import pytest

from costwarden.alerts.message import format_alert, percent


def test_body_says_what_happened_what_drove_it_and_what_was_done(make_alert):
    title, body = format_alert(make_alert())
    assert "Search team monthly" in title and "82.3%" in title and "80%" in title and "2026-11" in title
    assert "Budget: Search team monthly (search-monthly)" in body
    assert "Scope: team=search" in body
    assert "Period: 2026-11 (ends 2026-12-01 00:00 UTC)" in body
    assert "Spend: $8,234.56 of $10,000.00 (82.3% of budget)" in body
    assert "Forecast at period end: $11,200.00 (112.0% of budget)" in body
    assert "Action taken: throttled rag-answer to 60 req/min" in body
    assert "To release: costwarden controls release rag-answer" in body


def test_top_three_contributors_largest_first(make_alert):
    _, body = format_alert(make_alert())
    lines = body.splitlines()
    i = lines.index("Top contributors:")
    assert lines[i + 1:i + 4] == [
        "  1. workflow=rag-answer: $5,100.00 (61.9% of spend)",
        "  2. model=gpt-4o: $2,000.00 (24.3% of spend)",
        "  3. workflow=summarise: $1,500.00 (18.2% of spend)",
    ]
    assert "key-ci" not in body  # the fourth is left out


def test_forecast_and_spike_titles(make_alert):
    title, _ = format_alert(make_alert(kind="forecast", threshold="100%"))
    assert "forecast to reach 112.0% by period end (threshold 100%)" in title
    title, _ = format_alert(make_alert(kind="spike", threshold="3x"))
    assert "spend spike" in title


def test_notify_only_without_release_hint_and_no_forecast(make_alert):
    _, body = format_alert(make_alert(action="notify only", release_hint="", forecast_nanos=None, top_contributors=[]))
    assert "Action taken: notify only" in body
    assert "To release" not in body
    assert "Forecast at period end: not available" in body
    assert "Top contributors: none recorded" in body


@pytest.mark.parametrize("part,whole,expected", [
    (1, 3, "33.3%"), (2, 3, "66.7%"), (1_025, 10_000, "10.2%"), (1_035, 10_000, "10.4%"),
    (10_000_000_000_001, 10_000_000_000_000, "100.0%"), (0, 5, "0.0%"), (5, 0, "n/a"),
])
def test_percent_is_exact_from_integers(part, whole, expected):
    assert percent(part, whole) == expected


def test_invalid_alerts_are_refused(make_alert):
    with pytest.raises(ValueError):
        make_alert(kind="weekly")
    with pytest.raises(ValueError):
        make_alert(period_end=datetime(2026, 12, 1))
    with pytest.raises(TypeError):
        make_alert(spend_nanos=1.5)


def test_unpriced_notice_shows_the_first_calls_exact_cost_to_the_nano(make_alert):
    # 10 input tokens at a $1.35 / 1M fallback rate: $0.0000135 = 13,500 nanos, not rounded to 14 micros
    title, body = format_alert(make_alert(kind="unpriced", key="unpriced:openai/mystery-x:2026-11-20",
                                          scope="openai/mystery-x", period_label="2026-11-20",
                                          threshold="fallback (provider_max:openai)", spend_nanos=13_500,
                                          amount_nanos=0, forecast_nanos=None, top_contributors=[]))
    assert title == "[costwarden] Unpriced model in use: openai/mystery-x on 2026-11-20"
    assert "Charged to budgets: fallback (provider_max:openai); the first call $0.000013500" in body
