"""Migration 007 on a real store: money moves from micro-dollars to nano-dollars exactly once.

A database is built at schema 006, as the release before 007 left it (files 001..006 applied and
recorded), and filled with micro-dollar money: usage events (and so the report and budget rollups,
fed by their views) and budget events. After `migrate`, every money value is exactly 1,000 times
what it was, under its `*_nanos` name, in the raw table, in every rollup and in `budget_events`;
new events feed the re-created rollups. 007 is re-run from the start after being killed between
any two of its statements (and run twice when it completes): never x1,000,000. A commit journalled
by the old release (`*_micros` keys) is re-applied at start-up as nano-dollars, once.
"""
from __future__ import annotations

import importlib
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from costwarden.alerts.notifier import LogNotifier
from costwarden.budgets.model import BudgetFile
from costwarden.embedded import EmbeddedPipeline
from costwarden.store import migrate, open_store, tables as T
from costwarden.store.journal import FileJournal
from costwarden.store.queries import SpendSeedQuery
from costwarden.store.store_journal import StoreJournal
from costwarden.store.writer import Commit, CommitWriter

M007 = importlib.import_module("costwarden.store.migrations.007_nano_dollars")

UTC = timezone.utc
T1 = datetime(2026, 10, 31, 22, 50, tzinfo=UTC)  # events span minutes, hours, a day and a month edge
# micro-dollars as the old release stored them: 14 µ$ (a rounded small call), one micro, zero, a
# credit, $7.654321 and $9,000,000 (x1000 still fits Int64)
MICROS = (14, 1, 0, -3, 7_654_321, 9_000_000_000_000, 250)
REPORT_DIMS = ("team", "workflow", "cost_center", "env", "provider", "model")
BUDGET_DIMS = ("org", "team", "workflow", "cost_center", "env", "provider", "model", "key")
GRAINS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
ROLLUPS = ("usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day", "budget_rollup_hour",
           "budget_rollup_minute")


def old_event(i: int, micros: int | None = None) -> dict:
    """A usage_events row of schema 006: money in `cost_micros`."""
    return {
        "event_id": f"m{i:04d}", "occurred_at": T1 + timedelta(minutes=7 * i, seconds=i),
        "ingested_at": T1 + timedelta(days=3), "source": "gateway", "provider": ("openai", "anthropic")[i % 2],
        "model": "gpt-4o-mini-2024-07-18", "priced_model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
        "operation": "chat", "service_tier": "standard", "requests": 1, "input_tokens": 10 + i, "output_tokens": 20,
        "api_key_id": "" if i % 3 == 0 else f"k{i % 2}", "project_id": "p1", "tags": {"org": ("acme", "beta")[i % 2]},
        "team": f"t{i % 3}", "workflow": ("rag", "batch")[i % 2], "cost_center": "cc", "env": "prod",
        "rule_id": "r1", "cost_micros": MICROS[i % len(MICROS)] if micros is None else micros, "unpriced": 0,
        "catalogue_version": "2026-10",
    }


def old_budget_event(key: str, spend: int, amount: int, forecast: int) -> dict:
    return {"key": key, "at": T1 + timedelta(hours=1), "budget_id": key.split(":")[0],
            "period_start": datetime(2026, 10, 1, tzinfo=UTC), "kind": key.split(":")[2], "threshold": key.split(":")[3],
            "spend_micros": spend, "amount_micros": amount, "forecast_micros": forecast, "workflow": "rag",
            "detail": "workflow=rag"}


BUDGET_EVENTS = [old_budget_event("team:2026-10:actual:80", 320_000_000, 400_000_000, 512_345_678),
                 old_budget_event("org:2026-10:forecast:100", 999_999, 1_000_000, 1_000_001),
                 old_budget_event("big:2026-10:spike:5x", 9_000_000_000_000, 1_000_000_000_000, 0)]


def _floor(at: datetime, grain: str) -> datetime:
    step = GRAINS[grain]
    return datetime(1970, 1, 1, tzinfo=UTC) + (at - datetime(1970, 1, 1, tzinfo=UTC)) // step * step


