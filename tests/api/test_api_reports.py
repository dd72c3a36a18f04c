"""GET /v1/reports/spend, /v1/exports/focus and /v1/reconcile on a real server: totals equal the
ingested events' cost to the nano-dollar; roles decide who reads what."""
from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from api_helpers import usage

OTLP = (Path(__file__).parents[1] / "connectors" / "fixtures" / "otlp_traces.json").read_bytes()
PERIOD = "2025-06"  # the OTLP example's spans start on 2025-06-01


@pytest.fixture
def ingested(api):
    c = api.client()
    assert c.post("/v1/traces", content=OTLP, headers={"Content-Type": "application/json"}).status_code == 200
    ev = usage("no-team", "rag", occurred_at="2025-06-02T08:00:00Z")  # no team tag: unallocated
    assert c.post("/v1/events", json=ev).json()["accepted"] == 1
    rows = api.runtime.thread.call(lambda: api.runtime.store.query(
        "SELECT sum(cost_nanos) AS m FROM {db}.usage_events FINAL"))
    return rows[0]["m"]


def test_spend_report_total_equals_the_events_cost_to_the_nano_dollar(api, ingested):
    r = api.client("viewer").get("/v1/reports/spend", params={"by": "team,workflow", "period": PERIOD})
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    total = rows[-1]
    assert total["team"] == total["workflow"] == "TOTAL"
    assert total["cost_nanos"] == ingested == 7_545_000 + 24_075_000 + rows_cost(rows, "unallocated")
    assert Decimal(total["cost_usd"]) == Decimal(ingested) / 1_000_000_000
    assert sum(x["cost_nanos"] for x in rows[:-1]) == ingested
    search = next(x for x in rows if x["team"] == "search")
    assert search["workflow"] == "rag-answer" and search["requests"] == 1
    assert search["cost_per_request_usd"] == "0.007545000"


def rows_cost(rows: list[dict], team: str) -> int:
    return sum(x["cost_nanos"] for x in rows if x["team"] == team)


def test_spend_report_as_csv_for_finance(api, ingested):
    r = api.client("finance").get("/v1/reports/spend", params={"by": "team", "period": PERIOD, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {x["team"] for x in rows} == {"search", "support", "unallocated", "TOTAL"}
    assert int(rows[-1]["cost_nanos"]) == ingested
    assert Decimal(rows[-1]["cost_usd"]) * 1_000_000_000 == ingested


def test_focus_csv_has_the_mandatory_columns_and_sums_to_the_events(api, ingested):
    from costwarden.finance.focus import MANDATORY

    r = api.client("finance").get("/v1/exports/focus", params={"period": PERIOD})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert set(MANDATORY) <= set(rows[0])
    assert sum(Decimal(x["BilledCost"]) for x in rows) * 1_000_000_000 == ingested
    assert {x["ChargeCategory"] for x in rows} == {"Usage"} and {x["BillingCurrency"] for x in rows} == {"USD"}
    pq = pytest.importorskip("pyarrow.parquet")
    p = api.client("admin").get("/v1/exports/focus", params={"period": PERIOD, "format": "parquet"})
    assert p.status_code == 200 and p.content[:4] == b"PAR1"
    table = pq.read_table(io.BytesIO(p.content))
    assert sum(table.column("BilledCost").to_pylist()) * 1_000_000_000 == ingested


def test_reconcile_reports_rows_per_day_for_finance(api, ingested):
    r = api.client("finance").get("/v1/reconcile", params={"period": PERIOD, "threshold_pct": "5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["threshold_pct"] == "5" and "drift_pct" in body["columns"]
    assert api.client("viewer").get("/v1/reconcile", params={"period": PERIOD}).status_code == 403


def test_roles_a_gateway_token_reads_no_reports(api):
    g = api.client("gateway")
    assert g.get("/v1/reports/spend", params={"period": PERIOD}).status_code == 403
    assert g.get("/v1/exports/focus", params={"period": PERIOD}).status_code == 403
    assert api.client("viewer").get("/v1/exports/focus", params={"period": PERIOD}).status_code == 403
    assert api.client(None).get("/v1/reports/spend", params={"period": PERIOD}).status_code == 401


@pytest.mark.parametrize("params, reason", [
    ({"period": "last month"}, "invalid_period"),
    ({"period": "2026-13"}, "invalid_period"),
    ({"period": "0000-01"}, "invalid_period"),
    ({"period": "9999-W99"}, "invalid_period"),
    ({"period": "2026-11", "by": "colour"}, "invalid_dimension"),
    ({"period": "2026-11", "by": ","}, "invalid_dimension"),
    ({"period": "2026-11", "format": "xlsx"}, "invalid_request"),
    ({}, "invalid_request"),
])
def test_bad_parameters_are_a_precise_422(api, params, reason):
    r = api.client("viewer").get("/v1/reports/spend", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == reason
