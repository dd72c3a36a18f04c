"""Harness for the distributed tests and benchmark: events with a known truth, worker processes,
ClickHouse totals. Real servers only: a Kafka broker, the ClickHouse HTTP test adapter, and
`costwarden worker` in subprocesses."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from costwarden.components import load_catalogue
from costwarden.config import load_settings
from costwarden import demo
from costwarden.testing.receiver import HookReceiver

ROOT = Path(__file__).resolve().parents[2]
BUDGETS = demo.demo_file("demo-budgets.yaml")
RULES = demo.demo_file("demo-rules.yaml")
START = datetime(2026, 3, 2, tzinfo=timezone.utc)


def demo_lines(n: int, seed: int = 7) -> list[bytes]:
    """The first n lines of the demo stream (valid events, ~1% redelivered, ~0.25% invalid)."""
    out = []
    for line in demo.events(START, START + timedelta(days=60), seed=seed, runaway=False):
        out.append(line)
        if len(out) >= n:
            break
    return out


def truth(lines: list[bytes]) -> dict:
    """Count and cost of the distinct valid events, priced by part 1's core in this process."""
    from costwarden.budgets.controls import ControlBook
    from costwarden.budgets.evaluate import BudgetLedger
    from costwarden.budgets.model import BudgetFile
    from costwarden.streams.attribution import Attributor, load_rules
    from costwarden.streams.dedupe import DedupeWindow
    from costwarden.streams.process import Processor

    proc = Processor(load_catalogue(load_settings()), Attributor(load_rules(RULES)),
                     BudgetLedger(BudgetFile(version=1, budgets=[])), ControlBook(),
                     DedupeWindow(timedelta(days=3650), 10_000_000))
    items = [proc.parse(line, "truth") for line in lines]
    proc.begin()
    out = proc.enrich(items)
    proc.commit()
    events, cost, dead = len(out.rows), sum(r["cost_nanos"] for r in out.rows), len(out.dead)
    return {"events": events, "cost_nanos": cost, "dead": dead}


def totals(store) -> dict:
    raw = store.query("SELECT count() AS events, sum(cost_nanos) AS cost_nanos FROM {db}.usage_events FINAL")[0]
    roll = {g: store.query(f"SELECT sum(events) AS events, sum(cost_nanos) AS cost_nanos "
                           f"FROM {{db}}.usage_rollup_{g}")[0] for g in ("minute", "hour", "day")}
    return {"raw": (int(raw["events"]), int(raw["cost_nanos"])),
            **{g: (int(r["events"] or 0), int(r["cost_nanos"] or 0)) for g, r in roll.items()}}


