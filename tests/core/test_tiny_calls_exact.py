"""Acceptance of money in nano-dollars: identical tiny calls add up to what the provider bills.

1,000 gpt-4o-mini calls of 10 input + 20 output tokens cost $0.0000135 each, exactly 13,500 n$
($0.15 and $0.60 per 1M tokens). In micro-dollars each was rounded to 14 µ$, and the 1,000 calls
totalled $0.014 against the provider's $0.0135 (+3.7%). Here the total is 13,500,000 n$ ($0.0135)
everywhere a person or a finance tool reads it: the stored events and rollups, `report --by team`
(table and CSV), `budgets status`, the FOCUS export and reconciliation against the provider's
cost line of exactly $0.0135 (drift 0)."""
from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from costwarden.cli import cli
from costwarden.connectors.reconcile import reconcile
from costwarden.embedded import EmbeddedPipeline
from costwarden.events import parse_event
from costwarden.finance.focus import focus_rows
from costwarden.store.connectors import write_cost_lines
from costwarden.store.queries import TOTALS_SQL
from costwarden.streams.catalogue import PriceCatalogue

DAY = datetime(2026, 11, 10, tzinfo=timezone.utc)
CALLS = 1000
CALL_NANOS = 13_500            # 10 x $0.15 + 20 x $0.60 per 1M tokens = $0.0000135
TOTAL_NANOS = CALLS * CALL_NANOS
assert TOTAL_NANOS == 13_500_000  # 13,500 µ$, $0.0135 (rounded per call to 14 µ$ it was $0.014)
TOTAL_USD = "0.013500000"

BUDGETS = """version: 1
budgets:
  - id: tiny-team
    scope: {team: tiny}
    period: day
    amount: "0.02"
    thresholds:
      - {at: 100, actions: [{notify: [ops]}]}
"""


def call(i: int) -> bytes:
    return json.dumps({"event_id": f"tiny-{i}", "occurred_at": (DAY + timedelta(seconds=i)).isoformat(),
                       "source": "gateway", "provider": "openai", "model": "gpt-4o-mini", "requests": 1,
                       "tokens": {"input": 10, "output": 20},
                       "attribution": {"tags": {"team": "tiny", "workflow": "chat"}}}).encode()


@pytest.fixture(scope="module")
def tiny(chdb_root, tmp_path_factory):
    """1,000 tiny calls ingested through the embedded pipeline (as `costwarden ingest` does), the
    budgets file, and the provider's cost line for the day: exactly $0.0135."""
    import uuid
    from pathlib import Path

    from costwarden.config import load_settings

    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "budgets.yaml").write_text(BUDGETS)
    s = load_settings()
    s.data_dir = Path(chdb_root)
    s.store.database = f"tiny_{uuid.uuid4().hex[:10]}"
    s.budgets.budgets_file = tmp / "budgets.yaml"
    p = EmbeddedPipeline(s, deliver=False)
    report = p.ingest([call(i) for i in range(CALLS)], "test")
    assert report.accepted == CALLS and not report.dead
    write_cost_lines(p.store, [{
        "source": "openai-costs", "day": DAY.date(), "provider": "openai", "project_id": "", "workspace_id": "",
        "api_key_id": "", "line_item": "gpt-4o-mini, input+output", "model": "gpt-4o-mini",
        "service_tier": "default", "amount": Decimal("0.0135"), "currency": "USD", "quantity": None,
        "polled_at": datetime.now(timezone.utc)}])
    p.close()
    return p.store, s, tmp


