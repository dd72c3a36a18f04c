"""Forecast to period end, exhaustion time, minute series and spikes — numbers checked by hand."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costwarden.budgets.forecast import (
    MinuteSeries, burn_rate, exhaustion_time, forecast_period_end, is_spike,
)
from costwarden.budgets.model import SpikeRule

UTC = timezone.utc
USD = 1_000_000_000
DAY_S = 86400
NOV_START, NOV_END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)  # 30 days


def t(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


# -- forecast --------------------------------------------------------------------------------

def test_mature_period_projects_the_recent_pace():
    # 10 days in, $1,000 spent, $150 in the last 24 h: $1,000 + 20 days x $150 = $4,000
    assert forecast_period_end(1000 * USD, NOV_START, NOV_END, t(11), 150 * USD, DAY_S) == 4000 * USD


def test_without_a_recent_window_the_period_average_is_projected():
    # $100/day average over 10 days, 20 days left: $3,000
    assert forecast_period_end(1000 * USD, NOV_START, NOV_END, t(11)) == 3000 * USD


def test_young_period_leans_on_the_period_to_date_average():
    # 6 h in: w = 6/24 = 0.25; average $5/h, recent $30/24h = $1.25/h
    # rate = 0.25 x 1.25 + 0.75 x 5 = $4.0625/h; 714 h left: $30 + $2,900.625 = $2,930.625
    assert forecast_period_end(30 * USD, NOV_START, NOV_END, t(1, 6), 30 * USD, DAY_S) == 2_930_625_000_000


def test_half_grown_period_blends_evenly():
    # 12 h in, $60 spent ($5/h); last 24 h (reaching into October) $100 = $25/6 per h; w = 0.5
    # rate = (25/6 + 5) / 2 = 55/12 $/h; 708 h left: 708 x 55/12 = $3,245; forecast $3,305
    assert forecast_period_end(60 * USD, NOV_START, NOV_END, t(1, 12), 100 * USD, DAY_S) == 3305 * USD


def test_forecast_rounds_half_even_once_to_the_nano():
    start = t(1)
    # 1 nano in 3 s; 1 s left adds 1/3 -> 1; 2 s left adds 2/3 -> 2; 3 s left adds exactly 1
    assert forecast_period_end(1, start, start + timedelta(seconds=4), start + timedelta(seconds=3)) == 1
    assert forecast_period_end(1, start, start + timedelta(seconds=5), start + timedelta(seconds=3)) == 2
    # 1 nano in 2 s, 1 s left adds exactly 0.5 -> rounds to even (0): 1; 3 s left adds 1.5 -> 2: 3
    assert forecast_period_end(1, start, start + timedelta(seconds=3), start + timedelta(seconds=2)) == 1
    assert forecast_period_end(1, start, start + timedelta(seconds=5), start + timedelta(seconds=2)) == 3


def test_forecast_edges_return_actual_spend():
    assert forecast_period_end(500, NOV_START, NOV_END, NOV_END, 100, DAY_S) == 500
    assert forecast_period_end(500, NOV_START, NOV_END, NOV_END + timedelta(days=3)) == 500
    assert forecast_period_end(0, NOV_START, NOV_END, NOV_START, 100, DAY_S) == 0
    # a credit in the recent window never pulls the forecast below what was spent
    assert forecast_period_end(1000 * USD, NOV_START, NOV_END, t(11), -50 * USD, DAY_S) == 1000 * USD


def test_forecast_is_an_int_and_burn_rate_a_decimal():
    assert isinstance(forecast_period_end(7, NOV_START, NOV_END, t(2, 5), 3, 3600), int)
    rate = burn_rate(1000 * USD, NOV_START, t(11), 150 * USD, DAY_S)
    assert isinstance(rate, Decimal) and rate * DAY_S == Decimal(150 * USD)


# -- exhaustion --------------------------------------------------------------------------------

def test_exhaustion_time_at_a_rate():
    now = t(21, 12)
    rate = burn_rate(300 * USD, t(21), now, 0, 0)  # $300 in 12 h = $25/h
    assert exhaustion_time(300 * USD, 400 * USD, rate, now) == t(21, 16)  # $100 more in 4 h
    assert exhaustion_time(300 * USD, 400 * USD, 1_000_000, now) == now + timedelta(seconds=100_000)
    assert exhaustion_time(400 * USD, 400 * USD, 1_000_000, now) == now  # already spent
    assert exhaustion_time(300 * USD, 400 * USD, 0, now) is None
    assert exhaustion_time(0, 400 * USD, Decimal("1e-30"), now) is None  # beyond the calendar


# -- minute series -------------------------------------------------------------------------------

def test_minute_series_sums_by_event_minute():
    s = MinuteSeries(60)
    s.add(t(21, 10, 0, 5), 100)
    s.add(t(21, 10, 0, 59), 50)
    s.add(t(21, 10, 1), 7)
    s.add(t(21, 10, 30), 1000)
    now = t(21, 10, 30, 40)
    assert s.sum_last(1, now) == 1000  # the current minute is included
    assert s.sum_last(30, now) == 1007  # 10:01 .. 10:30
    assert s.sum_last(31, now) == 1157
    assert s.sum_last(15, t(21, 10, 14)) == 157  # a window ending before the newest event
    assert s.sum_last(5, t(21, 9, 0)) == 0


def test_minute_series_forgets_beyond_its_horizon_and_ignores_too_late_events():
    s = MinuteSeries(10)
    s.add(t(21, 10, 0), 5)
    s.add(t(21, 10, 9), 1)
    assert s.sum_last(10, t(21, 10, 9)) == 6
    s.add(t(21, 10, 10), 2)  # 10:00 leaves the 10-minute horizon
    assert s.sum_last(60, t(21, 10, 10)) == 3
    assert s.add(t(21, 10, 0), 100) is False  # too late to count
    assert s.add(t(21, 10, 1), 100) is True  # still inside
    assert s.sum_last(60, t(21, 10, 10)) == 103
    s.add(t(21, 13, 0), 4)  # a jump past the whole horizon clears everything
    assert s.sum_last(600, t(21, 13, 0)) == 4


def test_minute_series_wraps_its_ring_many_times():
    s = MinuteSeries(7)
    for m in range(100):
        s.add(t(21, 0, 0) + timedelta(minutes=m), m)
    now = t(21, 0, 0) + timedelta(minutes=99)
    assert s.sum_last(7, now) == sum(range(93, 100))
    assert s.sum_last(3, now - timedelta(minutes=2)) == 95 + 96 + 97
    assert s.sum_last(1000, now) == sum(range(93, 100))


def test_baseline_rate_is_the_minutes_before_the_window():
    s = MinuteSeries(400, since=t(21, 0))
    for m in range(360):  # 06:00..11:59 at 2 nanos a minute
        s.add(t(21, 6) + timedelta(minutes=m), 2)
    s.add(t(21, 12, 5), 10_000)  # inside the window: not part of the baseline
    now = t(21, 12, 14)
    assert s.baseline_rate(15, 360, now) == Decimal(2)  # minutes 06:00..11:59
    assert MinuteSeries(10).baseline_rate(5, 20, now) is None


# -- spikes --------------------------------------------------------------------------------------

RULE = SpikeRule(window_minutes=15, baseline_minutes=360, factor=5, min_spend="1.00")


def _steady(since: datetime, minutes: int, per_minute: int) -> MinuteSeries:
    s = MinuteSeries.for_rule(RULE, since=since)
    for m in range(minutes):
        s.add(since + timedelta(minutes=m), per_minute)
    return s


def test_spike_at_five_times_the_baseline():
    # $10.80 over the 360 minutes before the window: expected $0.45 per 15 minutes; 5x = $2.25
    s = _steady(t(21, 6), 360, 30_000_000)
    s.add(t(21, 12, 3), 2_250_000_000)
    assert is_spike(RULE, s, t(21, 12, 14)) == (True, 2_250_000_000, 450_000_000)


def test_just_below_the_factor_is_not_a_spike():
    s = _steady(t(21, 6), 360, 30_000_000)
    s.add(t(21, 12, 3), 2_249_999_999)
    assert is_spike(RULE, s, t(21, 12, 14)) == (False, 2_249_999_999, 450_000_000)


def test_spikes_below_min_spend_are_ignored():
    s = _steady(t(21, 6), 360, 1_000_000)  # baseline $0.015 per window
    s.add(t(21, 12, 3), 900_000_000)  # 60x the baseline, but under $1
    spiking, recent, expected = is_spike(RULE, s, t(21, 12, 14))
    assert (spiking, recent, expected) == (False, 900_000_000, 15_000_000)


def test_spend_from_a_quiet_baseline_is_a_spike():
    s = MinuteSeries.for_rule(RULE, since=t(21, 0))
    s.add(t(21, 12, 0), 3 * USD)
    assert is_spike(RULE, s, t(21, 12, 10)) == (True, 3 * USD, 0)
    # 20 minutes later the window has moved on and the $3 is part of the baseline: $3/360 x 15
    assert is_spike(RULE, s, t(21, 12, 20)) == (False, 0, 125_000_000)


def test_a_fresh_series_has_no_baseline_so_no_spike():
    s = MinuteSeries.for_rule(RULE)  # observing since its first event
    s.add(t(21, 12, 0), 50 * USD)
    assert is_spike(RULE, s, t(21, 12, 10))[0] is False
    # 14 observed baseline minutes < one window: still not judged
    assert is_spike(RULE, s, t(21, 12, 28))[0] is False
    s.add(t(21, 12, 30), 50 * USD)
    # 16 baseline minutes observed (12:00..12:15) holding $50: expected ~$46.88 per window
    spiking, recent, expected = is_spike(RULE, s, t(21, 12, 30))
    assert (spiking, recent, expected) == (False, 50 * USD, 46_875_000_000)


@pytest.mark.parametrize("factor", ["1.5", "5", "10"])
def test_spike_threshold_is_exact_for_fractional_factors(factor):
    rule = SpikeRule(window_minutes=10, baseline_minutes=30, factor=factor, min_spend="0")
    s = MinuteSeries.for_rule(rule, since=t(21, 0))
    for m in range(30):
        s.add(t(21, 0) + timedelta(minutes=m), 3)  # 90 nanos over 30 minutes: 30 per window
    needed = int(Decimal(factor) * 30)
    s.add(t(21, 0, 30), needed - 1)
    assert is_spike(rule, s, t(21, 0, 39)) == (False, needed - 1, 30)
    s.add(t(21, 0, 31), 1)
    assert is_spike(rule, s, t(21, 0, 39)) == (True, needed, 30)
