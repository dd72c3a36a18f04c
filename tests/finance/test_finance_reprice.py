"""Re-pricing: a price fixed mid-range; costs follow the version in force at each event's time;
raw events and every rollup agree afterwards; reports equal an independent sum at the new prices."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from conftest import sum_by, truth
from costwarden import demo as gen
from costwarden.config import load_settings
from costwarden.embedded import EmbeddedPipeline
from costwarden.finance.reports import finance_report
from costwarden.finance.reprice import reprice
from costwarden.streams.catalogue import PriceCatalogue

OLD_LINE = '          - {effective_from: 2024-08-06, input: "2.50", cache_read: "1.25", output: "10.00"}\n'
START = datetime(2026, 9, 30, 16, tzinfo=timezone.utc)
END = datetime(2026, 10, 1, 14, tzinfo=timezone.utc)
RANGE = (datetime(2026, 9, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))


def new_catalogue(tmp_path: Path) -> PriceCatalogue:
    text = (Path(gen.__file__).parent.parent / "streams" / "prices.yaml").read_text()
    assert OLD_LINE in text
    text = text.replace(OLD_LINE, OLD_LINE + OLD_LINE.replace("2024-08-06", "2026-10-01")
                        .replace('input: "2.50"', 'input: "5.00"'))
    text = text.replace(f'version: "{PriceCatalogue.default().version}"', 'version: "2026-10-fix.1"')
    f = tmp_path / "prices.yaml"
    f.write_text(text)  # charging unpriced events as the pipeline does (the default policy)
    return PriceCatalogue.from_yaml(f).with_unpriced_policy(load_settings().pricing.unpriced_policy())


def rollup_sums(store) -> list[tuple]:
    out = []
    for table in ("usage_events FINAL", "usage_events", "usage_rollup_minute", "usage_rollup_hour",
                  "usage_rollup_day"):
        count = "count()" if table.startswith("usage_events") else "sum(events)"
        r = store.query(f"SELECT {count} AS n, sum(cost_nanos) AS c FROM {{db}}.{table}")[0]
        out.append((r["n"], r["c"]))
    return out


def test_reprice_switches_raw_and_rollups_to_the_price_in_force(settings, tmp_path):
    settings.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    payloads = list(gen.events(START, END, seed=5, runaway=False))
    p = EmbeddedPipeline(settings, deliver=False)
    p.ingest(payloads)
    store = p.store
    cat = new_catalogue(tmp_path)
    before = truth(payloads, str(settings.budgets.rules_file))
    after = truth(payloads, str(settings.budgets.rules_file), catalogue=cat)
    moved = [(a, b) for a, b in zip(before, after) if a["cost_nanos"] != b["cost_nanos"]]
    assert moved and all(b["model"] == "gpt-4o" and b["at"] >= datetime(2026, 10, 1, tzinfo=timezone.utc)
                         for _, b in moved)

    dry = reprice(store, cat, *RANGE, dry_run=True)
    assert dry.changed == len(moved) and rollup_sums(store)[0][1] == sum(r["cost_nanos"] for r in before)

    seen = []
    res = reprice(store, cat, *RANGE, progress=seen.append)
    assert res.changed == len(moved) and res.partitions == ["202610"]
    assert sum(seen) == res.scanned == len(before)
    assert res.new_nanos - res.old_nanos == sum(b["cost_nanos"] - a["cost_nanos"] for a, b in moved)
    assert {k for k, c in res.by_model_team.items()} == {("gpt-4o", "unallocated")}

    expected_total = sum(r["cost_nanos"] for r in after)
    sums = rollup_sums(store)
    assert sums == [(len(after), expected_total)] * 5  # raw (deduplicated on disk too) == every rollup
    for dim in ("team", "model"):
        rows, _ = finance_report(store, [dim], *RANGE, compare=False)
        assert {r[dim]: r["cost_nanos"] for r in rows[:-1] if r["cost_nanos"]} == \
            {k: v for k, v in sum_by(after, dim, *RANGE).items() if v}
        assert rows[-1]["cost_nanos"] == expected_total
    versions = store.query("SELECT DISTINCT catalogue_version AS v FROM {db}.usage_events FINAL "
                           "WHERE priced_model = 'gpt-4o' AND occurred_at >= '2026-10-01'")
    assert [r["v"] for r in versions] == ["2026-10-fix.1"]
    old = store.query("SELECT DISTINCT catalogue_version AS v FROM {db}.usage_events FINAL "
                      "WHERE priced_model = 'gpt-4o' AND occurred_at < '2026-10-01'")
    assert [r["v"] for r in old] == [PriceCatalogue.default().version]  # September kept the price then in force

    again = reprice(store, cat, *RANGE)  # idempotent: nothing left to change
    assert again.changed == 0 and again.partitions == [] and rollup_sums(store) == sums
    p.close()
