"""Backtest of the forecast methods on synthetic daily spend whose answers are known.

`synthetic_history` makes a daily series (weekday pattern, optional trend and seeded noise, whole
nano-dollars); every calendar month of it is a period whose true total is known. At each cutoff
day of a month (midnight UTC), both methods forecast the month's end from the days before the
cutoff only; the absolute percentage error against the true total is averaged (MAPE).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from costwarden.finance.forecast import linear, project

WORKWEEK = (Decimal("1.15"), Decimal("1.1"), Decimal("1.1"), Decimal("1.1"), Decimal("1.05"),
            Decimal("0.45"), Decimal("0.4"))


def synthetic_history(start: date, days: int, base_nanos: int, weekday: tuple[Decimal, ...] = WORKWEEK,
                      trend_per_day: Decimal = Decimal(0), noise: Decimal = Decimal(0),
                      seed: int = 7) -> dict[date, int]:
    rng = random.Random(seed)
    out = {}
    for i in range(days):
        d = start + timedelta(days=i)
        level = Decimal(base_nanos) * (1 + trend_per_day * i) * weekday[d.weekday()]
        if noise:
            level *= 1 + noise * (Decimal(rng.randint(-1000, 1000)) / 1000)
        out[d] = int(level)
    return out


@dataclass
class Backtest:
    cases: int = 0
    ape: dict[str, list[Decimal]] = field(default_factory=lambda: {"weekday-seasonal": [], "linear": []})

    def mape(self, method: str) -> Decimal:
        errs = self.ape[method]
        return (sum(errs) / len(errs)).quantize(Decimal("0.01")) if errs else Decimal(0)


def _month_end(d: date) -> date:
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def backtest(daily: dict[date, int], cutoffs: tuple[int, ...] = (8, 15, 22), min_history_days: int = 28) -> Backtest:
    bt = Backtest()
    first, last = min(daily), max(daily)
    m = first.replace(day=1)
    while m <= last:
        end = _month_end(m)
        if m >= first and end - timedelta(days=1) <= last:
            truth = sum(v for d, v in daily.items() if m <= d < end)
            for day in cutoffs:
                cut = m.replace(day=day)
                if (cut - first).days < min_history_days or truth == 0:
                    continue
                past = {d: v for d, v in daily.items() if d < cut}
                spend = sum(v for d, v in past.items() if d >= m)
                ps, pe = (datetime(x.year, x.month, x.day, tzinfo=timezone.utc) for x in (m, end))
                now = datetime(cut.year, cut.month, cut.day, tzinfo=timezone.utc)
                seasonal = project(past, spend, truth, ps, pe, now).forecast_nanos
                lin = linear(past, spend, ps, pe, now)
                bt.cases += 1
                bt.ape["weekday-seasonal"].append(abs(Decimal(seasonal - truth)) * 100 / truth)
                bt.ape["linear"].append(abs(Decimal(lin - truth)) * 100 / truth)
        m = end
    return bt
