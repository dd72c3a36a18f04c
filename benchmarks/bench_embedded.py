"""Embedded pipeline throughput, side by side in one run (ratios; the machine is shared and noisy).

    python benchmarks/bench_embedded.py [--events 50000]

Prints events/s for: (1) the processing core alone (validate+dedupe+price+attribute+rollup row+
evaluate budgets, no I/O), (2) the whole embedded pipeline into chDB (core + batched inserts with
rollup materialisation), (3) chDB's fastest bulk insert of the same stored rows: the pipeline's
usage_events exported to Parquet (not timed), then one `INSERT ... FROM INFILE ... FORMAT Parquet`
into a fresh database with the same views (no Python per row), and the ratios. (Until stop 9 the
baseline was `ChdbStore.insert`'s JSON path, which flattered the pipeline.)
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from costwarden import demo as gen
from costwarden.config import load_settings
from costwarden.embedded import EmbeddedPipeline


def pipeline(data_dir: Path, database: str, deliver: bool = False) -> EmbeddedPipeline:
    s = load_settings()
    s.data_dir = data_dir
    s.store.database = database
    s.budgets.budgets_file = Path(gen.demo_file("demo-budgets.yaml"))
    s.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    from costwarden.alerts.notifier import LogNotifier
    import logging

    logging.getLogger("costwarden.alerts.log").setLevel(logging.ERROR)
    return EmbeddedPipeline(s, notifier=LogNotifier(), deliver=deliver)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    end = gen.now_utc()
    start = end - timedelta(days=30)
    payloads = []
    for p in gen.events(start, end, seed=7):
        payloads.append(p)
        if len(payloads) >= args.events:
            break
    n = len(payloads)
    root = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    try:
        # (1) core only: a pipeline whose flush is skipped.
        p1 = pipeline(root, "core")
        t = time.perf_counter()
        proc = p1.processor
        rows = []
        bs = p1.settings.pipeline.batch_size
        for i in range(0, n, bs):  # the same staged steps as a batch, without the store
            items = [proc.parse(x, "bench") for x in payloads[i:i + bs]]
            proc.begin()
            enriched = proc.enrich(items)
            proc.charge(enriched.charges)
            proc.commit()
            rows += enriched.rows
        core_s = time.perf_counter() - t

        # (2) whole pipeline into chDB.
        p2 = pipeline(root, "full")
        t = time.perf_counter()
        p2.ingest(payloads, "bench")
        full_s = time.perf_counter() - t

        # (3) chDB's bulk insert of the same stored rows from Parquet, into a fresh database.
        from costwarden.store import migrate
        from costwarden.store.chdb_store import ChdbStore

        raw = ChdbStore(root / "chdb", database="rawbench")
        migrate(raw)
        parquet = root / "rows.parquet"
        p2.store.command(f"SELECT * FROM {{db}}.usage_events INTO OUTFILE '{parquet}' FORMAT Parquet")
        t = time.perf_counter()
        raw.command(f"INSERT INTO {{db}}.usage_events FROM INFILE '{parquet}' FORMAT Parquet")
        raw_s = time.perf_counter() - t
        stored = raw.query("SELECT count() AS c FROM {db}.usage_rollup_minute")[0]["c"]
        assert stored > 0, "the views did not fire on the bulk insert"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    core, full, rawr = n / core_s, n / full_s, len(rows) / raw_s
    print(f"events: {n:,} payloads ({len(rows):,} stored rows)")
    print(f"processing core, no I/O:        {core:>10,.0f} events/s")
    print(f"embedded pipeline into chDB:    {full:>10,.0f} events/s")
    print(f"chDB bulk insert (Parquet):     {rawr:>10,.0f} rows/s")
    print(f"ratio pipeline / bulk insert:   {full / rawr:>10.3f}")
    print(f"ratio core / bulk insert:       {core / rawr:>10.3f}")


if __name__ == "__main__":
    main()
