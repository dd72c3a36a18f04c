"""The rollups that keep the Spend and Sources pages off `usage_events FINAL` (migration 009) give
the raw tables' answers: runs and cost per run, and the reconciliation's inputs, on events stored
through the pipeline (several days, runs across midnight, a redelivered event, provider-reported
costs), again after the migration back-fills them from the raw table, and after a re-pricing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from costwarden.api.ui.data import reconcile_rows
from costwarden.connectors.reconcile import EventCostDailyQuery, EventCostQuery, OursDailyQuery, OursQuery, reconcile
from costwarden.embedded import EmbeddedPipeline
from costwarden.finance.queries import RunsQuery
from costwarden.finance.reprice import reprice
from costwarden.store.migrate import migration_files, statements

DAY = datetime(2026, 10, 6, tzinfo=timezone.utc)
RAW_RUNS = ("SELECT team, workflow, priced_model AS model, uniqExact(tags['run_id']) AS runs, "
            "sum(cost_nanos) AS run_cost_nanos FROM {db}.usage_events FINAL WHERE occurred_at >= {a} "
            "AND occurred_at < {b} AND tags['run_id'] != '' GROUP BY team, workflow, model")


def _events() -> list[dict]:
    out = []
    for i in range(60):
        at = DAY + timedelta(hours=7 * i)  # ~17 days, runs crossing midnight
        e = {"event_id": f"r-{i}", "occurred_at": at.isoformat(), "source": "gateway",
             "provider": ("openai", "anthropic")[i % 2], "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
             "tokens": {"input": 1000 + i, "output": 100},
             "attribution": {"project_id": f"proj-{i % 3}", "workspace_id": f"ws-{i % 2}",
                             "tags": {"team": ("search", "research")[i % 2], "workflow": f"wf-{i % 3}",
                                      **({"run_id": f"run-{i // 4}"} if i % 5 else {})}}}
        if i % 7 == 0:  # the source priced it itself (as LiteLLM does)
            e["source"] = "litellm"
            e["provider_cost"] = {"amount": "0.0012", "currency": "USD"}
        out.append(e)
    return out


def _sorted(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items())) for r in rows)


def _check(store) -> None:
    from costwarden.store.queries import ts

    for a, b in ((DAY, DAY + timedelta(days=30)), (DAY + timedelta(hours=30), DAY + timedelta(days=9, hours=5)),
                 (DAY + timedelta(days=2), DAY + timedelta(days=3))):
        raw = store.query(RAW_RUNS.format(db="{db}", a=ts(a), b=ts(b)))
        assert raw and _sorted(store.query(RunsQuery(["team", "workflow", "model"], a, b).to_sql())) == _sorted(raw)
    a, b = DAY - timedelta(days=1), DAY + timedelta(days=20)
    assert _sorted(store.query(OursDailyQuery(a, b).to_sql())) == _sorted(store.query(OursQuery(a, b).to_sql()))
    mine, theirs = store.query(EventCostDailyQuery(a, b).to_sql()), store.query(EventCostQuery(a, b).to_sql())
    assert mine and _sorted(mine) == _sorted(theirs)
    from_raw = [r.as_row() for r in reconcile(store, a, b, Decimal(5), raw=True)]
    assert from_raw and reconcile_rows(store, a, b, Decimal(5)) == from_raw  # the console's
    assert [r.as_row() for r in reconcile(store, a, b, Decimal(5))] == from_raw  # the API's and the CLI's


def test_the_run_and_source_rollups_answer_as_the_raw_events_do(settings, tmp_path):
    p = EmbeddedPipeline(settings, deliver=False)
    try:
        events = _events()
        p.ingest([*events[:30]], "test")
        p.ingest([*events[30:], events[3], events[14]], "test")  # two redelivered: counted once
        _check(p.store)
        # the migration re-run on a store with history: truncated, then back-filled from raw events
        (text,) = [t for v, name, t in migration_files() if name.startswith("009_")]
        for stmt in statements(text):
            p.store.command(stmt)
        _check(p.store)
        # a re-pricing rebuilds these rollups with the raw events (and the budget rollups too)
        res = reprice(p.store, _dearer_mini(tmp_path), DAY, DAY + timedelta(days=30))
        assert res.changed and res.new_nanos > res.old_nanos
        _check(p.store)
        for table in ("budget_rollup_hour", "budget_rollup_minute", "run_rollup_day", "source_rollup_day"):
            rolled = p.store.query(f"SELECT sum(cost_nanos) AS c FROM {{db}}.{table}")[0]["c"]
            raw = "usage_events FINAL" + (" WHERE tags['run_id'] != ''" if table.startswith("run") else "")
            assert rolled == p.store.query(f"SELECT sum(cost_nanos) AS c FROM {{db}}.{raw}")[0]["c"], table
    finally:
        p.close(flush_alerts=False)


def _dearer_mini(tmp_path):
    """The catalogue with gpt-4o-mini's input price doubled from DAY + 5 days."""
    from pathlib import Path

    from costwarden.config import load_settings
    from costwarden.streams import catalogue
    from costwarden.streams.catalogue import PriceCatalogue

    old = '          - {effective_from: 2024-07-18, input: "0.15", cache_read: "0.075", output: "0.60"}\n'
    text = (Path(catalogue.__file__).parent / "prices.yaml").read_text()
    assert old in text
    text = text.replace(old, old + old.replace("2024-07-18", (DAY + timedelta(days=5)).date().isoformat())
                        .replace('input: "0.15"', 'input: "0.30"'), 1)
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    return PriceCatalogue.from_yaml(f).with_unpriced_policy(load_settings().pricing.unpriced_policy())
