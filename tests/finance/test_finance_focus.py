"""FOCUS 1.2 export: required columns, types (Decimal money, UTC timestamps), totals to the nano-dollar."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from costwarden.finance.focus import COLUMNS, MANDATORY, focus_rows, write_focus

OCT = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
REQUIRED = ["BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart",
            "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart",
            "ChargePeriodEnd", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
            "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
            "ConsumedQuantity", "ConsumedUnit", "Tags", "SkuId", "RegionId"]


def test_parquet_has_every_required_column_with_focus_types(fin_data, tmp_path):
    store, _, truth = fin_data
    rows = focus_rows(store, *OCT, account_id="acct-1", account_name="ACME")
    path = tmp_path / "focus.parquet"
    write_focus(rows, "parquet", path)
    t = pq.read_table(path)
    schema = t.schema
    assert set(REQUIRED) <= set(schema.names) and set(MANDATORY) <= set(schema.names)
    assert all(c in REQUIRED or c.startswith("x_") for c in schema.names)
    for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert pa.types.is_decimal(schema.field(c).type) and schema.field(c).type.scale == 9
        assert t.column(c).null_count == 0
    for c in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
        assert schema.field(c).type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_decimal(schema.field("PricingQuantity").type)
    for c in ("BillingCurrency", "ChargeCategory", "ServiceCategory", "ProviderName", "Tags", "SkuId"):
        assert schema.field(c).type == pa.string()
    data = t.to_pylist()
    oct_truth = [r for r in truth if OCT[0] <= r["at"] < OCT[1]]
    assert sum(r["BilledCost"] for r in data) == Decimal(sum(r["cost_nanos"] for r in oct_truth)) / 10**9
    assert {r["BillingCurrency"] for r in data} == {"USD"}
    assert {r["ChargeCategory"] for r in data} == {"Usage"}
    assert {r["ServiceCategory"] for r in data} == {"AI and Machine Learning"}
    assert {r["BillingAccountId"] for r in data} == {"acct-1"}
    for r in data:
        assert r["BillingPeriodStart"] == datetime(2026, 10, 1, tzinfo=timezone.utc)
        assert r["BillingPeriodEnd"] == datetime(2026, 11, 1, tzinfo=timezone.utc)
        assert r["ChargePeriodStart"] < r["ChargePeriodEnd"]
        assert r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] == r["ContractedCost"]
        tags = json.loads(r["Tags"])
        assert set(tags) == {"team", "workflow", "cost_center"}
    gpu = [r for r in data if r["ConsumedUnit"] == "GPU-Hours"]
    assert gpu and all(r["SkuId"] == "self_hosted/gpu/h100" for r in gpu)
    etl = [r for r in data if json.loads(r["Tags"])["workflow"] == "nightly-etl"]
    assert sum(r["BilledCost"] for r in etl) == Decimal("4.5") and sum(r["x_Requests"] for r in etl) == 6
    assert any(json.loads(r["Tags"])["team"] == "unallocated" for r in data)


def test_csv_has_the_same_columns_and_utc_times(fin_data):
    store, _, _ = fin_data
    rows = focus_rows(store, *OCT)
    buf = io.StringIO()
    write_focus(rows, "csv", buf)
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert list(parsed[0]) == list(COLUMNS)
    assert len(parsed) == len(rows)
    assert sum(Decimal(r["BilledCost"]) for r in parsed) == sum(r["BilledCost"] for r in rows)
    assert all(r["ChargePeriodStart"].endswith("T00:00:00Z") for r in parsed)
    assert all(r["ChargeClass"] == "" for r in parsed)  # null: not a correction
