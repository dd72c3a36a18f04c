"""What the pollers keep in the store: cursors, the stored side of re-polled buckets, provider
cost lines (tables from migration 003_connectors.sql). SQL as values with to_sql()."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Iterable

from costwarden.connectors.base import ProviderCostLine
from costwarden.store.base import Store
from costwarden.store.queries import lit, ts

from .revise import COLUMNS, Totals, stored_totals

COST_KEY = ("source", "day", "project_id", "workspace_id", "api_key_id", "line_item", "model", "service_tier")
_PROVIDER_OF = {"openai-costs": "openai", "anthropic-cost": "anthropic"}


@dataclass(frozen=True)
class CursorQuery:
    connector: str

    def to_sql(self) -> str:
        return (f"SELECT cursor, version FROM {{db}}.connector_cursors FINAL "
                f"WHERE connector = {lit(self.connector)}")


@dataclass(frozen=True)
class StoredBucketsQuery:
    """Every stored event of `source` in [start, end): first events and revisions."""

    source: str
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        cols = ", ".join(sorted(set(COLUMNS.values())))
        return (f"SELECT event_id, {cols} FROM {{db}}.usage_events FINAL WHERE source = {lit(self.source)} "
                f"AND occurred_at >= {ts(self.start)} AND occurred_at < {ts(self.end)}")


@dataclass(frozen=True)
class CostKeysQuery:
    source: str
    start: date
    end: date

    def to_sql(self) -> str:
        return (f"SELECT {', '.join(COST_KEY)}, currency FROM {{db}}.provider_cost_lines FINAL "
                f"WHERE source = {lit(self.source)} AND day >= {lit(self.start.isoformat())} "
                f"AND day < {lit(self.end.isoformat())} AND amount != 0")


class PollState:
    def __init__(self, store: Store) -> None:
        self.store = store

    def cursor(self, connector: str) -> datetime | None:
        rows = self.store.query(CursorQuery(connector).to_sql())
        return rows[0]["cursor"] if rows else None

    def save_cursor(self, connector: str, cursor: datetime, detail: str = "") -> None:
        now = datetime.now(timezone.utc)
        self.store.insert("connector_cursors", [{"connector": connector, "cursor": cursor,
                                                 "version": time.time_ns() // 1000, "updated_at": now,
                                                 "detail": detail[:500]}])

    def stored(self, source: str, start: datetime, end: datetime) -> dict[str, Totals]:
        return stored_totals(self.store.query(StoredBucketsQuery(source, start, end).to_sql()))

    def write_cost_lines(self, source: str, lines: Iterable[ProviderCostLine], start: date, end: date) -> int:
        """Replace the cost lines of `source` for days [start, end): lines sharing a key are summed,
        and a stored line absent from this poll is written as 0 (the provider withdrew it)."""
        rows = cost_rows(lines, datetime.now(timezone.utc))
        fresh = {tuple(r[k] for k in COST_KEY) for r in rows}
        stale = []
        for r in self.store.query(CostKeysQuery(source, start, end).to_sql()):
            if _norm_key(tuple(r[k] for k in COST_KEY)) not in fresh:
                stale.append({**{k: r[k] for k in COST_KEY}, "provider": _PROVIDER_OF.get(source, ""),
                              "amount": Decimal(0), "currency": r["currency"], "quantity": None,
                              "polled_at": datetime.now(timezone.utc)})
        self.store.insert("provider_cost_lines", rows + stale)
        return len(rows)


def _norm_key(key: tuple) -> tuple:
    day = key[1]
    if isinstance(day, datetime):
        day = day.date()
    elif isinstance(day, str):
        day = date.fromisoformat(day)
    return (key[0], day, *key[2:])


def cost_rows(lines: Iterable[ProviderCostLine], polled_at: datetime) -> list[dict]:
    merged: dict[tuple, dict] = {}
    qty: dict[tuple, Decimal | None] = defaultdict(lambda: Decimal(0))
    for ln in lines:
        row = {"source": ln.source, "day": ln.day, "project_id": ln.project_id or "",
               "workspace_id": ln.workspace_id or "", "api_key_id": ln.api_key_id or "",
               "line_item": ln.line_item or "", "model": ln.model or "", "service_tier": ln.service_tier or ""}
        key = tuple(row[k] for k in COST_KEY)
        if key in merged:
            merged[key]["amount"] += ln.amount
        else:
            merged[key] = {**row, "provider": _PROVIDER_OF.get(ln.source, ""), "amount": ln.amount,
                           "currency": ln.currency, "polled_at": polled_at}
        q = qty[key]
        qty[key] = None if (q is None or ln.quantity is None) else q + ln.quantity
    return [{**r, "quantity": qty[k]} for k, r in merged.items()]
