"""What the pollers keep in the store: cursors, the stored side of re-polled buckets, provider
cost lines (the table family in costwarden/store/connectors.py)."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Iterable

from costwarden.connectors.base import ProviderCostLine
from costwarden.store import connectors as tables
from costwarden.store.base import Store
from costwarden.store.connectors import COST_KEY

from .revise import COLUMNS, Totals, stored_totals

_PROVIDER_OF = {"openai-costs": "openai", "anthropic-cost": "anthropic"}


class PollState:
    def __init__(self, store: Store) -> None:
        self.store = store

    def cursor(self, connector: str) -> datetime | None:
        return tables.cursor(self.store, connector)

    def save_cursor(self, connector: str, cursor: datetime, detail: str = "") -> None:
        tables.save_cursor(self.store, connector, cursor, detail)

    def stored(self, source: str, start: datetime, end: datetime) -> dict[str, Totals]:
        return stored_totals(self.store.query(
            tables.StoredBucketsQuery(source, start, end, tuple(COLUMNS.values())).to_sql()))

    def write_cost_lines(self, source: str, lines: Iterable[ProviderCostLine], start: date, end: date) -> int:
        """Replace the cost lines of `source` for days [start, end): lines sharing a key are summed,
        and a stored line absent from this poll is written as 0 (the provider withdrew it)."""
        rows = cost_rows(lines, datetime.now(timezone.utc))
        fresh = {tuple(r[k] for k in COST_KEY) for r in rows}
        stale = []
        for r in tables.cost_keys(self.store, source, start, end):
            if _norm_key(tuple(r[k] for k in COST_KEY)) not in fresh:
                stale.append({**{k: r[k] for k in COST_KEY}, "provider": _PROVIDER_OF.get(source, ""),
                              "amount": Decimal(0), "currency": r["currency"], "quantity": None,
                              "polled_at": datetime.now(timezone.utc)})
        tables.write_cost_lines(self.store, rows + stale)
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
