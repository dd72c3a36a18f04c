"""Forecasts: the weekday-seasonal method on series with known answers, exhaustion time, backtest."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from costwarden.finance.forecast import LINEAR, SEASONAL, project, weekday_factors
from costwarden.finance.forecast_backtest import WORKWEEK, backtest, synthetic_history

UTC = timezone.utc


def test_a_pure_weekday_pattern_is_forecast_exactly_where_a_straight_rate_is_not():
    # $100/day on weekdays, $40 on weekends; forecast November 2026 on Saturday the 14th
    pattern = (Decimal(1),) * 5 + (Decimal("0.4"),) * 2
    daily = synthetic_history(date(2026, 9, 1), 74, 100_000_000_000, weekday=pattern)  # Sep 1 .. Nov 13
    nov = {d: v for d, v in daily.items() if d >= date(2026, 11, 1)}
    truth = sum(100_000_000_000 if (date(2026, 11, 1) + timedelta(days=i)).weekday() < 5 else 40_000_000_000
                for i in range(30))
    now = datetime(2026, 11, 14, tzinfo=UTC)
    p = project(daily, sum(nov.values()), 10**15, datetime(2026, 11, 1, tzinfo=UTC),
                datetime(2026, 12, 1, tzinfo=UTC), now)
    assert p.method == SEASONAL
    assert p.forecast_nanos == truth
    f = weekday_factors(daily, now.date())
    assert (f[0] / f[5]).quantize(Decimal("0.000001")) == Decimal("2.5")
    assert p.exhausted_at is None


def test_exhaustion_time_is_where_the_projection_crosses_the_amount():
    daily = {date(2026, 11, 1) + timedelta(days=i): 100_000_000_000 for i in range(10)}  # flat $100/day
    now = datetime(2026, 11, 11, tzinfo=UTC)
    p = project(daily, 1_000_000_000_000, 1_550_000_000_000, datetime(2026, 11, 1, tzinfo=UTC),
                datetime(2026, 12, 1, tzinfo=UTC), now)
    assert p.forecast_nanos == 3_000_000_000_000  # $1,000 + 20 days x $100
    assert p.exhausted_at == datetime(2026, 11, 16, 12, tzinfo=UTC)  # $550 more = 5.5 days
    over = project(daily, 2_000_000_000_000, 1_550_000_000_000, datetime(2026, 11, 1, tzinfo=UTC),
                   datetime(2026, 12, 1, tzinfo=UTC), now)
    assert over.exhausted_at == now  # already spent


def test_without_a_complete_day_the_ledger_method_is_used():
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    p = project({}, 50_000_000_000, 10**12, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), now)
    assert p.method == LINEAR and p.forecast_nanos == 100_000_000_000  # half a day, $50 -> $100


def test_backtest_reports_lower_error_for_the_seasonal_method():
    noisy = synthetic_history(date(2026, 1, 1), 273, 100_000_000_000, WORKWEEK, trend_per_day=Decimal("0.002"),
                              noise=Decimal("0.15"))
    bt = backtest(noisy)
    assert bt.cases == 24
    assert bt.mape("weekday-seasonal") < Decimal(5) < bt.mape("linear")
    clean = backtest(synthetic_history(date(2026, 1, 1), 120, 100_000_000_000))
    assert clean.mape("weekday-seasonal") == 0
