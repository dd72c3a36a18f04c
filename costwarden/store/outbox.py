"""The `alert_outbox` table family: SQL as values (tests/store/test_queries.py style) and writes.

One row per (alert key, channel); each state change is a new version (ReplacingMergeTree(version),
read FINAL). The delivery logic that uses these lives in alerts/outbox.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from costwarden.store.base import Row, Store
from costwarden.store.queries import lit, ts

TABLE = "alert_outbox"
COLUMNS = "key, version, created_at, budget_id, channel, title, body, status, attempts, next_attempt_at, last_error"


@dataclass(frozen=True)
class ExistingQuery:
    keys: tuple[str, ...]

    def to_sql(self) -> str:
        return (f"SELECT DISTINCT key, channel FROM {{db}}.{TABLE} FINAL "
                f"WHERE key IN ({', '.join(lit(k) for k in self.keys)})")


@dataclass(frozen=True)
class DueQuery:
    """Pending rows due at `now`, oldest first; only those of `budget_ids` when given."""

    now: datetime
    limit: int = 100
    budget_ids: tuple[str, ...] | None = None

    def to_sql(self) -> str:
        only = ""
        if self.budget_ids is not None:
            only = f"AND budget_id IN ({', '.join(lit(b) for b in self.budget_ids)}) "
        return (f"SELECT {COLUMNS} FROM {{db}}.{TABLE} FINAL WHERE status = 'pending' "
                f"AND next_attempt_at <= {ts(self.now)} {only}ORDER BY next_attempt_at, key, channel "
                f"LIMIT {int(self.limit)}")


@dataclass(frozen=True)
class DueBudgetsQuery:
    now: datetime

    def to_sql(self) -> str:
        return (f"SELECT DISTINCT budget_id FROM {{db}}.{TABLE} FINAL WHERE status = 'pending' "
                f"AND next_attempt_at <= {ts(self.now)}")


PENDING_COUNT_SQL = f"SELECT count() AS n FROM {{db}}.{TABLE} FINAL WHERE status = 'pending'"


@dataclass(frozen=True)
class RowsQuery:
    key: str | None = None
    status: str | None = None
    limit: int = 1000

    def to_sql(self) -> str:
        where = []
        if self.key is not None:
            where.append(f"key = {lit(self.key)}")
        if self.status is not None:
            where.append(f"status = {lit(self.status)}")
        cond = f"WHERE {' AND '.join(where)} " if where else ""
        return (f"SELECT {COLUMNS} FROM {{db}}.{TABLE} FINAL {cond}"
                f"ORDER BY created_at DESC, key, channel LIMIT {int(self.limit)}")


def existing(store: Store, keys: Iterable[str]) -> set[tuple[str, str]]:
    keys = tuple(sorted(set(keys)))
    if not keys:
        return set()
    return {(r["key"], r["channel"]) for r in store.query(ExistingQuery(keys).to_sql())}


def write(store: Store, rows: list[Row]) -> None:
    if rows:
        store.insert(TABLE, rows)
