"""The finance commands as a person runs them (click's runner, in-process, on the shared dataset)."""
from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import sum_by
from costwarden import demo as gen
from costwarden.cli import cli


@pytest.fixture
def run(fin_data, chdb_root, monkeypatch):
    _, settings, _ = fin_data
    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", settings.store.database)

    def invoke(*args: str):
        r = CliRunner().invoke(cli, ["--data-dir", chdb_root, "--rules", gen.demo_file("demo-rules.yaml"), *args],
                               obj={}, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output
    return invoke


def test_report_finance_csv_parquet_and_html(run, fin_data, tmp_path):
    _, _, truth = fin_data
    from datetime import datetime, timezone

    oct_ = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
    rows = list(csv.DictReader(io.StringIO(run("report-finance", "--by", "team", "--period", "2026-10",
                                               "--format", "csv"))))
    assert rows[-1]["team"] == "TOTAL"
    assert int(rows[-1]["cost_nanos"]) == sum(sum_by(truth, "team", *oct_).values())
    assert {"cost_per_1k_requests_usd", "cost_per_run_usd", "change_pct"} <= set(rows[0])
    run("report-finance", "--by", "workflow", "--period", "2026-10", "--format", "parquet", "--out",
        str(tmp_path / "r.parquet"))
    t = pq.read_table(tmp_path / "r.parquet")
    assert t.column("cost_usd").to_pylist()[-1] == Decimal(rows[-1]["cost_usd"])
    out = run("--budgets", gen.demo_file("demo-budgets.yaml"), "report-finance", "--period", "2026-10",
              "--format", "html", "--out", str(tmp_path / "r.html"))
    assert "wrote" in out and "<svg" in (tmp_path / "r.html").read_text()


def test_export_focus_to_stdout_and_parquet(run, tmp_path):
    text = run("export", "focus", "--period", "2026-10", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and rows[0]["BillingCurrency"] == "USD"
    run("export", "focus", "--period", "2026-10", "--format", "parquet", "--out", str(tmp_path / "f.parquet"))
    t = pq.read_table(tmp_path / "f.parquet")
    assert sum(t.column("BilledCost").to_pylist()) == sum(Decimal(r["BilledCost"]) for r in rows)


def test_budgets_simulate_forecast_and_reprice_dry_run(run, tmp_path):
    sim = json.loads(run("budgets", "simulate", gen.demo_file("demo-budgets.yaml"), "--from", "2026-09-30",
                         "--to", "2026-10-02", "--format", "json"))
    assert {b["budget"] for b in sim["budgets"]} >= {"org-ai", "agent-loop-daily"}
    assert Decimal(sim["spend_usd"]) > 0
    text = run("budgets", "simulate", gen.demo_file("demo-budgets.yaml"), "--from", "2026-10-01", "--to", "2026-10-01")
    assert "nothing written, sent or changed" in text
    fc = json.loads(run("--budgets", gen.demo_file("demo-budgets.yaml"), "budgets", "forecast",
                        "--at", "2026-10-02T06:00:00", "--format", "json"))
    assert {r["method"] for r in fc} <= {"weekday-seasonal", "linear"} and len(fc) == 5
    out = json.loads(run("reprice", "--from", "2026-10-01", "--to", "2026-10-01", "--dry-run", "--json"))
    assert out["changed"] == 0 and out["dry_run"] is True and out["scanned"] > 0
