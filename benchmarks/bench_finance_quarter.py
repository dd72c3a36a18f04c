"""The finance tools on a generated quarter of demo traffic, timed side by side, totals checked.

    python benchmarks/bench_finance_quarter.py [--months 3] [--keep DIR]

Generates Aug-Oct 2026 with costwarden.demo.events() (one runaway agent per month), ingests it
through the embedded pipeline (demo budgets and rules), then runs: the showback report by team
and by workflow, the FOCUS export (Parquet), the HTML report, the budget simulation over the
quarter, and a re-pricing after a gpt-4o price change on Sep 15. Prints seconds per step and
checks every total against the raw events' sum.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from costwarden import demo as gen
from costwarden.budgets.loader import load_budgets
from costwarden.config import load_settings
from costwarden.embedded import EmbeddedPipeline
from costwarden.finance.focus import focus_rows, write_focus
from costwarden.finance.html import build
from costwarden.finance.reports import finance_report
from costwarden.finance.reprice import reprice
from costwarden.finance.simulate import simulate
from costwarden.money import NANOS_PER_USD, from_nanos
from costwarden.streams.catalogue import PriceCatalogue

OLD = '          - {effective_from: 2024-08-06, input: "2.50", cache_read: "1.25", output: "10.00"}\n'


def step(name: str, fn):
    t = time.perf_counter()
    out = fn()
    print(f"{name:<46} {time.perf_counter() - t:8.2f}s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None)
    a = ap.parse_args()
    tmp = a.keep or Path(tempfile.mkdtemp(prefix="cw-quarter-"))
    s = load_settings()
    s.data_dir, s.store.database = tmp, "quarter"
    s.budgets.budgets_file = Path(gen.demo_file("demo-budgets.yaml"))
    s.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    p = EmbeddedPipeline(s, deliver=False)
    start = datetime(2026, 8, 1, tzinfo=timezone.utc)
    months = [start]
    for _ in range(a.months):
        months.append((months[-1] + timedelta(days=32)).replace(day=1))
    end = months[-1]

    def ingest():
        n = 0
        for m0, m1 in zip(months, months[1:]):
            n += p.ingest(gen.events(m0, m1, seed=m0.month), "quarter").accepted
        return n

    n = step("ingest (embedded pipeline, chDB)", ingest)
    store = p.store
    raw = store.query("SELECT sum(cost_nanos) AS c FROM {db}.usage_events FINAL")[0]["c"]
    print(f"{n:,} events, ${from_nanos(raw)}")
    rows, _ = step("report by team (quarter, with previous quarter)", lambda: finance_report(store, ["team"], start, end))
    assert rows[-1]["cost_nanos"] == raw
    rows, _ = step("report by team,workflow,model", lambda: finance_report(store, ["team", "workflow", "model"], start, end))
    assert rows[-1]["cost_nanos"] == raw
    frows = step("FOCUS rows (quarter)", lambda: focus_rows(store, start, end))
    step("FOCUS parquet write", lambda: write_focus(frows, "parquet", tmp / "focus.parquet"))
    assert sum(r["BilledCost"] for r in frows) * NANOS_PER_USD == raw
    html = step("HTML report (quarter, budgets at end)", lambda: build(store, load_budgets(s.budgets.budgets_file),
                                                                          start, end, end, "quarter"))
    (tmp / "report.html").write_text(html)
    sim = step("budgets simulate (quarter)", lambda: simulate(store, load_budgets(s.budgets.budgets_file), start, end))
    assert sim.spend_nanos == raw
    print(f"  simulated: {sum(len(o.fired) for o in sim.budgets.values())} thresholds fired, "
          f"{sum(len(o.tripped) for o in sim.budgets.values())} controls tripped, refused ${from_nanos(sim.refused_nanos)}")
    text = (Path(gen.__file__).parent.parent / "streams" / "prices.yaml").read_text()
    cat_file = tmp / "prices.yaml"
    cat_file.write_text(text.replace(OLD, OLD + OLD.replace("2024-08-06", "2026-09-15").replace('"2.50"', '"5.00"')))
    res = step("reprice (quarter, gpt-4o changed Sep 15)",
               lambda: reprice(store, PriceCatalogue.from_yaml(cat_file), start, end))
    new_raw = store.query("SELECT sum(cost_nanos) AS c FROM {db}.usage_events FINAL")[0]["c"]
    day = store.query("SELECT sum(cost_nanos) AS c FROM {db}.usage_rollup_day")[0]["c"]
    minute = store.query("SELECT sum(cost_nanos) AS c FROM {db}.usage_rollup_minute")[0]["c"]
    assert new_raw == day == minute == raw + res.new_nanos - res.old_nanos
    rows, _ = finance_report(store, ["team"], start, end)
    assert rows[-1]["cost_nanos"] == new_raw
    print(f"  re-priced {res.changed:,} of {res.scanned:,} events in {res.partitions}; "
          f"delta ${from_nanos(res.new_nanos - res.old_nanos)}; raw == rollups == report")
    p.close()
    if a.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp} (report.html, focus.parquet)")


if __name__ == "__main__":
    main()
