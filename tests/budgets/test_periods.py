"""Calendar periods in the file's zone (DST-correct), rolling windows, keys."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from costwarden.budgets.model import Period
from costwarden.budgets.periods import current_period, iter_periods, period_bounds, period_key

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
DAY, WEEK, MONTH, QUARTER = Period("day"), Period("week"), Period("month"), Period("quarter")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_berlin_day_is_local_midnight_to_midnight_in_utc():
    start, end = period_bounds(DAY, utc(2026, 11, 21, 12), BERLIN)
    assert (start, end) == (utc(2026, 11, 20, 23), utc(2026, 11, 21, 23))
    assert start.tzinfo == UTC and end.tzinfo == UTC


def test_an_event_at_2330_utc_belongs_to_the_next_berlin_day():
    span = current_period(DAY, utc(2026, 11, 21, 23, 30), BERLIN)
    assert span.key == "2026-11-22" and span.start == utc(2026, 11, 21, 23)
    assert current_period(DAY, utc(2026, 11, 21, 22, 59, 59), BERLIN).key == "2026-11-21"


def test_spring_forward_day_in_berlin_is_23_hours():
    start, end = period_bounds(DAY, utc(2026, 3, 29, 12), BERLIN)  # clocks 02:00 -> 03:00
    assert (start, end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert end - start == timedelta(hours=23)


def test_fall_back_day_in_berlin_is_25_hours():
    start, end = period_bounds(DAY, utc(2026, 10, 25, 1, 30), BERLIN)  # 02:00-03:00 happens twice
    assert (start, end) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    assert end - start == timedelta(hours=25)
    # both occurrences of 02:30 local are in the same day
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert period_bounds(DAY, first, BERLIN) == period_bounds(DAY, second, BERLIN) == (start, end)


def test_month_across_dst_keeps_local_midnights():
    start, end = period_bounds(MONTH, utc(2026, 10, 15), BERLIN)
    assert (start, end) == (utc(2026, 9, 30, 22), utc(2026, 10, 31, 23))  # CEST start, CET end
    assert period_key(MONTH, start, BERLIN) == "2026-10"


def test_midnight_in_a_dst_gap_starts_the_day_at_its_first_instant():
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06 00:00 -> 01:00
    start, end = period_bounds(DAY, utc(2026, 9, 6, 18), santiago)
    assert start == utc(2026, 9, 6, 4) and start.astimezone(santiago).hour == 1
    assert end - start == timedelta(hours=23)


def test_week_starts_monday_in_local_time():
    sunday_late = datetime(2026, 11, 22, 23, 59, tzinfo=BERLIN)
    monday = datetime(2026, 11, 23, 0, 0, tzinfo=BERLIN)
    assert current_period(WEEK, sunday_late, BERLIN) == (utc(2026, 11, 15, 23), utc(2026, 11, 22, 23), "2026-W47")
    assert current_period(WEEK, monday, BERLIN).key == "2026-W48"


def test_iso_week_key_across_new_year():
    # 1 Jan 2027 is a Friday: it belongs to ISO week 53 of 2026, which started Monday 28 Dec
    span = current_period(WEEK, utc(2027, 1, 1, 12), UTC)
    assert (span.start, span.key) == (utc(2026, 12, 28), "2026-W53")
    assert current_period(WEEK, utc(2027, 1, 4, 12), UTC).key == "2027-W01"


@pytest.mark.parametrize(("at", "bounds", "key"), [
    (utc(2026, 11, 21), (utc(2026, 10, 1), utc(2027, 1, 1)), "2026-Q4"),
    (utc(2026, 12, 31, 23, 59, 59), (utc(2026, 10, 1), utc(2027, 1, 1)), "2026-Q4"),
    (utc(2027, 1, 1), (utc(2027, 1, 1), utc(2027, 4, 1)), "2027-Q1"),
    (utc(2026, 6, 30, 12), (utc(2026, 4, 1), utc(2026, 7, 1)), "2026-Q2"),
    (utc(2026, 7, 1), (utc(2026, 7, 1), utc(2026, 10, 1)), "2026-Q3"),
])
def test_quarter_boundaries(at, bounds, key):
    span = current_period(QUARTER, at, UTC)
    assert (span.start, span.end) == bounds and span.key == key


def test_quarter_in_berlin_rolls_over_at_local_midnight():
    assert current_period(QUARTER, utc(2026, 12, 31, 22, 59), BERLIN).key == "2026-Q4"
    span = current_period(QUARTER, utc(2026, 12, 31, 23, 0), BERLIN)
    assert (span.start, span.end, span.key) == (utc(2026, 12, 31, 23), utc(2027, 3, 31, 22), "2027-Q1")


def test_period_keys_need_the_zone_for_utc_starts():
    start, _ = period_bounds(MONTH, utc(2026, 11, 10), BERLIN)  # 2026-10-31T23:00Z
    assert period_key(MONTH, start, BERLIN) == "2026-11"
    assert period_key(MONTH, start.astimezone(BERLIN)) == "2026-11"
    assert period_key(DAY, utc(2026, 11, 21)) == "2026-11-21"


def test_rolling_windows_end_at_the_instant():
    at = utc(2026, 11, 21, 10, 17, 3)
    assert period_bounds(Period("24h"), at, BERLIN) == (utc(2026, 11, 20, 10, 17, 3), at)
    assert period_bounds(Period("90m"), at, BERLIN) == (utc(2026, 11, 21, 8, 47, 3), at)
    assert period_bounds(Period("7d"), at.astimezone(BERLIN), BERLIN) == (utc(2026, 11, 14, 10, 17, 3), at)
    assert period_key(Period("7d"), at) == "rolling"
    assert current_period(Period("24h"), at, BERLIN).key == "rolling"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds(DAY, datetime(2026, 11, 21), BERLIN)


def test_iter_periods_covers_a_range_without_gaps():
    spans = list(iter_periods(MONTH, utc(2026, 10, 15), utc(2027, 1, 1), BERLIN))
    assert [s.key for s in spans] == ["2026-10", "2026-11", "2026-12", "2027-01"]
    assert all(a.end == b.start for a, b in zip(spans, spans[1:]))
    days = list(iter_periods(DAY, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12), BERLIN))
    assert [d.end - d.start for d in days] == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    with pytest.raises(ValueError):
        list(iter_periods(Period("24h"), utc(2026, 1, 1), utc(2026, 1, 2), UTC))
