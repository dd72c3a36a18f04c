"""Crash at every write boundary of a distributed worker's commits, for real.

A `costwarden worker` subprocess SIGKILLs itself (COSTWARDEN_FAULT, costwarden/testing/faults.py)
before each write of the first raw commit (its journal entry, usage_events, dead_letters, the
journal's done row) and of the first budget commit (journal entry, budget_events, alert_outbox,
controls, control_audit, done row), inside the first usage_events INSERT, and after the last
write of the first budget commit. A worker without the fault then finishes the same topics:
re-delivery from the committed offsets, the dead worker's journal entries re-applied on takeover.
Every table must equal the run without a fault (raw events, each rollup by bucket, dead letters,
fired thresholds, the alert outbox, controls and the audit trail), every rollup must equal
`usage_events FINAL`, each threshold fires once and every alert is delivered.

One small dataset (400 demo events + invalid payloads) crosses a workflow budget's throttle and
block and a team budget's two notify thresholds. It is produced in two phases: the second only
after the first fired 25% and 50% (throttle), so the control path is allow -> throttle -> block in
every run however the records are batched. The cases run concurrently (one broker and one
ClickHouse endpoint, a database, topic set and consumer group of their own each) and are then
checked one test each.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import dist_harness as h
from costwarden.distributed.producer import produce
from costwarden.store.clickhouse_store import ClickHouseStore
from costwarden.testing.snapshot import rollup_totals, snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.integration]

# name -> (COSTWARDEN_FAULT, COSTWARDEN_FAULT_TABLE, COSTWARDEN_FAULT_OWNER[, COSTWARDEN_FAULT_DELAY_MS]).
# Counts are per writer (one per partition and stage), so "N-th insert into T" is the N-th of the
# first writer to get there. A worker's first INSERT into usage_events through the HTTP endpoint
# takes a few hundred ms here (the client describes the table first): killed 2 ms into it, the
# request is cut short and nothing is stored; 150 ms into it, the server usually has the block and
# stores it, with its rollups, for a client that is gone (the summary printed with -s shows which).
CASES: dict[str, tuple] = {
    "raw-before-journal-entry": ("kill-before:1", "commit_journal", "raw:"),
    "raw-before-usage_events": ("kill-before:1", "usage_events", None),
    "raw-before-dead_letters": ("kill-before:1", "dead_letters", None),
    "raw-before-journal-done": ("kill-before:2", "commit_journal", "raw:"),
    "raw-inside-usage_events-2ms": ("kill-inside:1", "usage_events", None, 2),
    "raw-inside-usage_events-150ms": ("kill-inside:1", "usage_events", None, 150),
    "budget-before-journal-entry": ("kill-before:1", "commit_journal", "budget:"),
    "budget-before-budget_events": ("kill-before:1", "budget_events", None),
    "budget-before-alert_outbox": ("kill-before:1", "alert_outbox", None),
    "budget-before-controls": ("kill-before:1", "controls", None),
    "budget-before-control_audit": ("kill-before:1", "control_audit", None),
    "budget-before-journal-done": ("kill-before:2", "commit_journal", "budget:"),
    "budget-after-journal-done": ("kill-after:2", "commit_journal", "budget:"),
}
PARALLEL = 5          # cases at a time (2 cores: worker start-up is the CPU cost)
PHASE_TIMEOUT = 120   # s, per phase and case
INVALID = [b"not json at all", b'{"event_id": "bad-date", "occurred_at": "yesterday", "provider": "openai"}',
           b'{"event_id": "bad-tokens", "occurred_at": "2026-03-02T01:00:00Z", "source": "gateway", '
           b'"provider": "openai", "model": "gpt-4o-mini", "tokens": {"input": -5}}']

BUDGETS = """version: 1
timezone: UTC
budgets:
  - id: wf-cap
    scope: {{workflow: ticket-triage}}
    period: month
    amount: '{cap}'
    thresholds:
      - {{at: 25, actions: [{{notify: [ops]}}]}}
      - {{at: 50, actions: [{{notify: [ops]}}, {{throttle: {{rate_per_min: '5'}}}}]}}
      - {{at: 100, actions: [{{notify: [ops]}}, {{block: true}}]}}
  - id: team-search
    scope: {{team: search}}
    period: month
    amount: '{search}'
    thresholds:
      - {{at: 50, actions: [{{notify: [ops]}}]}}
      - {{at: 80, actions: [{{notify: [ops]}}]}}
