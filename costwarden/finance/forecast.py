"""Budget forecasts for finance: projected spend at period end and exhaustion time, method stated.

Method `weekday-seasonal` (the default here): AI traffic follows the working week (the demo's
weekends run at under half the weekday rate), so a straight burn rate overshoots on a Friday and
undershoots on a Monday. From the last 28 complete days, a factor per weekday is the mean spend on
that weekday over the mean daily spend; the base rate is the last 7 complete days' spend divided
by the sum of their factors; each remaining part of a day adds base x factor(weekday) x the share
of that day still ahead. With fewer than 14 days of history every factor is 1 (a plain 7-day
rate); with no complete day it falls back to the ledger's `linear` method (budgets/forecast.py:
trailing-24h rate blended with the period-to-date average). Exact Decimal, rounded once.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from costwarden.budgets.forecast import forecast_period_end

SEASONAL = "weekday-seasonal"
LINEAR = "linear"
METHODS = {SEASONAL: "last 7 complete days' rate x weekday factors from the last 28 days",
           LINEAR: "trailing 24 h rate blended with the period-to-date average (budgets/forecast.py)"}
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Projection:
    forecast_nanos: int
    exhausted_at: datetime | None  # None: not within the period at this rate
    method: str


def _day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def weekday_factors(daily: dict[date, int], today: date, weeks: int = 4) -> dict[int, Decimal]:
    days = [today - DAY * i for i in range(1, 7 * weeks + 1)]
    seen = [d for d in days if d in daily]
    if len(seen) < 14:
        return {wd: Decimal(1) for wd in range(7)}
    first = min(seen)
    days = [d for d in days if d >= first]  # days inside the history count, missing ones as zero
    mean = Decimal(sum(daily.get(d, 0) for d in days)) / len(days)
    if mean <= 0:
        return {wd: Decimal(1) for wd in range(7)}
    by_wd: dict[int, list[int]] = defaultdict(list)
    for d in days:
        by_wd[d.weekday()].append(daily.get(d, 0))
    return {wd: (Decimal(sum(by_wd[wd])) / len(by_wd[wd]) / mean) if by_wd[wd] else Decimal(1)
            for wd in range(7)}


def _segments(now: datetime, end: datetime):
    """(weekday, share of the UTC day) for every piece of [now, end)."""
    t = now
    while t < end:
        nxt = min(_day_start(t.date()) + DAY, end)
        yield t, nxt, t.weekday(), Decimal((nxt - t) // timedelta(microseconds=1)) / Decimal(86_400_000_000)
        t = nxt


def project(daily: dict[date, int], spend_nanos: int, amount_nanos: int, period_start: datetime,
            period_end: datetime, now: datetime) -> Projection:
    """Spend at period end and when `amount` runs out, from complete days before `now`'s day
    (`now` when it is already spent: burn.crossed_at finds when)."""
    today = now.date()
    recent = [today - DAY * i for i in range(1, 8)]
    first = min(daily) if daily else today
    known = [d for d in recent if d >= first]  # inside the history: a day without spend counts as 0
    if now >= period_end or not any(daily.get(d) for d in recent):
        fc = linear(daily, spend_nanos, period_start, period_end, now)
        return Projection(fc, now if spend_nanos >= amount_nanos else None, LINEAR)
    with localcontext() as ctx:
        ctx.prec = 50
        f = weekday_factors(daily, today)
        weight = sum(f[d.weekday()] for d in known) or Decimal(1)
        base = Decimal(sum(daily.get(d, 0) for d in known)) / weight
        total = Decimal(spend_nanos)
        exhausted = now if spend_nanos >= amount_nanos else None
        for a, b, wd, share in _segments(now, period_end):
            add = base * f[wd] * share
            if exhausted is None and add > 0 and total + add >= amount_nanos:
                us = Decimal((b - a) // timedelta(microseconds=1)) * (amount_nanos - total) / add
                exhausted = a + timedelta(seconds=int(us // 1_000_000))
            total += add
        fc = int(total.quantize(Decimal(1), ROUND_HALF_EVEN))
    return Projection(fc, exhausted, SEASONAL)


def linear(daily: dict[date, int], spend_nanos: int, period_start: datetime, period_end: datetime,
           now: datetime) -> int:
    """The ledger's method (recent window: the last complete day; none without one)."""
    yesterday = now.date() - DAY
    if yesterday in daily:
        return forecast_period_end(spend_nanos, period_start, period_end, now, daily[yesterday], 86_400)
    return forecast_period_end(spend_nanos, period_start, period_end, now)
