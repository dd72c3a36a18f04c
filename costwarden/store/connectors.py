"""The connectors' table family (migration 003): poller cursors and providers' cost lines, plus
the read of stored usage a re-poll compares with. SQL as values with to_sql()."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable

from costwarden.store.base import Row, Store
from costwarden.store.queries import lit, ts

CURSORS = "connector_cursors"
COST_LINES = "provider_cost_lines"
COST_KEY = ("source", "day", "project_id", "workspace_id", "api_key_id", "line_item", "model", "service_tier")


@dataclass(frozen=True)
class CursorQuery:
    connector: str

    def to_sql(self) -> str:
        return f"SELECT cursor, version FROM {{db}}.{CURSORS} FINAL WHERE connector = {lit(self.connector)}"


@dataclass(frozen=True)
class StoredBucketsQuery:
    """Every stored event of `source` in [start, end): first events and revisions."""

    source: str
    start: datetime
    end: datetime
    columns: tuple[str, ...]

    def to_sql(self) -> str:
        cols = ", ".join(sorted(set(self.columns)))
        return (f"SELECT event_id, {cols} FROM {{db}}.usage_events FINAL WHERE source = {lit(self.source)} "
                f"AND occurred_at >= {ts(self.start)} AND occurred_at < {ts(self.end)}")


@dataclass(frozen=True)
class CostKeysQuery:
    source: str
    start: date
    end: date

    def to_sql(self) -> str:
        return (f"SELECT {', '.join(COST_KEY)}, currency FROM {{db}}.{COST_LINES} FINAL "
                f"WHERE source = {lit(self.source)} AND day >= {lit(self.start.isoformat())} "
                f"AND day < {lit(self.end.isoformat())} AND amount != 0")


def cursor(store: Store, connector: str) -> datetime | None:
    rows = store.query(CursorQuery(connector).to_sql())
    return rows[0]["cursor"] if rows else None


def save_cursor(store: Store, connector: str, at: datetime, detail: str = "") -> None:
    store.insert(CURSORS, [{"connector": connector, "cursor": at, "version": time.time_ns() // 1000,
                            "updated_at": datetime.now(timezone.utc), "detail": detail[:500]}])


def cost_keys(store: Store, source: str, start: date, end: date) -> list[Row]:
    return store.query(CostKeysQuery(source, start, end).to_sql())


def write_cost_lines(store: Store, rows: Iterable[Row]) -> None:
    rows = list(rows)
    if rows:
        store.insert(COST_LINES, rows)
