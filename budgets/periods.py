"""Budget periods on the calendar of the budgets file's time zone.

Calendar periods (day, week, month, quarter) start at local midnight in the file's time zone;
weeks start on Monday; quarters on 1 January, April, July and October. A day is 23 or 25 hours
long across a DST change: bounds are computed on the local calendar and then converted to UTC.
If local midnight does not exist (a zone that springs forward at 00:00), the period starts at
the first local instant of that day. Start is inclusive, end exclusive; both are UTC-aware.

Rolling windows (`24h`, `7d`, `90m`) have no calendar: at time t the window is [t - w, t).

Keys name a period for people and for idempotency ("one alert per threshold per period"):
"2026-11-21", "2026-W47" (ISO week), "2026-11", "2026-Q4", and "rolling".
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterator, NamedTuple
from zoneinfo import ZoneInfo

from costwarden.budgets.model import Period

__all__ = ["PeriodSpan", "current_period", "iter_periods", "period_bounds", "period_key"]


class PeriodSpan(NamedTuple):
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    key: str


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (event time is UTC)")


def _local_start(period: Period, day: date) -> date:
    kind = period.kind
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)  # quarter


def _next_start(period: Period, start: date) -> date:
    kind = period.kind
    if kind == "day":
        return start + timedelta(days=1)
    if kind == "week":
        return start + timedelta(days=7)
    months = 1 if kind == "month" else 3
    y, m = divmod(start.month - 1 + months, 12)
    return date(start.year + y, m + 1, 1)


def _midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    # fold=0 picks the first 00:00 when it repeats, and when 00:00 falls in a DST gap it is read
    # with the offset before the change, which lands on the first instant of the day (PEP 495).
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)


def period_bounds(period: Period, at: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(start, end) in UTC of the period containing `at`; for rolling windows (at - w, at)."""
    _require_aware(at)
    at = at.astimezone(timezone.utc)
    seconds = period.rolling_seconds
    if seconds is not None:
        return at - timedelta(seconds=seconds), at
    first = _local_start(period, at.astimezone(tz).date())
    return _midnight_utc(first, tz), _midnight_utc(_next_start(period, first), tz)


def period_key(period: Period, start: datetime, tz: ZoneInfo | None = None) -> str:
    """Name of the period starting at `start`. Pass the file's `tz` when `start` is in UTC (as
    period_bounds returns it): Berlin's November starts on 31 October in UTC."""
    if not period.is_calendar:
        return "rolling"
    _require_aware(start)
    day = (start.astimezone(tz) if tz is not None else start).date()
    first = _local_start(period, day)
    kind = period.kind
    if kind == "day":
        return first.isoformat()
    if kind == "week":
        iso = first.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if kind == "month":
        return f"{first.year}-{first.month:02d}"
    return f"{first.year}-Q{(first.month - 1) // 3 + 1}"


def current_period(period: Period, at: datetime, tz: ZoneInfo) -> PeriodSpan:
    """Bounds and key of the period containing `at`, in one call."""
    start, end = period_bounds(period, at, tz)
    return PeriodSpan(start, end, period_key(period, start, tz))


def iter_periods(period: Period, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[PeriodSpan]:
    """Calendar periods overlapping [start, end), in order (for simulations and reports)."""
    if not period.is_calendar:
        raise ValueError("rolling windows have no calendar periods to iterate")
    _require_aware(start)
    _require_aware(end)
    span = current_period(period, start, tz)
    while span.start < end:
        yield span
        span = current_period(period, span.end, tz)
