"""Spend reports from the rollups (exact integers; a TOTAL row equals the sum of the events)."""
from __future__ import annotations

from datetime import datetime

from costwarden.money import from_micros
from costwarden.store import Store
from costwarden.store.queries import ReportQuery

TOKEN_COLS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
              "reasoning_tokens"]


def spend_report(store: Store, by: list[str], start: datetime, end: datetime) -> tuple[list[dict], list[str]]:
    rows = store.query(ReportQuery(by, start, end).to_sql())
    total = {d: "TOTAL" for d in by}
    for m in ["events", "requests", *TOKEN_COLS, "cost_micros", "unpriced_events"]:
        total[m] = sum(r[m] for r in rows)
    rows = rows + [total] if rows else rows
    for r in rows:
        r["cost_usd"] = from_micros(r["cost_micros"])
        r["cost_per_request_usd"] = (from_micros(r["cost_micros"]) / r["requests"]).quantize(from_micros(1)) \
            if r["requests"] else None
    columns = [*by, "requests", "input_tokens", "cache_read_tokens", "output_tokens", "cost_usd",
               "cost_per_request_usd", "cost_micros", "unpriced_events"]
    return rows, columns
