"""Forecast to period end, time to exhaustion, and spike detection. Pure, integer nanos.

Forecast (see budgets/README.md): spend + rate x time left, where the rate blends the trailing
recent window's rate with the period-to-date average, weighted by how much of the recent window
the period has already lived: w = min(1, elapsed / recent_seconds),
rate = w x recent_nanos / recent_seconds + (1 - w) x spend / elapsed.
Arithmetic is exact integer math on nano-dollars and microseconds (Decimal only at the edges,
never float); results are rounded half-even once, to whole nano-dollars.

Spike: a MinuteSeries keeps per-minute spend by event time for the last N minutes; a spike is
spend in the last `window_minutes` >= factor x the baseline rate x window_minutes, where the
baseline is the `baseline_minutes` just before the window (only minutes the series observed).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

from costwarden.budgets.model import SpikeRule

__all__ = [
    "MinuteSeries", "burn_rate", "exhaustion_time", "forecast_period_end", "is_spike",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def _us(td: timedelta) -> int:
    return td // _US


def _div_half_even(num: int, den: int) -> int:
    q, r = divmod(num, den)
    twice = 2 * r
    return q + 1 if twice > den or (twice == den and q % 2) else q


def _rate(spend_nanos: int, period_start: datetime, now: datetime, recent_nanos: int,
          recent_seconds: int) -> tuple[int, int]:
    """The blended burn rate as an exact fraction (numerator, denominator) of nanos per microsecond.
    With E = elapsed, R = recent window (both in µs), S = spend, Q = recent spend:
    E >= R > 0: Q / R;  R == 0: S / E;  else (E/R)(Q/R) + (1 - E/R)(S/E) = (E²Q + SR² - SER) / (ER²)."""
    e = _us(now - period_start)
    if e <= 0:
        return 0, 1
    r = recent_seconds * 1_000_000
    if r <= 0:
        num, den = spend_nanos, e
    elif e >= r:
        num, den = recent_nanos, r
    else:
        num, den = e * e * recent_nanos + spend_nanos * r * r - spend_nanos * e * r, e * r * r
    return (num, den) if num > 0 else (0, 1)


def burn_rate(spend_nanos: int, period_start: datetime, now: datetime, recent_nanos: int = 0,
              recent_seconds: int = 0) -> Decimal:
    """Nano-dollars per second the forecast projects: the recent window's rate blended with the
    period-to-date average (weight of the recent rate = min(1, elapsed / recent_seconds)).
    Never negative (credits do not make a forecast fall below actual spend)."""
    num, den = _rate(spend_nanos, period_start, now, recent_nanos, recent_seconds)
    with localcontext() as ctx:
        ctx.prec = 40
        return Decimal(num * 1_000_000) / Decimal(den)


def forecast_period_end(spend_nanos: int, period_start: datetime, period_end: datetime, now: datetime,
                        recent_nanos: int = 0, recent_seconds: int = 0) -> int:
    """Projected spend at period end in nanos: spend + rate x (period_end - now), computed exactly
    in integers and rounded half-even once. At or after the period end, and at its very start,
    the forecast is the actual spend."""
    if now >= period_end or now <= period_start:
        return spend_nanos
    num, den = _rate(spend_nanos, period_start, now, recent_nanos, recent_seconds)
    return spend_nanos + _div_half_even(num * _us(period_end - now), den)


def exhaustion_time(spend: int, amount: int, rate_nanos_per_s: Decimal | int, now: datetime) -> datetime | None:
    """When spend reaches `amount` (nanos) at the given rate, to the microsecond: `now` if it
    already has, None if the rate is zero or negative (or the date would pass year 9999)."""
    if spend >= amount:
        return now
    if rate_nanos_per_s <= 0:
        return None
    p, q = Decimal(rate_nanos_per_s).as_integer_ratio()
    usecs = _div_half_even((amount - spend) * q * 1_000_000, p)
    try:
        return now + timedelta(microseconds=usecs)
    except OverflowError:
        return None


def _minute(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return int((at - _EPOCH) // timedelta(minutes=1))


class MinuteSeries:
    """Spend per event-time minute over the last `max_minutes` (relative to the newest minute seen).

    Sums over any range are O(log n) (a Fenwick tree over a ring of minutes), so sum_last can run
    per event. `since` is when observation began (default: the first add); baselines count only
    minutes from then on, so a restarted process does not mistake its own start for a spike.
    """

    __slots__ = ("size", "origin", "latest", "_vals", "_tree")

    def __init__(self, max_minutes: int, since: datetime | None = None) -> None:
        if max_minutes <= 0:
            raise ValueError("max_minutes must be positive")
        self.size = max_minutes
        self.origin: int | None = _minute(since) if since is not None else None
        self.latest: int | None = None
        self._vals = [0] * max_minutes
        self._tree = [0] * (max_minutes + 1)

    @classmethod
    def for_rule(cls, rule: SpikeRule, since: datetime | None = None) -> "MinuteSeries":
        return cls(rule.window_minutes + rule.baseline_minutes, since)

    def _update(self, slot: int, delta: int) -> None:
        self._vals[slot] += delta
        i = slot + 1
        while i <= self.size:
            self._tree[i] += delta
            i += i & -i

    def _prefix(self, slot: int) -> int:  # sum of slots 0..slot
        total, i = 0, slot + 1
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total

    def _advance(self, minute: int) -> None:
        assert self.latest is not None
        if minute - self.latest >= self.size:
            self._vals = [0] * self.size
            self._tree = [0] * (self.size + 1)
        else:
            for m in range(self.latest + 1, minute + 1):
                slot = m % self.size
                if self._vals[slot]:
                    self._update(slot, -self._vals[slot])
        self.latest = minute

    def snapshot(self) -> tuple:
        return (self.origin, self.latest, list(self._vals), list(self._tree))

    def restore(self, state: tuple) -> None:
        self.origin, self.latest, vals, tree = state
        self._vals, self._tree = list(vals), list(tree)

    def add(self, at: datetime, nanos: int) -> bool:
        """Count `nanos` in the minute of `at`. False (ignored) when older than the kept horizon."""
        m = _minute(at)
        if self.latest is None:
            self.latest = m
            if self.origin is None:
                self.origin = m
        elif m > self.latest:
            self._advance(m)
        elif m <= self.latest - self.size:
            return False
        if nanos:
            self._update(m % self.size, nanos)
        return True

    def _range(self, lo: int, hi: int) -> int:
        """Spend in minutes lo..hi inclusive, clipped to what is kept."""
        if self.latest is None:
            return 0
        lo, hi = max(lo, self.latest - self.size + 1), min(hi, self.latest)
        if lo > hi:
            return 0
        a, b = lo % self.size, hi % self.size
        if a <= b:
            return self._prefix(b) - (self._prefix(a - 1) if a else 0)
        return self._prefix(self.size - 1) - self._prefix(a - 1) + self._prefix(b)

    def sum_last(self, minutes: int, now: datetime) -> int:
        """Spend in the `minutes` minutes ending with the minute of `now` (that minute included)."""
        n = _minute(now)
        return self._range(n - minutes + 1, n)

    def _baseline(self, window_minutes: int, baseline_minutes: int, now: datetime) -> tuple[int, int]:
        """(spend, observed minutes) of the baseline before the window ending at `now`."""
        if self.latest is None or self.origin is None:
            return 0, 0
        hi = _minute(now) - window_minutes
        lo = max(hi - baseline_minutes + 1, self.origin, self.latest - self.size + 1)
        if lo > hi:
            return 0, 0
        return self._range(lo, hi), hi - lo + 1

    def baseline_rate(self, window_minutes: int, baseline_minutes: int, now: datetime) -> Decimal | None:
        """Average nanos per minute over the baseline; None before any baseline minute was observed."""
        spend, observed = self._baseline(window_minutes, baseline_minutes, now)
        if observed == 0:
            return None
        with localcontext() as ctx:
            ctx.prec = 40
            return Decimal(spend) / observed


def is_spike(rule: SpikeRule, series: MinuteSeries, now: datetime) -> tuple[bool, int, int]:
    """(spiking, spend in the last window, spend the baseline predicts for the window), nanos.

    Spiking when window spend > 0, >= min_spend and >= factor x expected. With less observed
    baseline than one window (a fresh series) nothing is a spike yet. A baseline of zero spend
    makes any spend of at least min_spend a spike."""
    w = rule.window_minutes
    recent = series.sum_last(w, now)
    base_spend, observed = series._baseline(w, rule.baseline_minutes, now)
    if observed == 0:
        return False, recent, 0
    expected = _div_half_even(base_spend * w, observed)
    p, q = rule.factor.as_integer_ratio()
    spiking = (
        observed >= w
        and recent > 0
        and recent >= rule.min_spend_nanos
        and recent * observed * q >= p * base_spend * w
    )
    return spiking, recent, expected