"""
FIRED = {"wf-cap": {"25%", "50%", "100%"}, "team-search": {"50%", "80%"}}


def priced(lines: list[bytes]) -> tuple[list[dict], int]:
    """Rows and dead-letter count of the distinct valid events, priced by the core in this process."""
    from costwarden.budgets.controls import ControlBook
    from costwarden.budgets.evaluate import BudgetLedger
    from costwarden.budgets.model import BudgetFile
    from costwarden.streams.attribution import Attributor, load_rules
    from costwarden.components import load_catalogue
    from costwarden.config import load_settings
    from costwarden.streams.dedupe import DedupeWindow
    from costwarden.streams.process import Processor

    # the catalogue as the workers build it (components.load_catalogue: the unpriced policy included)
    proc = Processor(load_catalogue(load_settings()), Attributor(load_rules(h.RULES)),
                     BudgetLedger(BudgetFile(version=1, budgets=[])), ControlBook(),
                     DedupeWindow(timedelta(days=3650), 10_000_000))
    items = [proc.parse(line, "truth") for line in lines]
    proc.begin()
    out = proc.enrich(items)
    proc.commit()
    return out.rows, len(out.dead)


def dollars(nanos: int) -> str:
    return str(Decimal(nanos) / Decimal(1_000_000_000))


@dataclass
class World:
    bootstrap: str
    url: str
    root: Path
    phase_a: list[bytes]
    phase_b: list[bytes]
    budgets: Path
    truth: dict
    truth_a: int  # distinct valid events of phase A


@dataclass
class Outcome:
    name: str
    fault: tuple | None
    returncode: int | None = None   # of the faulty worker
    snap: dict = field(default_factory=dict)
    rollups: dict = field(default_factory=dict)
    outbox: list = field(default_factory=list)
    delivered: list = field(default_factory=list)
    points: list = field(default_factory=list)
    at_death: dict = field(default_factory=dict)  # raw and rollup totals the dead worker left
    seconds: float = 0.0
    error: str = ""


def make_world(bootstrap: str, url: str, root: Path) -> World:
    lines = h.demo_lines(400, seed=7)
    lines.insert(1, INVALID[0])
    lines.insert(120, INVALID[1])
    lines.insert(300, INVALID[2])
    half = len(lines) // 2
    phase_a, phase_b = lines[:half], lines[half:]
    rows_a, _ = priced(phase_a)
    rows, dead = priced(lines)
    triage_a = sum(r["cost_nanos"] for r in rows_a if r["workflow"] == "ticket-triage")
    triage = sum(r["cost_nanos"] for r in rows if r["workflow"] == "ticket-triage")
    search = sum(r["cost_nanos"] for r in rows if r["team"] == "search")
    cap = triage_a * 4 // 3  # phase A ends at 75% of the cap: 25% and 50% (throttle) fire in it
    assert triage > cap and triage_a * 2 > cap, (triage_a, triage, cap)
    budgets = root / "budgets.yaml"
    budgets.write_text(BUDGETS.format(cap=dollars(cap), search=dollars(search * 10 // 9)))
    truth = {"events": len(rows), "cost_nanos": sum(r["cost_nanos"] for r in rows), "dead": dead}
    return World(bootstrap, url, root, phase_a, phase_b, budgets, truth, len(rows_a))


def fired(store, budget_id: str) -> set[str]:
    return {r["threshold"] for r in store.query(
        f"SELECT threshold FROM {{db}}.budget_events WHERE budget_id = '{budget_id}'")}


def run_case(w: World, name: str, fault: tuple | None) -> Outcome:
    """One run: a worker (with the fault, or with the trace only), phase A, phase B; a worker
    without the fault takes over whenever the faulty one died."""
    t0 = time.monotonic()
    out = Outcome(name, fault)
    d = w.root / name
    receiver = h.Receiver()
    env = h.worker_env(w.bootstrap, w.url, h.unique("f"), d / "data", h.unique("cwf"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=w.budgets,
                       COSTWARDEN_ALERTS__CHANNELS=json.dumps({"ops": receiver.url}),
                       COSTWARDEN_ALERTS__DELIVERY_INTERVAL_S=0.2, COSTWARDEN_KAFKA__BATCH_WITHIN_S=0.5)
    store = ClickHouseStore.from_url(w.url, env["COSTWARDEN_STORE__DATABASE"])
    if fault:
        kind, table, owner, *delay = fault
        first_env = h.with_fault(env, kind, table, owner, delay_ms=delay[0] if delay else None)
    else:
        first_env = h.with_fault(env, "trace:0")  # the trace alone: which tables each first commit writes
    faulty = h.Worker(first_env, d / "faulty.log")
    clean = h.Worker(h.without_faults(env), d / "clean.log")
    d.mkdir(parents=True, exist_ok=True)
    workers = [faulty]

    def until(pred, what: str) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT
        while time.monotonic() < deadline:
            if faulty.proc.poll() is not None and clean.proc is None:
                out.returncode = faulty.proc.returncode
                out.at_death = h.totals(store)
                clean.start()
                workers.append(clean)
            if pred():
                return
            time.sleep(0.3)
        raise AssertionError(f"{name}: timed out waiting for {what}; {h.totals(store)}")

    try:
        faulty.start()
        faulty.metrics_port()  # topics created: produce now
        produce(w.bootstrap, h.topic(env, "raw"), w.phase_a)
        until(lambda: h.totals(store)["raw"][0] >= w.truth_a and fired(store, "wf-cap") >= {"25%", "50%"},
              "phase A stored and 50% (throttle) fired")
        produce(w.bootstrap, h.topic(env, "raw"), w.phase_b)

        def finished() -> bool:
            if h.totals(store)["raw"][0] < w.truth["events"]:
                return False
            if any(fired(store, b) != want for b, want in FIRED.items()):
                return False
            st = {r["status"] for r in store.query("SELECT status FROM {db}.alert_outbox FINAL")}
            return st == {"sent"}
        until(finished, "every event stored, every threshold fired and every alert sent")
        time.sleep(2.5)  # anything fired or stored twice would be there by now
        out.snap = snapshot(store)
        out.rollups = rollup_totals(store)
        out.outbox = [r["key"] for r in store.query("SELECT key FROM {db}.alert_outbox FINAL")]
        out.delivered = receiver.alert_keys()
    except Exception as e:
        out.error = f"{e}\n--- faulty worker ---\n{faulty.tail(3000)}\n--- clean worker ---\n{clean.tail(3000)}"
    finally:
        for wk in workers:
            wk.stop()
        receiver.stop()
        store.close()
        if out.returncode is None and faulty.proc is not None:
            out.returncode = faulty.proc.returncode
        out.points = h.fault_points((d / "faulty.log").read_text(errors="replace")) \
            if (d / "faulty.log").exists() else []
        out.seconds = time.monotonic() - t0
    return out


@pytest.fixture(scope="module")
def runs(kafka_broker, clickhouse_url, tmp_path_factory) -> dict[str, Outcome]:
    w = make_world(kafka_broker.bootstrap, clickhouse_url, tmp_path_factory.mktemp("dist-faults"))
    only = [n for n in os.environ.get("COSTWARDEN_DIST_FAULT_CASES", "").split(",") if n]  # debugging
    jobs = {"reference": None, **{n: f for n, f in CASES.items() if not only or n in only}}
    lock = threading.Lock()
    results: dict[str, Outcome] = {}

    def one(name):
        res = run_case(w, name, jobs[name])
        with lock:
            results[name] = res
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, jobs))
    results["reference"].snap["_truth"] = w.truth
    for name, o in results.items():  # shown with -s / on failure
        left = {k: v[0] for k, v in o.at_death.items()}
        print(f"{name:<30} exit {o.returncode!s:>4}  {o.seconds:5.1f}s  {'ERROR' if o.error else 'ok'}  "
              f"left by the dead worker (events): {left}")
    return results


def comparable(snap: dict) -> dict:
    """The snapshot without what depends on timing: the spend at which a threshold was seen to fire
    and the workflow of the record that crossed it (a budget's total is re-read from the store per
    budget batch, so both depend on how the records were batched)."""
    out = {k: v for k, v in snap.items() if not k.startswith("_")}
    out["budget_events"] = [(r["key"], r["threshold"], r["copies"]) for r in snap["budget_events"]]
    return out


def rollups_equal_final(name: str, o: Outcome, truth: dict) -> None:
    pair = (truth["events"], truth["cost_nanos"])
    assert o.rollups and all(v == pair for v in o.rollups.values()), f"{name}: {o.rollups} vs FINAL {pair}"


def test_the_run_without_faults_crosses_every_table_once(runs):
    ref = runs["reference"]
    assert not ref.error, ref.error
    truth = ref.snap["_truth"]
    rollups_equal_final("reference", ref, truth)
    snap = ref.snap
    assert sum(int(r["n"]) for r in snap["dead_letters"]) == truth["dead"] >= 3
    assert [(r["workflow"], r["state"]) for r in snap["controls"]] == [("ticket-triage", "block")]
    assert [(r["from_state"], r["to_state"]) for r in snap["control_audit"]] == \
        [("allow", "throttle"), ("throttle", "block")]
    assert sorted(r["threshold"] for r in snap["budget_events"]) == sorted(t for ts in FIRED.values() for t in ts)
    assert all(r["copies"] == 1 for r in snap["budget_events"])
    assert sorted(ref.outbox) == sorted(r["key"] for r in snap["budget_events"])
    assert sorted(set(ref.delivered)) == sorted(ref.outbox)
    # the trace: the cases cover every table the first raw and the first budget commit write
    firsts = h.first_commits(ref.points)
    raw = [t for o, t in firsts.items() if o.startswith("raw:")]
    budget = [t for o, t in firsts.items() if o.startswith("budget:")]
    assert raw and budget, firsts
    covered = {c[1] for c in CASES.values()}
    for tables in raw + budget:
        assert tables[0] == tables[-1] == "commit_journal" and set(tables) <= covered, tables
    assert {"controls", "control_audit"} <= {t for _, t, o in ref.points if o.startswith("budget:")}


@pytest.mark.parametrize("name", list(CASES))
def test_kill_at_a_write_boundary_then_redelivery_leaves_every_table_as_without_the_fault(runs, name):
    if name not in runs:
        pytest.skip("not selected by COSTWARDEN_DIST_FAULT_CASES")
    o, ref = runs[name], runs["reference"]
    assert not ref.error, "the run without faults failed"
    assert not o.error, o.error
    fault, table, owner = CASES[name][:3]
    assert o.returncode == -signal.SIGKILL, f"{name}: the worker was not killed (exit {o.returncode})"
    hit = [p for p in o.points if (table is None or p[1] == table) and (owner is None or p[2].startswith(owner))]
    assert hit and max(n for n, _, _ in hit) == int(fault.split(":")[1]), f"{name}: fault points {hit}"
    truth = ref.snap["_truth"]
    rollups_equal_final(name, o, truth)
    want, got = comparable(ref.snap), comparable(o.snap)
    for t in want:
        assert got[t] == want[t], f"{name}: table {t!r} differs from the run without faults"
    assert all(r["copies"] == 1 for r in o.snap["budget_events"]), o.snap["budget_events"]
    assert set(o.delivered) == set(o.outbox), f"{name}: delivered {sorted(set(o.delivered))} of {sorted(o.outbox)}"
