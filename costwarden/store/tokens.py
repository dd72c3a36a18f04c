"""The `api_tokens` table family: token rows in and out (only sha256 hashes are stored)."""
from __future__ import annotations

import time

from costwarden.store.base import Row, Store
from costwarden.store.queries import lit

TABLE = "api_tokens"
ACTIVE_SQL = "SELECT token_sha256, name, role, revoked FROM {db}.api_tokens FINAL"
LIST_SQL = ("SELECT token_sha256, name, role, created_at, revoked FROM {db}.api_tokens FINAL "
            "ORDER BY created_at")


def load(store: Store) -> list[Row]:
    return store.query(ACTIVE_SQL)


def listing(store: Store) -> list[Row]:
    return store.query(LIST_SQL)


def add(store: Store, row: Row) -> None:
    store.insert(TABLE, [row])


def matching(store: Store, sha256_prefix: str) -> list[Row]:
    return store.query(f"SELECT * FROM {{db}}.{TABLE} FINAL WHERE startsWith(token_sha256, {lit(sha256_prefix)}) "
                       "AND revoked = 0")


def revoke(store: Store, row: Row) -> Row:
    """A newer version of the row with revoked = 1 (ReplacingMergeTree keeps the latest)."""
    new = dict(row, version=time.time_ns(), revoked=1)
    store.insert(TABLE, [new])
    return new
