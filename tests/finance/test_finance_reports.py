"""Showback reports: totals equal the events to the nano-dollar, unit costs, runs, change, unallocated."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from conftest import END, START, sum_by  # noqa: F401  (tests/finance/conftest.py)
from costwarden.finance.export import to_csv, to_parquet
from costwarden.finance.reports import finance_report, previous_period

OCT = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
SEP = (datetime(2026, 9, 1, tzinfo=timezone.utc), datetime(2026, 10, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("dim", ["team", "workflow", "cost_center", "provider", "model"])
def test_every_row_and_the_total_equal_the_events_to_the_nano_dollar(fin_data, dim):
    store, _, truth = fin_data
    for start, end in (OCT, SEP, (START, END)):
        rows, cols = finance_report(store, [dim], start, end)
        expected = {k: v for k, v in sum_by(truth, dim, start, end).items() if v}
        body = {r[dim]: r["cost_nanos"] for r in rows[:-1] if r["cost_nanos"]}
        assert body == expected
        assert rows[-1][dim] == "TOTAL"
        assert rows[-1]["cost_nanos"] == sum(expected.values())
        assert rows[-1]["cost_usd"] == Decimal(sum(expected.values())) / 1_000_000_000
        assert rows[-1]["requests"] == sum(r["requests"] for r in truth if start <= r["at"] < end)


def test_unallocated_is_always_a_row(fin_data):
    store, _, truth = fin_data
    rows, _ = finance_report(store, ["team"], *OCT)
    un = [r for r in rows if r["team"] == "unallocated"]
    assert un and un[0]["cost_nanos"] == sum_by(truth, "team", *OCT).get("unallocated", 0) > 0
    # a day when only the tagged batch workflow ran: unallocated is still shown, at $0
    rows, _ = finance_report(store, ["team", "workflow"], datetime(2026, 11, 1, tzinfo=timezone.utc),
                             datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert [(r["team"], r["workflow"], r["cost_nanos"]) for r in rows] == [
        ("unallocated", "unallocated", 0), ("TOTAL", "TOTAL", 0)]


def test_unit_costs_per_request_per_1k_and_per_run(fin_data):
    store, _, _ = fin_data
    rows, _ = finance_report(store, ["workflow"], *OCT)
    etl = next(r for r in rows if r["workflow"] == "nightly-etl")
    assert etl["cost_nanos"] == 4_500_000_000 and etl["requests"] == 6  # 3 runs x ($1.00 + $0.50)
    assert etl["runs"] == 3
    assert etl["cost_per_run_usd"] == Decimal("1.500000000")
    assert etl["cost_per_request_usd"] == Decimal("0.750000000")
    assert etl["cost_per_1k_requests_usd"] == Decimal("750.000000000")
    assert rows[-1]["runs"] == 3
    untagged = next(r for r in rows if r["workflow"] == "rag-answer")
    assert untagged["runs"] == 0 and untagged["cost_per_run_usd"] is None


def test_period_over_period_change(fin_data):
    store, _, truth = fin_data
    assert previous_period(*OCT) == SEP
    q4 = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert previous_period(*q4) == (datetime(2026, 7, 1, tzinfo=timezone.utc), q4[0])
    d2, d3 = (datetime(2026, 10, 2, tzinfo=timezone.utc), datetime(2026, 10, 3, tzinfo=timezone.utc))
    assert previous_period(d2, d3) == (datetime(2026, 10, 1, tzinfo=timezone.utc), d2)
    rows, _ = finance_report(store, ["team"], *OCT)
    cur, prev = sum_by(truth, "team", *OCT), sum_by(truth, "team", *SEP)
    support = next(r for r in rows if r["team"] == "support")
    assert support["previous_cost_usd"] == Decimal(prev["support"]) / 1_000_000_000
    assert support["change_pct"] == (Decimal(cur["support"] - prev["support"]) * 100 / prev["support"]).quantize(
        Decimal("0.1"))
    data = next(r for r in rows if r["team"] == "data")
    assert data["previous_cost_usd"] == 0 and data["change_pct"] is None  # new this month


def test_csv_and_parquet_carry_exact_decimals(fin_data, tmp_path):
    store, _, truth = fin_data
    rows, cols = finance_report(store, ["team", "model"], *OCT)
    text = to_csv(rows, cols)
    total_line = text.strip().splitlines()[-1].split(",")
    assert Decimal(total_line[cols.index("cost_usd")]) == Decimal(sum(sum_by(truth, "team", *OCT).values())) / 10**9
    assert len(total_line[cols.index("cost_usd")].split(".")[1]) == 9  # always to the nano-dollar
    path = tmp_path / "r.parquet"
    to_parquet(rows, cols, path)
    t = pq.read_table(path)
    assert str(t.schema.field("cost_usd").type) == "decimal128(38, 9)"
    assert str(t.schema.field("requests").type) == "int64"
    costs = t.column("cost_usd").to_pylist()
    assert sum(costs[:-1]) == costs[-1] == rows[-1]["cost_usd"]


def test_a_report_needs_a_dimension(fin_data):
    from costwarden.errors import CostwardenError

    with pytest.raises(CostwardenError):
        finance_report(fin_data[0], [], *OCT)
    with pytest.raises(CostwardenError, match="cannot report by"):
        finance_report(fin_data[0], ["colour"], *OCT)
