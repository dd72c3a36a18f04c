"""Property: the sum of rollups equals the sum of event costs, to the nano-dollar, for any events;
and the store's materialized rollups equal the pure rollup of the same rows."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from costwarden.events import UsageEvent
from costwarden.store import migrate, open_store
from costwarden.streams.attribution import Attributor, load_rules_text
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.rollup import GRANULARITIES, MEASURES, event_row, rollup

CAT = PriceCatalogue.default()
ATTR = Attributor(load_rules_text("rules:\n  - id: k\n    match: {api_key_id: 'k1'}\n    set: {team: a}\n"))
T0 = datetime(2026, 10, 31, 22, tzinfo=timezone.utc)
MODELS = [("openai", "gpt-4.1-2025-04-14"), ("anthropic", "claude-sonnet-4-20250514"), ("gcp.gemini", "gemini-2.5-pro"),
          ("openai", "gpt-4o-mini"), ("openai", "no-such-model")]

counts = st.integers(0, 3_000_000)
event_st = st.builds(
    lambda i, secs, m, inp, cr, cw, out, tier, key, wf: UsageEvent(
        event_id=f"e{i}", occurred_at=T0 + timedelta(seconds=secs), source="t", provider=m[0], model=m[1],
        service_tier=tier, tokens={"input": inp, "cache_read": cr, "cache_write": cw, "output": out},
        attribution={"api_key_id": key, "tags": {"workflow": wf} if wf else {}}),
    st.integers(0, 10**9), st.integers(0, 3 * 86400), st.sampled_from(MODELS), counts, counts, counts, counts,
    st.sampled_from(["standard", "batch"]), st.sampled_from(["k1", "k2"]), st.sampled_from(["", "w1", "w2"]))


def rows_for(events):
    now = datetime.now(timezone.utc)
    uniq = {e.event_id: e for e in events}.values()
    return [event_row(e, CAT.price(e), ATTR.attribute(e), now) for e in uniq]


@given(st.lists(event_st, max_size=60))
@hsettings(max_examples=150, deadline=None)
def test_rollups_sum_to_the_event_costs_exactly(events):
    rows = rows_for(events)
    total = sum(r["cost_nanos"] for r in rows)
    for g in GRANULARITIES:
        agg = rollup(rows, g)
        assert sum(v["cost_nanos"] for v in agg.values()) == total
        assert sum(v["events"] for v in agg.values()) == len(rows)


@given(st.lists(event_st, min_size=1, max_size=40))
@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_store_rollups_equal_the_pure_rollup(chdb_root, events):
    store = open_store(None, chdb_root, database=f"p_{uuid.uuid4().hex[:10]}")
    migrate(store)
    try:
        rows = rows_for(events)
        store.insert("usage_events", rows)
        for g in GRANULARITIES:
            got = {}
            for r in store.query(f"SELECT bucket, team, workflow, cost_center, env, provider, model, "
                                 f"{', '.join(f'sum({m}) AS {m}' for m in MEASURES)} FROM {{db}}.usage_rollup_{g} "
                                 "GROUP BY bucket, team, workflow, cost_center, env, provider, model"):
                key = tuple(r[k] for k in ("bucket", "team", "workflow", "cost_center", "env", "provider", "model"))
                got[key] = {m: r[m] for m in MEASURES}
            assert got == rollup(rows, g)
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
