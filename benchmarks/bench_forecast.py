"""Forecast backtest: MAPE of the weekday-seasonal method vs the ledger's linear burn rate, side by side.

    python benchmarks/bench_forecast.py [--days 365] [--seeds 5]

Synthetic daily spend with known answers (costwarden.finance.forecast_backtest): a working-week
pattern (weekends ~40%), with and without trend and noise. Every complete calendar month is a
period whose true total is known; each is forecast at midnight on days 8, 15 and 22 from the days
before only. MAPE = mean |forecast - truth| / truth, in percent.
"""
from __future__ import annotations

import argparse
import time
from datetime import date
from decimal import Decimal

from costwarden.finance.forecast_backtest import WORKWEEK, backtest, synthetic_history

FLAT = (Decimal(1),) * 7
SCENARIOS = [
    ("flat, no noise", FLAT, Decimal(0), Decimal(0)),
    ("working week, no noise", WORKWEEK, Decimal(0), Decimal(0)),
    ("working week, noise 15%", WORKWEEK, Decimal(0), Decimal("0.15")),
    ("working week, +0.2%/day trend, noise 15%", WORKWEEK, Decimal("0.002"), Decimal("0.15")),
    ("flat, noise 30%", FLAT, Decimal(0), Decimal("0.3")),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    print(f"{'scenario':<44} {'cases':>6} {'seasonal MAPE %':>16} {'linear MAPE %':>14}")
    t0 = time.perf_counter()
    for name, pattern, trend, noise in SCENARIOS:
        seasonal, linear, cases = [], [], 0
        for seed in range(a.seeds):
            bt = backtest(synthetic_history(date(2025, 1, 1), a.days, 250_000_000_000, pattern, trend, noise, seed))
            cases += bt.cases
            seasonal += bt.ape["weekday-seasonal"]
            linear += bt.ape["linear"]
        print(f"{name:<44} {cases:>6} {sum(seasonal) / len(seasonal):>16.2f} {sum(linear) / len(linear):>14.2f}")
    print(f"({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
