"""Run `costwarden ingest` in a real subprocess with a fault at a write boundary, and compare
what the store holds with a run without faults (costwarden/testing/faults.py, snapshot.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from costwarden import demo as gen

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def write_events(path: Path, days: int = 2, seed: int = 7, start: datetime = START) -> Path:
    """The demo's workloads over `days` days (re-deliveries, invalid payloads, the runaway agent)."""
    with open(path, "wb") as f:
        for line in gen.events(start, start + timedelta(days=days), seed):
            f.write(line + b"\n")
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def points(self) -> list[str]:
        return [ln.split(" ", 2)[2] for ln in self.stderr.splitlines() if ln.startswith("fault-point ")]


def env_for(data_dir: Path, batch_size: int, fault: str | None = None, **extra: str) -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("COSTWARDEN_"):
            del env[k]
    env.update({
        "COSTWARDEN_DATA_DIR": str(data_dir),
        "COSTWARDEN_BUDGETS__BUDGETS_FILE": gen.demo_file("demo-budgets.yaml"),
        "COSTWARDEN_BUDGETS__RULES_FILE": gen.demo_file("demo-rules.yaml"),
        "COSTWARDEN_PIPELINE__BATCH_SIZE": str(batch_size),
    })
    if fault:
        env["COSTWARDEN_FAULT"] = fault
        env["COSTWARDEN_FAULT_TRACE"] = "1"
    env.update(extra)
    return env


def ingest(data_dir: Path, events: Path, batch_size: int, fault: str | None = None, **extra: str) -> Run:
    data_dir.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "costwarden.cli", "ingest", str(events), "--json"],
                       env=env_for(data_dir, batch_size, fault, **extra), capture_output=True, text=True,
                       timeout=300, cwd=data_dir.parent)
    return Run(p.returncode, p.stdout, p.stderr)


def snapshot(data_dir: Path) -> dict:
    p = subprocess.run([sys.executable, "-m", "costwarden.testing.snapshot", str(data_dir)],
                       capture_output=True, text=True, timeout=120, env=env_for(data_dir, 1))
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def assert_same(got: dict, want: dict, label: str) -> None:
    for table in want:
        assert got[table] == want[table], f"{label}: table {table!r} differs from the run without faults"


def assert_rollups_match_raw(snap: dict) -> None:
    raw = snap["raw"][0]
    for g in ("minute", "hour", "day"):
        events = sum(int(r["events"]) for r in snap[g])
        cost = sum(int(r["cost"]) for r in snap[g])
        assert (events, cost) == (int(raw["events"]), int(raw["cost"])), f"{g} rollup != usage_events FINAL"
