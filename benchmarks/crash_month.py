"""Random SIGKILLs while ingesting a realistic month, then re-delivery: are the totals exact?

    python benchmarks/crash_month.py [--days 30] [--batch 200] [--kills 8] [--max-entries N]

Runs `costwarden ingest` of the demo month once without faults, then again in a fresh data dir
killed with SIGKILL at random instants (the whole file re-delivered after each kill) until the
wanted number of kills happened, and a last complete run. Prints spend by team from both, and
whether every table (raw, each rollup, fired thresholds, alert outbox, controls, audit) is equal.
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costwarden.testing.crash import env_for, ingest, snapshot, write_events


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--max-entries", type=int, default=None, help="pipeline.dedupe_max_entries")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    extra = {"COSTWARDEN_PIPELINE__DEDUPE_MAX_ENTRIES": str(args.max_entries)} if args.max_entries else {}
    root = Path(tempfile.mkdtemp(prefix="cw-crash-month-"))
    try:
        events = write_events(root / "events.jsonl", days=args.days)
        lines = sum(1 for _ in open(events, "rb"))
        t = time.perf_counter()
        ref = ingest(root / "ref", events, args.batch, **extra)
        full_s = time.perf_counter() - t
        assert ref.returncode == 0, ref.stderr[-2000:]
        want = snapshot(root / "ref")
        rng = random.Random(args.seed)
        d, kills, runs = root / "killed", 0, 0
        d.mkdir()
        while kills < args.kills:  # each run re-delivers the whole file; stop once one finishes
            runs += 1
            p = subprocess.Popen([sys.executable, "-m", "costwarden.cli", "ingest", str(events), "--json"],
                                 env=env_for(d, args.batch, **extra), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, cwd=root)
            time.sleep(rng.uniform(1.0, max(2.0, full_s / 3)))
            if p.poll() is not None:
                break
            p.kill()
            p.wait()
            kills += 1
        last = ingest(d, events, args.batch, **extra)
        assert last.returncode == 0, last.stderr[-2000:]
        got = snapshot(d)
        print(f"{lines:,} payloads over {args.days} days, batch {args.batch}, "
              f"dedupe_max_entries {args.max_entries or 'default'}; {kills} SIGKILLs in {runs} runs")
        print(f"{'team':<16}{'events (ref)':>14}{'events':>10}{'cost n$ (ref)':>18}{'cost n$':>16}")
        for a, b in zip(want["raw_by_team"], got["raw_by_team"]):
            print(f"{a['team']:<16}{a['events']:>14}{b['events']:>10}{a['cost']:>18}{b['cost']:>16}")
        ok = True
        for table in want:
            same = want[table] == got[table]
            ok &= same
            print(f"  {table:<15} {'equal' if same else 'DIFFERENT'}")
        blocks = [r for r in got["controls"] if r["state"] == "block"]
        print(f"kill switches: {len(blocks)}; alerts queued: {len(got['alert_outbox'])} "
              f"(without faults: {len(want['alert_outbox'])}); thresholds fired: {len(got['budget_events'])}")
        print("EXACT" if ok else "MISMATCH")
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