@pytest.fixture
def run(tiny, chdb_root, monkeypatch):
    _, s, tmp = tiny
    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", s.store.database)

    def invoke(*args: str) -> str:
        r = CliRunner().invoke(cli, ["--data-dir", chdb_root, "--budgets", str(tmp / "budgets.yaml"), *args],
                               obj={}, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.stdout
    return invoke


def test_one_call_and_an_embedding_are_whole_nano_dollars(settings):
    emb = json.dumps({"event_id": "emb-1", "occurred_at": DAY.isoformat(), "source": "gateway", "provider": "openai",
                      "model": "text-embedding-3-small", "operation": "embeddings", "tokens": {"input": 30}}).encode()
    cat = PriceCatalogue.default()
    assert cat.price(parse_event(call(0))).cost_nanos == CALL_NANOS
    assert cat.price(parse_event(emb)).cost_nanos == 600  # 30 x $0.02 per 1M tokens = $0.0000006
    p = EmbeddedPipeline(settings, deliver=False)
    assert p.ingest([call(0), emb], "test").accepted == 2
    stored = {r["event_id"]: r["cost_nanos"] for r in p.store.query(
        "SELECT event_id, cost_nanos FROM {db}.usage_events FINAL")}
    p.close()
    assert stored == {"tiny-0": CALL_NANOS, "emb-1": 600}


def test_stored_events_and_rollups_total_exactly(tiny):
    store, _, _ = tiny
    totals = store.query(TOTALS_SQL)[0]
    assert totals["events"] == CALLS and totals["cost_nanos"] == TOTAL_NANOS
    assert {r["cost_nanos"] for r in store.query("SELECT cost_nanos FROM {db}.usage_events FINAL")} == {CALL_NANOS}
    for g in ("minute", "hour", "day"):
        r = store.query(f"SELECT sum(events) AS n, sum(cost_nanos) AS c FROM {{db}}.usage_rollup_{g}")[0]
        assert (r["n"], r["c"]) == (CALLS, TOTAL_NANOS), g


def test_report_by_team_table_and_csv(run):
    rows = list(csv.DictReader(io.StringIO(run("report", "--by", "team", "--period", "2026-11", "--format", "csv"))))
    assert [(r["team"], r["requests"], r["cost_nanos"], r["cost_usd"]) for r in rows] == [
        ("tiny", "1000", "13500000", TOTAL_USD), ("TOTAL", "1000", "13500000", TOTAL_USD)]
    assert rows[-1]["cost_per_request_usd"] == "0.000013500"
    as_json = json.loads(run("report", "--by", "team", "--period", "2026-11", "--format", "json"))
    assert as_json[-1]["cost_nanos"] == TOTAL_NANOS and as_json[-1]["cost_usd"] == TOTAL_USD
    table = run("report", "--by", "team", "--period", "2026-11")  # rounded for reading; CSV and JSON are exact
    total = next(line for line in table.splitlines() if "TOTAL" in line)
    assert "1,000" in total and "$0.01 " in total and "13500000" not in table


def test_budgets_status_spend(run):
    [st] = json.loads(run("budgets", "status", "--period", "2026-11-10", "--format", "json"))
    assert st["budget"] == "tiny-team" and st["period"] == "2026-11-10"
    assert st["spend_usd"] == TOTAL_USD and st["amount_usd"] == "0.020000000"
    assert st["pct_used"] == "67.5"  # 0.0135 / 0.02; with 14 µ$ a call it read 70.0


def test_focus_export_billed_cost(tiny, run, tmp_path):
    store, _, _ = tiny
    month = (datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    rows = focus_rows(store, *month)
    assert sum(r["BilledCost"] for r in rows) == Decimal("0.0135")
    parsed = list(csv.DictReader(io.StringIO(run("export", "focus", "--period", "2026-11", "--format", "csv"))))
    assert sum(Decimal(r["BilledCost"]) for r in parsed) == Decimal("0.0135")
    assert {r["BilledCost"] for r in parsed} == {TOTAL_USD}  # one day, one charge identity
    run("export", "focus", "--period", "2026-11", "--format", "parquet", "--out", str(tmp_path / "f.parquet"))
    t = pq.read_table(tmp_path / "f.parquet")
    assert sum(t.column("BilledCost").to_pylist()) == Decimal("0.0135")


def test_reconciliation_with_the_provider_line_shows_no_drift(tiny, run):
    store, _, _ = tiny
    [row] = reconcile(store, datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc),
                      Decimal("0.01"))
    assert (row.day, row.provider, row.basis) == (date(2026, 11, 10), "openai", "openai-costs")
    assert row.ours_nanos == TOTAL_NANOS and row.reported_usd == Decimal("0.0135")
    assert row.drift_usd == 0 and row.drift_pct == 0 and not row.over
    [shown] = json.loads(run("reconcile", "--period", "2026-11", "--format", "json", "--no-alert"))
    assert shown["ours_usd"] == shown["reported_usd"] == TOTAL_USD
    assert Decimal(shown["drift_usd"]) == 0 and Decimal(shown["drift_pct"]) == 0 and shown["over"] == ""
