"""The store interface: the whole of what costwarden needs from ClickHouse.

Two implementations share the same DDL and SQL:
    ChdbStore        chDB, ClickHouse's engine in-process (embedded default)
    ClickHouseStore  a ClickHouse server through clickhouse-connect (distributed mode)

Value contract for rows in and out (both stores convert to and from it):
    integers -> int, strings -> str, DateTime/DateTime64 -> tz-aware UTC datetime,
    Decimal -> Decimal, Map(String,String) -> dict, Nullable -> None.
Every SQL text may use `{db}`, replaced by the store's database name.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

Row = dict[str, Any]


@runtime_checkable
class Store(Protocol):
    database: str

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, ALTER, OPTIMIZE)."""

    def insert(self, table: str, rows: Sequence[Row], dedup_token: str | None = None) -> None:
        """Insert a batch into `{db}.table` in one statement. With `dedup_token`, a retried
        insert of the same batch is stored once (tables with a deduplication window)."""

    def query(self, sql: str) -> list[Row]:
        """Run a SELECT and return its rows as dicts."""

    def close(self) -> None:
        ...