def expected_rollup(events: list[dict], table: str, per_micro: int = 1000) -> dict:
    """What `table` must hold, computed from the events here (not by the store): cost in nanos."""
    grain = table.rsplit("_", 1)[1]
    out: Counter = Counter()
    for e in events:
        if table.startswith("usage_"):
            dims = (e["team"], e["workflow"], e["cost_center"], e["env"], e["provider"], e["priced_model"])
        else:
            dims = (e["tags"]["org"], e["team"], e["workflow"], e["cost_center"], e["env"], e["provider"], e["model"],
                    e["api_key_id"] or e["project_id"])
        cost = e["cost_nanos"] if "cost_nanos" in e else e["cost_micros"] * per_micro
        out[(_floor(e["occurred_at"], grain), *dims)] += cost
    return dict(out)


def stored_rollup(store, table: str, column: str) -> dict:
    dims = REPORT_DIMS if table.startswith("usage_") else BUDGET_DIMS
    cols = ", ".join(("bucket", *dims))
    rows = store.query(f"SELECT {cols}, sum({column}) AS c FROM {{db}}.{table} GROUP BY {cols}")
    return {tuple(r[c] for c in ("bucket", *dims)): r["c"] for r in rows}


def columns(store, table: str) -> set[str]:
    return {r["name"] for r in store.query(
        f"SELECT name FROM system.columns WHERE database = '{{db}}' AND table = '{table}'")}


def old_store(store, at_schema, events: list[dict]) -> None:
    """Schema 006 with micro-dollar money in every table that holds money (several parts each)."""
    at_schema(store, 6)
    assert "cost_micros" in columns(store, "usage_events") and "cost_nanos" not in columns(store, "usage_events")
    half = len(events) // 2
    store.insert("usage_events", events[:half])
    store.insert("usage_events", events[half:])
    store.insert("budget_events", BUDGET_EVENTS[:2])
    store.insert("budget_events", BUDGET_EVENTS[2:])
    for table in ROLLUPS:  # the old views fed the rollups, in micro-dollars
        assert stored_rollup(store, table, "cost_micros") == expected_rollup(events, table, per_micro=1), table


def assert_nanos_everywhere(store, events: list[dict]) -> None:
    """Every money value exactly x1000 under its new name; no micro-dollar column left."""
    raw = store.query("SELECT event_id, cost_nanos FROM {db}.usage_events FINAL ORDER BY event_id")
    assert raw == [{"event_id": e["event_id"], "cost_nanos": e["cost_micros"] * 1000} for e in events]
    assert store.query("SELECT count() AS n FROM {db}.usage_events") == [{"n": len(events)}]
    for table in ROLLUPS:
        assert stored_rollup(store, table, "cost_nanos") == expected_rollup(events, table), table
    got = store.query("SELECT key, spend_nanos, amount_nanos, forecast_nanos FROM {db}.budget_events FINAL ORDER BY key")
    assert got == sorted(({"key": b["key"], "spend_nanos": b["spend_micros"] * 1000,
                           "amount_nanos": b["amount_micros"] * 1000, "forecast_nanos": b["forecast_micros"] * 1000}
                          for b in BUDGET_EVENTS), key=lambda r: r["key"])
    left = store.query("SELECT table, name FROM system.columns WHERE database = '{db}' AND name LIKE '%micros%'")
    assert left == []


