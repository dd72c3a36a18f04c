"""Reconciliation: computed vs provider-reported cost, the drift table, one alert on drift."""
from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal

from click.testing import CliRunner

from costwarden.cli import cli
from costwarden.config import PollerSettings
from costwarden.connectors import normalize
from costwarden.connectors.poll import SOURCES, Poller, RetryPolicy
from costwarden.connectors.reconcile import compare, reconcile
from poll_helpers import Clock, fixture_bytes, fixture_json, utc


def poll(name, provider, pipeline, **kw):
    ps = PollerSettings(base_url=provider.url + "/v1", api_key="k", start="2025-06-01T00:00:00Z", settle_s=0,
                        lookback_hours=0, **kw)
    return Poller(SOURCES[name], pipeline, ps, clock=Clock(utc(2025, 6, 2, 0, 30)),
                  retry=RetryPolicy(base_delay=0.01)).run_once()


def test_documented_costs_reconcile_with_documented_usage(provider, pipeline):
    # the documented usage row (gpt-4.1: 1.25M uncached, 1.2M cached, 310k output) priced at list
    # prices is 2.50 + 0.60 + 2.48 = $5.58: exactly what the documented Costs API page says
    provider.pages["/v1/organization/usage/completions"] = {None: fixture_bytes("openai_usage_doc.json")}
    provider.pages["/v1/organization/costs"] = {None: fixture_bytes("openai_costs_doc.json")}
    poll("openai-usage", provider, pipeline, options={"endpoints": ["completions"]})
    poll("openai-costs", provider, pipeline, bucket_width="1d")
    rows = reconcile(pipeline.store, utc(2025, 6, 1), utc(2025, 7, 1), Decimal("5"))
    assert len(rows) == 1
    r = rows[0]
    assert (r.day, r.provider, r.basis) == (date(2025, 6, 1), "openai", "openai-costs")
    assert r.scope == "proj_Xq8b3ZmT0cW4yR1s"
    assert r.ours_nanos == 5_580_000_000 and r.reported_usd == Decimal("5.58") and r.drift_pct == 0 and not r.over


def test_compare_is_exact_and_handles_ungrouped_reports_and_missing_sides():
    ours = [{"day": "2025-06-01", "provider": "anthropic", "scope": "wrk_a", "cost_nanos": 3_000_000_000, "unpriced": 0},
            {"day": "2025-06-01", "provider": "anthropic", "scope": "", "cost_nanos": 1_000_000_000, "unpriced": 2},
            {"day": "2025-06-02", "provider": "anthropic", "scope": "wrk_a", "cost_nanos": 7_000, "unpriced": 0}]
    # day 1: report not grouped by workspace -> our side is summed; day 2 is not in the report -> not compared
    rows = compare(ours, [{"day": "2025-06-01", "source": "anthropic-cost", "scope": "", "amount": "3.2"}], [],
                   Decimal("10"))
    assert len(rows) == 1
    assert rows[0].ours_nanos == 4_000_000_000 and rows[0].drift_usd == Decimal("0.8")
    assert rows[0].drift_pct == Decimal("25.00") and rows[0].over and rows[0].unpriced_events == 2
    # grouped: the default workspace (null) meets our events without a workspace; usage the provider
    # never billed shows with reported 0, billing we never saw with ours 0 (-100 %)
    rows = compare(ours[:2], [{"day": "2025-06-01", "source": "anthropic-cost", "scope": "", "amount": "1"},
                              {"day": "2025-06-01", "source": "anthropic-cost", "scope": "wrk_b", "amount": "2"}],
                   [], Decimal("10"))
    by = {r.scope: r for r in rows}
    assert set(by) == {"default", "wrk_a", "wrk_b"}
    assert by["default"].drift_pct == 0 and not by["default"].over
    assert by["wrk_a"].drift_pct is None and by["wrk_a"].over
    assert by["wrk_b"].drift_pct == Decimal("-100.00") and by["wrk_b"].over


def test_reconcile_prints_the_drift_table_and_alerts_the_catalogue_owner_once(provider, pipeline, receiver,
                                                                               settings, monkeypatch):
    provider.pages["/v1/organization/usage/completions"] = {None: fixture_bytes("openai_usage_doc.json")}
    costs = fixture_json("openai_costs_doc.json")
    costs["data"][0]["results"][2]["amount"]["value"] = 4.96  # output billed at twice our price
    provider.pages["/v1/organization/costs"] = {None: json.dumps(costs).encode()}
    poll("openai-usage", provider, pipeline, options={"endpoints": ["completions"]})
    poll("openai-costs", provider, pipeline, bucket_width="1d")
    # LiteLLM's response_cost is carried on its events and compared with our price of them
    lite = normalize("litellm", fixture_bytes("litellm_batch.json")).events
    pipeline.ingest(lite, "litellm")

    monkeypatch.setenv("COSTWARDEN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", settings.store.database)
    monkeypatch.setenv("COSTWARDEN_ALERTS__CHANNELS", json.dumps({"pricing": f"json://127.0.0.1:{receiver.port}"}))
    monkeypatch.setenv("COSTWARDEN_CONNECTORS__RECONCILE_CHANNEL", "pricing")
    runner = CliRunner()
    res = runner.invoke(cli, ["reconcile", "--period", "2025-06", "--format", "json", "--threshold-pct", "10"],
                        obj={})
    assert res.exit_code == 0, res.output
    table = json.loads(res.stdout)
    openai = [r for r in table if r["basis"] == "openai-costs"][0]
    assert openai["ours_usd"] == "5.580000000" and openai["reported_usd"] == "8.060000000"
    assert openai["drift_usd"] == "-2.480000000" and openai["drift_pct"] == "-30.77" and openai["over"] == "yes"
    assert any(r["basis"] == "litellm" for r in table)
    deadline = time.time() + 10
    while not receiver.received and time.time() < deadline:
        time.sleep(0.05)
    assert len(receiver.received) == 1
    msg = receiver.received[0]
    assert "Reconciliation 2025-06" in msg["title"] and "proj_Xq8b3ZmT0cW4yR1s" in msg["message"]
    assert "-30.77%" in msg["message"]
    # the same drift again: no second alert
    res = runner.invoke(cli, ["reconcile", "--period", "2025-06", "--threshold-pct", "10"], obj={})
    assert res.exit_code == 0 and "already alerted" in res.output
    time.sleep(0.3)
    assert len(receiver.received) == 1


def test_normalize_prints_canonical_json_lines_without_side_effects(tmp_path):
    f = tmp_path / "page.json"
    f.write_bytes(fixture_bytes("anthropic_usage_grouped.json"))
    res = CliRunner().invoke(cli, ["normalize", "--source", "anthropic-usage", "--group-by",
                                   "api_key_id,workspace_id", str(f)], obj={})
    assert res.exit_code == 0
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events and all(e["source"] == "anthropic-usage" for e in events)
    assert {e["attribution"]["api_key_id"] for e in events} >= {"console"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [')
    res = CliRunner().invoke(cli, ["normalize", "--source", "openai-usage", str(bad)], obj={})
    assert res.exit_code == 3 and "malformed_json" in res.stderr
