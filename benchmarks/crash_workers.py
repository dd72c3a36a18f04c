"""Two distributed workers SIGKILLed at random over a realistic month: are the totals exact?

    python benchmarks/crash_workers.py [--days 31] [--kills 8] [--resend 0.02] [--seed 5] [--no-cross]

Servers: a real Kafka broker (Kafka's jars, or $KAFKA_BOOTSTRAP_SERVERS) and ClickHouse through
the HTTP test adapter over chDB (or $COSTWARDEN_BENCH_CLICKHOUSE_URL). Two `costwarden worker`
processes in one group, with a small dedupe window (`pipeline.dedupe_horizon_hours` 1,
`dedupe_max_entries` 1000) and the demo budgets, alerting to a local HTTP receiver through Apprise
json:// channels.

The input is the demo month (`costwarden.demo`: six teams, ~1% gateway re-deliveries, invalid
payloads, the runaway agent) plus `--resend` of its valid events sent again: half 5-200 lines
after their first copy, a quarter 2,000-20,000 lines later (hours to days of event time, far
older than the window), a quarter after the stream on another partition than their first copy.
It is produced over ~half a minute while either worker is SIGKILLed at random (0.5-4 s after
the group stores again following the previous kill) and restarted at once.

Then it checks, against the same lines run through the core in this process (one pass, no
faults): usage_events FINAL, every rollup (report rollups, budget rollups) and `costwarden report
--by team` equal to it; each threshold fired once (budget_events: no key twice; every threshold
on actual spend that the month crosses, fired); one block (controls, control_audit); each alert
delivered exactly once (one POST per alert_outbox row and channel). Prints the figures and
EXACT or MISMATCH; where a rollup exceeds FINAL, the minute buckets and the re-sent events in them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "distributed"))
import dist_harness as h  # noqa: E402

from costwarden import demo  # noqa: E402
from costwarden.distributed.producer import produce, record_key  # noqa: E402
from costwarden.distributed.topics import key_partition  # noqa: E402
from costwarden.store.clickhouse_store import ClickHouseStore  # noqa: E402
from costwarden.testing.snapshot import rollup_totals  # noqa: E402

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
CHANNELS = ("finance", "oncall-search", "oncall-research", "platform")  # the demo budgets' channels
PARTITIONS = 4  # dist_harness.worker_env


@contextlib.contextmanager
def servers(tmp: Path):
    from costwarden.testing.clickhouse_http import serve_clickhouse_http
    from costwarden.testing.kafka_broker import kafka_broker_session

    with kafka_broker_session() as broker:
        url = os.environ.get("COSTWARDEN_BENCH_CLICKHOUSE_URL")
        if url:
            yield broker.bootstrap, url
        else:
            with serve_clickhouse_http(tmp / "ch") as url:
                yield broker.bootstrap, url


def month(days: int, seed: int, rate: float, rng: random.Random, cross_partition: bool = True):
    """The demo month with re-sends: (stream lines, cross-partition records, counts by kind,
    event id -> re-send kind)."""
    base = list(demo.events(START, START + timedelta(days=days), seed=seed))
    valid = [i for i, ln in enumerate(base) for k, ok in [record_key(ln)] if ok and not k.endswith(b"-bad")]
    picked = rng.sample(valid, int(len(base) * rate))
    inserts: dict[int, list[bytes]] = {}
    cross, kinds, kind_of = [], Counter(), {}
    for n, i in enumerate(picked):
        kind = ("near", "near", "far", "cross" if cross_partition else "far")[n % 4]
        kinds[kind] += 1
        kind_of[record_key(base[i])[0].decode()] = kind
        if kind == "cross":
            key = record_key(base[i])[0]
            cross.append((key, base[i], (key_partition(key, PARTITIONS) + 1) % PARTITIONS))
            continue
        at = i + (rng.randint(5, 200) if kind == "near" else rng.randint(2000, 20000))
        inserts.setdefault(min(at, len(base)), []).append(base[i])
    stream = []
    for i, ln in enumerate(base):
        stream.extend(inserts.get(i, ()))
        stream.append(ln)
    stream.extend(inserts.get(len(base), ()))
    return stream, cross, kinds, kind_of


def ground_truth(lines: list[bytes]) -> dict:
    """The core over every line in one pass, in this process: rows, the thresholds and controls."""
    from costwarden.budgets.controls import ControlBook
    from costwarden.budgets.evaluate import BudgetLedger
    from costwarden.budgets.loader import load_budgets
    from costwarden.streams.attribution import Attributor, load_rules
    from costwarden.components import load_catalogue
    from costwarden.config import load_settings
    from costwarden.streams.dedupe import DedupeWindow
    from costwarden.streams.process import Processor

    # the catalogue as the workers build it (components.load_catalogue: the unpriced policy included)
    proc = Processor(load_catalogue(load_settings()), Attributor(load_rules(h.RULES)),
                     BudgetLedger(load_budgets(h.BUDGETS)), ControlBook(),
                     DedupeWindow(timedelta(days=3650), 10_000_000))
    events = cost = dead = 0
    teams: Counter = Counter()
    signals, changes = [], []
    for i in range(0, len(lines), 5000):
        items = [proc.parse(ln, "truth") for ln in lines[i:i + 5000]]
        proc.begin()
        out = proc.enrich(items)
        s, c = proc.charge(out.charges)
        proc.commit()
        events += len(out.rows)
        cost += sum(r["cost_nanos"] for r in out.rows)
        dead += len(out.dead)
        for r in out.rows:
            teams[r["team"]] += r["cost_nanos"]
        signals += s
        changes += c
    return {"events": events, "cost_nanos": cost, "dead": dead, "teams": dict(teams),
            "actual": sorted(s.key for s in signals if s.kind == "actual"),
            "forecast": sorted(s.key for s in signals if s.kind == "forecast"),
            "spike": sorted(s.key for s in signals if s.kind == "spike"),
            "blocks": sorted({c.after.workflow for c in changes if c.after.state.value == "block"})}


def extra_in_rollups(store, kind_of: dict[str, str]) -> list[str]:
    """Where a rollup counts more than usage_events FINAL: each differing minute bucket, and the
    events in it that were re-sent (with how) and whose cost the difference could be."""
    diff = store.query(
        "SELECT toString(r.bucket) AS b, r.workflow AS workflow, r.e - f.e AS events, r.c - f.c AS cost FROM "
        "(SELECT bucket, workflow, sum(events) AS e, sum(cost_nanos) AS c FROM {db}.usage_rollup_minute "
        " GROUP BY bucket, workflow) AS r LEFT JOIN "
        "(SELECT toStartOfMinute(occurred_at) AS bucket, workflow, count() AS e, sum(cost_nanos) AS c "
        " FROM {db}.usage_events FINAL GROUP BY bucket, workflow) AS f USING (bucket, workflow) "
        "WHERE r.e != f.e OR r.c != f.c ORDER BY b")
    out = []
    for d in diff:
        ids = store.query(
            "SELECT event_id, cost_nanos FROM {db}.usage_events FINAL WHERE toStartOfMinute(occurred_at) = "
            f"toDateTime('{d['b']}', 'UTC') AND workflow = '{d['workflow']}'")
        resent = [f"{r['event_id']} ({kind_of[r['event_id']]}, {r['cost_nanos']} n$)" for r in ids
                  if r["event_id"] in kind_of]
        out.append(f"{d['b']} {d['workflow']}: {int(d['events']):+} events {int(d['cost']):+} n$; "
                   f"re-sent there: {', '.join(resent) or 'none'}")
    return out


def report_by_team(url: str, database: str, data_dir: Path, period: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTWARDEN_")}
    env.update({"COSTWARDEN_STORE__URL": url, "COSTWARDEN_STORE__DATABASE": database,
                "COSTWARDEN_DATA_DIR": str(data_dir)})
    p = subprocess.run([sys.executable, "-m", "costwarden.cli", "report", "--by", "team", "--period", period,
                        "--format", "json"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"costwarden report failed ({p.returncode}): {p.stderr[-1500:]}")
    return {r["team"]: int(r["cost_nanos"]) for r in json.loads(p.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--resend", type=float, default=0.02, help="share of valid events sent again")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=2500, help="lines per produce call (one every 0.5 s)")
    ap.add_argument("--keep", action="store_true", help="keep the data and logs (always kept on MISMATCH)")
    ap.add_argument("--no-cross", action="store_true",
                    help="no re-sends on another partition (that quarter goes 2,000-20,000 lines later instead)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    stream, cross, kinds, kind_of = month(args.days, 42, args.resend, rng, cross_partition=not args.no_cross)
    truth = ground_truth(stream + [ln for _, ln, _ in cross])
    tmp = Path(tempfile.mkdtemp(prefix="cw-crash-workers-"))
    receiver = h.ChannelReceiver()
    ok = True
    with servers(tmp) as (bootstrap, url):
        env = h.worker_env(bootstrap, url, h.unique("cw"), tmp / "a", h.unique("cw"),
                           COSTWARDEN_PIPELINE__DEDUPE_HORIZON_HOURS=1, COSTWARDEN_PIPELINE__DEDUPE_MAX_ENTRIES=1000,
                           COSTWARDEN_ALERTS__CHANNELS=json.dumps({c: receiver.url(c) for c in CHANNELS}),
                           COSTWARDEN_ALERTS__DELIVERY_INTERVAL_S=0.5)
        workers = [h.Worker(env, tmp / "a.log"), h.Worker(dict(env, COSTWARDEN_DATA_DIR=str(tmp / "b")), tmp / "b.log")]
        store = ClickHouseStore.from_url(url, env["COSTWARDEN_STORE__DATABASE"])
        kills: list[tuple[float, str, int]] = []
        t0 = time.monotonic()
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.metrics_port(120)
            time.sleep(8)  # both members in the group
            done = threading.Event()

            def producer():
                for i in range(0, len(stream), args.chunk):
                    produce(bootstrap, h.topic(env, "raw"), stream[i:i + args.chunk])
                    time.sleep(0.5)
                h.produce_to(bootstrap, h.topic(env, "raw"), cross)
                done.set()
            t_prod = threading.Thread(target=producer, daemon=True)
            t_prod.start()

            def stored() -> int:
                return int(store.query("SELECT count() AS n FROM {db}.usage_events FINAL")[0]["n"])
            while len(kills) < args.kills:
                time.sleep(rng.uniform(0.5, 4.0))
                n = stored()
                if done.is_set() and n >= truth["events"]:
                    break
                i = rng.randrange(2)
                workers[i].kill()
                kills.append((time.monotonic() - t0, "ab"[i], n))
                time.sleep(rng.uniform(0.0, 1.5))
                workers[i].start()
                # the next kill once the group stores again (a kill during the rebalance that the last
                # one started would only lengthen the pause)
                with contextlib.suppress(AssertionError):
                    h.wait_for(lambda: stored() > n or stored() >= truth["events"], 60, interval=0.3)
            t_prod.join()
            h.wait_for(lambda: stored() >= truth["events"], 900, interval=1, what="every event stored")
            t_stored = time.monotonic() - t0

            def all_sent():
                st = Counter(r["status"] for r in store.query("SELECT status FROM {db}.alert_outbox FINAL"))
                return set(st) == {"sent"} and st
            h.wait_for(all_sent, 180, interval=1, what="every alert sent")
            time.sleep(5)  # anything stored, fired or sent twice would be there by now
            rollups = rollup_totals(store)
            final_by_team = {r["team"]: (int(r["events"]), int(r["cost"])) for r in store.query(
                "SELECT team, count() AS events, sum(cost_nanos) AS cost FROM {db}.usage_events FINAL GROUP BY team")}
            dead = int(store.query("SELECT count() AS n FROM {db}.dead_letters FINAL")[0]["n"])
            fired = store.query("SELECT key, kind, count() AS copies FROM {db}.budget_events GROUP BY key, kind")
            controls = store.query("SELECT workflow, state, budget_id FROM {db}.controls FINAL ORDER BY workflow")
            # by seq (the order written): `at` is the evaluated record's event time, which can go
            # backwards between budget batches when one raw partition lags behind another
            audit = store.query("SELECT workflow, from_state, to_state FROM {db}.control_audit ORDER BY workflow, seq")
            outbox = store.query("SELECT key, channel FROM {db}.alert_outbox FINAL")
            extra = extra_in_rollups(store, kind_of) if any(v != rollups["final"] for v in rollups.values()) else []
        finally:
            for w in workers:
                w.stop()
            receiver.stop()
        report = report_by_team(url, env["COSTWARDEN_STORE__DATABASE"], tmp / "report", f"{START:%Y-%m}")

    # --- figures ------------------------------------------------------------------------------
    def check(label: str, good: bool, detail: str = "") -> None:
        nonlocal ok
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label}{(': ' + detail) if detail else ''}")

    lines = len(stream) + len(cross)
    print(f"{lines:,} lines over {args.days} days ({sum(kinds.values()):,} re-sent: {kinds['near']} 5-200 lines "
          f"later, {kinds['far']} 2,000-20,000 lines later, {kinds['cross']} after the stream on another partition); "
          f"dedupe window 1 h / 1,000 ids; 2 workers, {len(kills)} SIGKILLs")
    print("kills (s after start, worker, events stored then): "
          + ", ".join(f"{t:.0f}s {w} {n:,}" for t, w, n in kills))
    print(f"every event stored after {t_stored:.0f}s ({truth['events'] / t_stored:,.0f} events/s end to end)")
    final = rollups["final"]
    print(f"\n{'':<22}{'events':>10}{'cost n$':>16}")
    print(f"{'ground truth':<22}{truth['events']:>10,}{truth['cost_nanos']:>16,}")
    for name, (e, c) in rollups.items():
        print(f"{name:<22}{e:>10,}{c:>16,}")
    print(f"\n{'team':<14}{'FINAL events':>13}{'FINAL n$':>16}{'report n$':>16}{'truth n$':>16}")
    for team in sorted(set(final_by_team) | set(truth["teams"])):
        e, c = final_by_team.get(team, (0, 0))
        print(f"{team:<14}{e:>13,}{c:>16,}{report.get(team, 0):>16,}{truth['teams'].get(team, 0):>16,}")
    print(f"{'TOTAL':<14}{final[0]:>13,}{final[1]:>16,}{report.get('TOTAL', 0):>16,}{truth['cost_nanos']:>16,}")

    by_kind: dict[str, list[str]] = {}
    for r in fired:
        by_kind.setdefault(r["kind"], []).append(r["key"])
    copies = Counter({r["key"]: int(r["copies"]) for r in fired})
    posts = Counter((ch, key) for _, ch, key in receiver.received)
    rows = Counter((r["channel"], r["key"]) for r in outbox)
    blocks = [r for r in controls if r["state"] == "block"]
    print(f"\nthresholds fired: {len(fired)} keys ({', '.join(f'{k} {len(v)}' for k, v in sorted(by_kind.items()))}); "
          f"one pass without faults: actual {len(truth['actual'])}, forecast {len(truth['forecast'])}, "
          f"spike {len(truth['spike'])}")
    print(f"controls: {[(r['workflow'], r['state'], r['budget_id']) for r in controls]}")
    print(f"control_audit: {[(r['workflow'], r['from_state'], r['to_state']) for r in audit]}")
    print(f"alerts: {len(outbox)} outbox rows, {sum(posts.values())} POSTs received, "
          f"{sum(1 for v in posts.values() if v > 1)} delivered more than once, "
          f"{len(set(rows) - set(posts))} never delivered")
    print("\nchecks:")
    pair = (truth["events"], truth["cost_nanos"])
    check("usage_events FINAL = ground truth", final == pair, f"{final} vs {pair}")
    check("every rollup = usage_events FINAL", all(v == final for v in rollups.values()),
          ", ".join(f"{k} {v[0] - final[0]:+} events {v[1] - final[1]:+} n$"
                    for k, v in rollups.items() if v != final))
    check("report --by team = usage_events FINAL by team",
          {t: c for t, (_, c) in final_by_team.items()} == {t: c for t, c in report.items() if t != "TOTAL"}
          and report.get("TOTAL") == final[1])
    check("dead letters = ground truth", dead == truth["dead"], f"{dead} vs {truth['dead']}")
    check("each threshold fired once", all(v == 1 for v in copies.values()),
          ", ".join(f"{k} x{v}" for k, v in copies.items() if v > 1))
    actual = sorted(by_kind.get("actual", []))
    check("every threshold on actual spend the month crosses fired", actual == truth["actual"],
          f"{actual} vs {truth['actual']}")
    check("one block", len(blocks) == 1 and [r["workflow"] for r in blocks] == truth["blocks"]
          and sum(1 for a in audit if a["to_state"] == "block") == 1,
          f"{[r['workflow'] for r in blocks]} vs {truth['blocks']}")
    check("each alert delivered exactly once", set(posts) == set(rows) and all(v == 1 for v in posts.values()),
          ", ".join(f"{ch}/{k} x{v}" for (ch, k), v in posts.items() if v > 1))
    if any(v > 1 for v in posts.values()):
        for (ch, k), v in posts.items():
            if v > 1:
                times = [t - t0 for t, c, kk in receiver.received if (c, kk) == (ch, k)]
                print(f"      {ch}/{k} POSTed at {', '.join(f'{t:.2f}s' for t in times)}")
    if extra:
        print("      minute buckets where the rollup exceeds FINAL, and the re-sent events in them "
              "(kind: how they were re-sent):")
        for line in extra:
            print(f"      {line}")
    print("EXACT" if ok else "MISMATCH")
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # the chDB data (open it with chdb.session.Session(DIR/ch)), the journal, both workers' logs
        print(f"data and worker logs kept in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