def assert_new_events_feed_the_rollups(store, events: list[dict]) -> None:
    new = [dict({k: v for k, v in old_event(900 + i).items() if k != "cost_micros"}, cost_nanos=n)
           for i, n in enumerate((13_500, 1, 7_654_321_987))]  # sub-micro-dollar amounts now exist
    store.insert("usage_events", new)
    every = events + new
    for table in ROLLUPS:
        assert stored_rollup(store, table, "cost_nanos") == expected_rollup(every, table), table
    start, end = T1 - timedelta(days=1), T1 + timedelta(days=30)
    seeded = sum(r["cost_nanos"] for r in store.query(SpendSeedQuery(start, end).to_sql()))
    assert seeded == sum(e["cost_micros"] * 1000 for e in events) + 13_500 + 1 + 7_654_321_987
    views = {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = '{db}'")}
    assert {"mv_rollup_minute", "mv_rollup_hour", "mv_rollup_day", "mv_budget_hour", "mv_budget_minute"} <= views


def test_migrate_converts_every_money_value_of_a_schema_006_store_to_nanos(store, at_schema):
    events = [old_event(i) for i in range(60)]
    old_store(store, at_schema, events)
    applied = migrate(store)
    assert applied[0] == "007_nano_dollars.py"
    versions = [r["version"] for r in store.query("SELECT version FROM {db}.schema_migrations FINAL ORDER BY version")]
    assert versions[:7] == [1, 2, 3, 4, 5, 6, 7]
    assert_nanos_everywhere(store, events)
    spot = store.query("SELECT event_id, cost_nanos FROM {db}.usage_events FINAL "
                       "WHERE event_id IN ('m0000', 'm0003', 'm0005') ORDER BY event_id")
    assert spot == [{"event_id": "m0000", "cost_nanos": 14_000}, {"event_id": "m0003", "cost_nanos": -3_000},
                    {"event_id": "m0005", "cost_nanos": 9_000_000_000_000_000}]
    assert migrate(store) == []
    assert_nanos_everywhere(store, events)
    assert_new_events_feed_the_rollups(store, events)


class Killed(Exception):
    """The process died here."""


class DiesAfter:
    """The store as migration 007 sees it, killed right after the first statement naming every
    word of `when` (a table and what is done to it)."""

    def __init__(self, store, when: tuple[str, ...]) -> None:
        self._store, self._when = store, when
        self.database = store.database

    def command(self, sql: str) -> None:
        self._store.command(sql)
        if all(w in sql.split() or f"{{db}}.{w}" in sql.split() for w in self._when):
            raise Killed(sql)

    def query(self, sql: str):
        return self._store.query(sql)

    def insert(self, table, rows, dedup_token=None):
        return self._store.insert(table, rows, dedup_token)

    def close(self) -> None:
        pass


# Each entry is a later point of 007 than the one before, so each run from the start gets there.
KILLED_AFTER = [
    ("DROP", "VIEW", "mv_rollup_hour"),           # some views gone, nothing converted
    ("usage_events", "ADD", "cost_nanos"),        # new column added, still zero
    ("usage_events", "UPDATE", "cost_nanos"),     # new column converted, old one still there
    ("usage_rollup_hour", "UPDATE", "cost_nanos"),  # raw and minute rollup done, hour half-way
    ("budget_events", "DROP", "spend_micros"),    # one of three columns of a table done
    ("budget_events", "UPDATE", "forecast_nanos"),  # the last conversion, before its old column goes
    ("CREATE", "mv_rollup_hour"),                 # every column done, views half made
]


def _converted_so_far(store, events: list[dict]) -> None:
    """Between two runs: a column whose old name is gone holds exactly x1000."""
    micros_total = sum(e["cost_micros"] for e in events)
    for table in ("usage_events", *ROLLUPS):
        if "cost_micros" not in columns(store, table):
            got = store.query(f"SELECT sum(cost_nanos) AS c FROM {{db}}.{table}")[0]["c"]
            assert got == micros_total * 1000, table
    have = columns(store, "budget_events")
    for name in ("spend", "amount", "forecast"):
        if f"{name}_micros" not in have:
            got = store.query(f"SELECT sum({name}_nanos) AS c FROM {{db}}.budget_events")[0]["c"]
            assert got == sum(b[f"{name}_micros"] for b in BUDGET_EVENTS) * 1000, name


def test_007_run_again_from_the_start_after_a_kill_between_any_statements_converts_once(store, at_schema):
    events = [old_event(i) for i in range(40)]
    old_store(store, at_schema, events)
    for when in KILLED_AFTER:
        dying = DiesAfter(store, when)
        with pytest.raises(Killed):
            M007.apply(dying)
        _converted_so_far(store, events)
    M007.apply(store)
    assert_nanos_everywhere(store, events)
    M007.apply(store)  # completed, then run again (killed before it was recorded)
    assert_nanos_everywhere(store, events)
    assert migrate(store)[0] == "007_nano_dollars.py"  # not recorded yet: it runs a third time
    assert_nanos_everywhere(store, events)
    assert_new_events_feed_the_rollups(store, events)


# -- commits journalled by the old release ------------------------------------------------------------
def _old_commit(first: int, n: int, budget_event: dict) -> Commit:
    return Commit.form({T.USAGE: [old_event(i) for i in range(first, first + n)], T.BUDGET_EVENTS: [budget_event]})


def test_a_commit_journalled_in_micros_is_reapplied_at_start_up_as_nanos(settings, at_schema):
    """The embedded runner's start: migrate, then re-apply the FileJournal's pending commits. One
    commit died before any table write, one after its usage block (stored in micros, converted by
    007): both end up stored once, in nanos, and the journal is empty."""
    old = open_store(None, str(settings.data_dir), database=settings.store.database)
    at_schema(old, 6)
    journal_dir = settings.data_dir / "journal" / settings.store.database
    journal = FileJournal(journal_dir)
    c1 = _old_commit(0, 3, BUDGET_EVENTS[0])
    c2 = _old_commit(3, 4, BUDGET_EVENTS[1])
    journal.write(c1)
    journal.write(c2)
    table, rows, token = c2.blocks[0]
    assert table == T.USAGE
    old.insert(table, rows, dedup_token=token)  # then the old process died
    events = [old_event(i) for i in range(7)]

    p = EmbeddedPipeline(settings, budgets=BudgetFile(version=1, timezone="UTC", budgets=[]), notifier=LogNotifier(),
                         deliver=False, clock=lambda: T1 + timedelta(days=3))
    try:
        assert FileJournal(journal_dir).pending() == []
        s = p.store
        raw = s.query("SELECT event_id, cost_nanos FROM {db}.usage_events ORDER BY event_id")  # not FINAL: no copies
        assert raw == [{"event_id": e["event_id"], "cost_nanos": e["cost_micros"] * 1000} for e in events]
        for t in ROLLUPS:
            assert stored_rollup(s, t, "cost_nanos") == expected_rollup(events, t), t
        got = s.query("SELECT key, spend_nanos, amount_nanos, forecast_nanos FROM {db}.budget_events ORDER BY key")
        assert got == [
            {"key": "org:2026-10:forecast:100", "spend_nanos": 999_999_000, "amount_nanos": 1_000_000_000,
             "forecast_nanos": 1_000_001_000},
            {"key": "team:2026-10:actual:80", "spend_nanos": 320_000_000_000, "amount_nanos": 400_000_000_000,
             "forecast_nanos": 512_345_678_000}]
        assert {"org:2026-10:forecast:100", "team:2026-10:actual:80"} <= p.processor.ledger.fired
    finally:
        p.close()


def test_store_journal_entries_of_the_old_release_are_upgraded_and_new_ones_left_alone(store, at_schema):
    """The distributed workers' journal (commit_journal): the next owner re-applies an entry the old
    release journalled in micros as nanos, and an entry journalled after the upgrade unchanged."""
    at_schema(store, 6)
    owner = "raw:usage.raw:0"
    old = _old_commit(0, 5, BUDGET_EVENTS[2])
    StoreJournal(store, owner).write(old)
    migrate(store)
    new = Commit.form({T.USAGE: [dict({k: v for k, v in old_event(i).items() if k != "cost_micros"}, cost_nanos=13_500)
                                 for i in (10, 11)]})
    StoreJournal(store, owner).write(new)

    done = CommitWriter(store, StoreJournal(store, owner)).recover()
    assert [c.id for c in done] == [old.id, new.id]
    assert [sorted(k for k in r if "micros" in k or "nanos" in k) for c in done for _, rows, _ in c.blocks
            for r in rows] == [["cost_nanos"]] * 5 + [["amount_nanos", "forecast_nanos", "spend_nanos"]] + [["cost_nanos"]] * 2
    assert StoreJournal(store, owner).pending() == []
    raw = store.query("SELECT event_id, cost_nanos FROM {db}.usage_events ORDER BY event_id")
    assert raw == [{"event_id": e["event_id"], "cost_nanos": e["cost_micros"] * 1000} for e in map(old_event, range(5))] \
        + [{"event_id": "m0010", "cost_nanos": 13_500}, {"event_id": "m0011", "cost_nanos": 13_500}]
    got = store.query("SELECT key, spend_nanos, amount_nanos, forecast_nanos FROM {db}.budget_events")
    assert got == [{"key": "big:2026-10:spike:5x", "spend_nanos": 9_000_000_000_000_000,
                    "amount_nanos": 1_000_000_000_000_000, "forecast_nanos": 0}]
