"""Budget totals are seeded from the budget rollups, not from the raw table: the sums must equal
what `usage_events FINAL` says for any period, whole hours or not (a +05:30 zone's midnight)."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from costwarden.alerts.notifier import LogNotifier
from costwarden.budgets.model import BudgetFile
from costwarden.embedded import EmbeddedPipeline
from costwarden.store.queries import SpendSeedQuery, SpendSeedsQuery, lit, ts

T0 = datetime(2026, 11, 2, 18, 30, tzinfo=timezone.utc)  # midnight in Asia/Kolkata


def raw_sums(store, start, end) -> dict:
    rows = store.query("SELECT tags['org'] AS org, team, workflow, model, if(api_key_id != '', api_key_id, project_id) "
                       "AS key, sum(cost_nanos) AS c FROM {db}.usage_events FINAL WHERE occurred_at >= "
                       f"{ts(start)} AND occurred_at < {ts(end)} GROUP BY org, team, workflow, model, key")
    return {(r["org"], r["team"], r["workflow"], r["model"], r["key"]): r["c"] for r in rows if r["c"]}


def seed_sums(store, start, end) -> dict:
    out: dict = {}
    for r in store.query(SpendSeedQuery(start, end).to_sql()):
        k = (r["org"], r["team"], r["workflow"], r["model"], r["key"])
        out[k] = out.get(k, 0) + r["cost_nanos"]
    return {k: v for k, v in out.items() if v}


def test_seed_from_rollups_equals_raw_final_for_any_window(settings):
    rng = random.Random(5)
    p = EmbeddedPipeline(settings, budgets=BudgetFile(version=1, timezone="UTC", budgets=[]), notifier=LogNotifier(),
                         deliver=False, clock=lambda: T0 + timedelta(days=5))
    events = []
    for i in range(3000):
        at = T0 + timedelta(seconds=rng.randrange(0, 3 * 86400))
        events.append(json.dumps({
            "event_id": f"s{i}", "occurred_at": at.isoformat(), "source": "t", "provider": "openai",
            "model": rng.choice(["gpt-4o-mini", "gpt-4o"]), "tokens": {"input": rng.randrange(1, 5000)},
            "attribution": {"api_key_id": rng.choice(["k1", "k2", ""]), "project_id": "p",
                            "tags": {"org": rng.choice(["acme", "beta"]), "team": rng.choice(["a", "b"]),
                                     "workflow": rng.choice(["w1", "w2", "w3"])}}}).encode())
    events += events[:300]  # re-deliveries: counted once in raw FINAL and in the rollups
    p.ingest(events)
    windows = [(T0, T0 + timedelta(days=1)), (T0 + timedelta(minutes=17), T0 + timedelta(hours=30, minutes=3)),
               (T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=40)), (T0 - timedelta(days=1), T0),
               (T0, T0 + timedelta(days=10))]
    for a, b in windows:
        assert seed_sums(p.store, a, b) == raw_sums(p.store, a, b), (a, b)
    # all windows in one statement (the distributed budget stage's one read per batch): each
    # window's rows are exactly what its own query returns
    together: dict = {}
    for r in p.store.query(SpendSeedsQuery(tuple(windows)).to_sql()):
        w = windows[r.pop("w")]
        together.setdefault(w, []).append(r)
    for a, b in windows:
        def key(r):
            return tuple(str(v) for v in r.values())
        assert sorted(together.get((a, b), []), key=key) == sorted(p.store.query(SpendSeedQuery(a, b).to_sql()),
                                                                 key=key), (a, b)
    assert "usage_events" not in SpendSeedQuery(*windows[1]).to_sql()  # never the raw table
    p.close()


def test_seed_sql_uses_whole_hours_and_minute_edges():
    sql = SpendSeedQuery(datetime(2026, 11, 1, 18, 30, tzinfo=timezone.utc),
                         datetime(2026, 12, 1, 18, 30, tzinfo=timezone.utc)).to_sql()
    assert sql.count("budget_rollup_hour") == 1 and sql.count("budget_rollup_minute") == 2
    assert lit("2026-11-01 19:00:00.000") in sql and lit("2026-12-01 18:00:00.000") in sql
    whole = SpendSeedQuery(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert "budget_rollup_minute" not in whole.to_sql()


def test_migration_backfills_the_budget_rollups_from_stored_events(store, at_schema):
    import importlib

    from costwarden.store import migrate

    m = importlib.import_module("costwarden.store.migrate")  # the module: the package re-exports migrate()
    # a store from before v6 (so before v7 too): events in micro-dollars, no budget rollups
    at_schema(store, 5)
    rows = [{"event_id": f"m{i}", "occurred_at": T0 + timedelta(minutes=7 * i), "ingested_at": T0 + timedelta(days=5),
             "source": "t", "provider": "openai", "model": "gpt-4o", "priced_model": "gpt-4o", "output_tokens": 1000 + i,
             "tags": {"org": "acme"}, "team": ("a", "b")[i % 2], "workflow": ("w1", "w2", "w3")[i % 3],
             "api_key_id": ("k1", "")[i % 2], "project_id": "p",
             "cost_micros": 10 * (1000 + i)}  # gpt-4o output: $10 / 1M tokens = 10 micro-dollars a token
            for i in range(500)]
    store.insert("usage_events", rows[:250])
    store.insert("usage_events", rows[250:])
    want: dict = {}
    for r in rows:
        k = ("acme", r["team"], r["workflow"], "gpt-4o", r["api_key_id"] or "p")
        want[k] = want.get(k, 0) + r["cost_micros"] * 1000
    # v6 is killed before it is recorded (twice): it runs again from the start, then v7 makes it nanos
    v6 = next(text for v, _, text in m.migration_files() if v == 6)
    for _ in range(2):
        for stmt in m.statements(v6):
            store.command(stmt)
    assert migrate(store)[:2] == ["006_budget_rollups.sql", "007_nano_dollars.py"]
    assert seed_sums(store, T0, T0 + timedelta(days=5)) == want == raw_sums(store, T0, T0 + timedelta(days=5))
