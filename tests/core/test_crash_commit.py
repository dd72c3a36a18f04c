"""Crash at every write boundary of the commit, for real: `costwarden ingest` runs in a subprocess
that SIGKILLs itself before, inside or after the N-th INSERT (COSTWARDEN_FAULT), then the same
input is delivered again. Every table must equal the run without a crash: raw events, each
rollup, dead letters, fired thresholds, the alert outbox, controls and their audit trail."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from costwarden.testing.crash import (Run, assert_rollups_match_raw, assert_same, env_for, ingest, snapshot,
                           write_events)

BATCH = 2500


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    events = write_events(base / "events.jsonl")
    ref = ingest(base / "ref", events, BATCH, fault="trace:0")
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = snapshot(base / "ref")
    assert_rollups_match_raw(want)
    # the input exercises every table of the commit: a throttle and a block, alerts, dead letters
    assert {r["state"] for r in want["controls"]} >= {"block"}
    assert want["alert_outbox"] and want["dead_letters"] and len(want["budget_events"]) >= 3
    return base, events, ref.points(), want


def _crash_then_redeliver(base: Path, events: Path, fault: str, want: dict, **extra: str) -> Run:
    d = base / fault.replace(":", "-")
    shutil.rmtree(d, ignore_errors=True)
    crashed = ingest(d, events, BATCH, fault=fault, **extra)
    again = ingest(d, events, BATCH)
    assert again.returncode == 0, again.stderr[-2000:]
    got = snapshot(d)
    assert_same(got, want, fault)
    assert_rollups_match_raw(got)
    for r in got["budget_events"]:
        assert r["copies"] == 1, f"{fault}: threshold {r['key']} fired {r['copies']} times"
    return crashed


def test_every_write_boundary_is_a_commit_point(world):
    base, events, points, want = world
    assert Counter(points)["usage_events"] >= 4 and "control_audit" in points
    for n in range(1, len(points) + 1):
        crashed = _crash_then_redeliver(base, events, f"kill-before:{n}", want)
        assert crashed.killed, f"kill-before:{n} did not kill (exit {crashed.returncode})"
    crashed = _crash_then_redeliver(base, events, f"kill-after:{len(points)}", want)
    assert crashed.killed


def test_kill_inside_a_write_leaves_no_rollup_short(world):
    """SIGKILL while chDB runs the INSERT (raw part and materialized rollups being written)."""
    base, events, points, want = world
    usage_writes = Counter(points)["usage_events"]
    for n in range(1, usage_writes + 1):
        for delay in ("1", "5"):
            _crash_then_redeliver(base, events, f"kill-inside:{n}", want, COSTWARDEN_FAULT_TABLE="usage_events",
                                  COSTWARDEN_FAULT_DELAY_MS=delay)


@pytest.mark.parametrize("extra", [{}, {"COSTWARDEN_PIPELINE__DEDUPE_MAX_ENTRIES": "1000"}],
                         ids=["default-window", "window-1000"])
def test_random_kills_with_small_batches(world, extra):
    """The operator's experiment: kill -9 at random while ingesting with 200-event batches,
    start again with the whole file each time; the totals end exact, one block, every alert.
    Each kill lands a random number of INSERTs into the run (read from the trace as they happen),
    so the kills fall inside the work however fast or loaded the machine is."""
    base, events, _, want = world
    d = base / f"random-{len(extra)}"
    rng = random.Random(11 + len(extra))
    kills = 0
    env = env_for(d, 200, fault="trace:0", **extra)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-m", "costwarden.cli", "ingest", str(events), "--json"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=base)
        target, seen = rng.randint(3, 40), 0
        for line in p.stderr:
            seen += line.startswith("fault-point ")
            if seen >= target:
                time.sleep(rng.uniform(0, 0.02))  # anywhere between this write and the next ones
                p.kill()
                kills += 1
                break
        p.wait()
    again = ingest(d, events, 200, **extra)
    assert again.returncode == 0, again.stderr[-2000:]
    got = snapshot(d)
    assert kills == 3, "the ingest finished before the kill"
    assert_same(got, want, f"random kills {extra}")
    assert_rollups_match_raw(got)