def worker_env(bootstrap: str, store_url: str, database: str, data_dir: Path, app_id: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "COSTWARDEN_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "COSTWARDEN_KAFKA__APP_ID": app_id,
        "COSTWARDEN_STORE__URL": store_url, "COSTWARDEN_STORE__DATABASE": database,
        "COSTWARDEN_DATA_DIR": str(data_dir), "COSTWARDEN_BUDGETS__BUDGETS_FILE": BUDGETS,
        "COSTWARDEN_BUDGETS__RULES_FILE": RULES, "COSTWARDEN_KAFKA__SESSION_TIMEOUT_S": "6",
        "COSTWARDEN_KAFKA__PARTITIONS": "4", "COSTWARDEN_KAFKA__BUDGET_PARTITIONS": "2",
        "COSTWARDEN_KAFKA__METRICS_PORT": "0", "PYTHONUNBUFFERED": "1",
    })
    for prefix in ("topic_raw", "topic_dead_letter", "topic_processed", "topic_budget_usage",
                   "topic_budget_events", "topic_controls"):
        env[f"COSTWARDEN_KAFKA__{prefix.upper()}"] = f"{app_id}.{prefix[6:]}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def topic(env: dict, name: str) -> str:
    return env[f"COSTWARDEN_KAFKA__TOPIC_{name.upper()}"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Worker:
    """`costwarden worker` in a subprocess; its log goes to a file."""

    def __init__(self, env: dict, log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "costwarden.cli", "worker", "--loglevel", "warning"],
                                     env=self.env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        return self

    def metrics_port(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_from)
                text = f.read().decode(errors="replace")
            for line in text.splitlines()[::-1]:
                if "metrics on port" in line:
                    return int(line.rsplit(" ", 1)[1])
            time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


def wait_for(fn, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def read_topic(bootstrap: str, name: str, timeout_s: float = 5.0) -> list[tuple[bytes, bytes]]:
    """Every committed record of a topic (from the beginning), as (key, value)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             isolation_level="read_committed", enable_auto_commit=False, group_id=None)
        await c.start()
        out = []
        try:
            idle = time.monotonic()
            while time.monotonic() - idle < timeout_s:
                batch = await c.getmany(timeout_ms=300)
                for recs in batch.values():
                    if recs:
                        idle = time.monotonic()
                    out.extend((r.key, r.value) for r in recs)
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def json_lines(records) -> list[dict]:
    return [json.loads(v) for _, v in records]


def produce_to(bootstrap: str, name: str, records: list[tuple[bytes, bytes, int | None]]) -> None:
    """Produce (key, value, partition) records; partition None: the key decides, as usual."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        try:
            futs = [await p.send(name, value=v, key=k, partition=part) for k, v, part in records]
            await asyncio.gather(*futs)
        finally:
            await p.stop()

    asyncio.run(run())


def read_partitions(bootstrap: str, name: str, timeout_s: float = 3.0) -> list[tuple[int, bytes, bytes]]:
    """Every record of a topic as (partition, key, value)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
        await c.start()
        out = []
        try:
            idle = time.monotonic()
            while time.monotonic() - idle < timeout_s:
                batch = await c.getmany(timeout_ms=300)
                for tp, recs in batch.items():
                    if recs:
                        idle = time.monotonic()
                    out.extend((tp.partition, r.key, r.value) for r in recs)
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def scrape(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class Receiver(HookReceiver):
    """The shared local json:// receiver at /hook; `received` is (arrival time, JSON body) per POST."""

    def __init__(self) -> None:
        super().__init__()
        self.url = HookReceiver.url(self, "hook")

    @property
    def received(self) -> list[tuple[float, dict]]:
        return [(p.at, p.fields) for p in self.snapshot()]

    def alert_keys(self) -> list[str]:
        return [m.group(1) for _, body in self.received
                for m in [re.search(r"Alert key: (\S+)", body.get("message", ""))] if m]

    def stop(self) -> None:
        self.close()


# --- fault injection (costwarden/testing/faults.py) in worker processes --------------------------
FAULT_VARS = ("COSTWARDEN_FAULT", "COSTWARDEN_FAULT_TABLE", "COSTWARDEN_FAULT_OWNER", "COSTWARDEN_FAULT_DELAY_MS",
              "COSTWARDEN_FAULT_TRACE")


def with_fault(env: dict, fault: str, table: str | None = None, owner: str | None = None,
               trace: bool = True, delay_ms: float | None = None) -> dict:
    """The worker env with COSTWARDEN_FAULT (kill-before:N, kill-inside:N, kill-after:N, fail:N,
    or trace:0 for the trace alone) counted over `table` and writers whose journal owner starts
    with `owner` ("raw:", "budget:")."""
    out = without_faults(env)
    out["COSTWARDEN_FAULT"] = fault
    if table:
        out["COSTWARDEN_FAULT_TABLE"] = table
    if owner:
        out["COSTWARDEN_FAULT_OWNER"] = owner
    if trace:
        out["COSTWARDEN_FAULT_TRACE"] = "1"
    if delay_ms is not None:
        out["COSTWARDEN_FAULT_DELAY_MS"] = str(delay_ms)
    return out


def without_faults(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in FAULT_VARS}


def fault_points(text: str) -> list[tuple[int, str, str]]:
    """The `fault-point <n> <table> [<owner>]` lines of a worker's log, as (n, table, owner)."""
    out = []
    for line in text.splitlines():
        if line.startswith("fault-point "):
            parts = line.split(" ")
            out.append((int(parts[1]), parts[2], parts[3] if len(parts) > 3 else ""))
    return out


def first_commits(points: list[tuple[int, str, str]]) -> dict[str, list[str]]:
    """The tables written by each writer's (journal owner's) first commit, in order: from its
    journal entry to the done row (the next `commit_journal` write of the same owner)."""
    out: dict[str, list[str]] = {}
    closed: set[str] = set()
    for _, table, owner in points:
        if not owner or owner in closed:
            continue
        out.setdefault(owner, []).append(table)
        if table == "commit_journal" and len(out[owner]) > 1:
            closed.add(owner)
    return {o: t for o, t in out.items() if o in closed}


class ChannelReceiver(HookReceiver):
    """The shared local receiver for several Apprise json:// channels at once: channel NAME is
    json://127.0.0.1:PORT/NAME; every POST is seen as (monotonic time, channel, alert key)."""

    @property
    def received(self) -> list[tuple[float, str, str]]:
        out = []
        for p in self.snapshot():
            m = re.search(r"Alert key: (\S+)", p.fields.get("message", ""))
            out.append((p.at, p.path.strip("/"), m.group(1) if m else ""))
        return out

    def stop(self) -> None:
        self.close()
