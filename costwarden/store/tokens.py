"""The `api_tokens` table family: token rows in and out (only sha256 hashes are stored).

Token changes made by a person (create, revoke; through the API or the CLI) are audited in
`budget_audit`, the table of the API's audited changes, with action `token-create` /
`token-revoke`, the token's sha256 prefix in `budget_ids` and its name and role in `detail`;
GET /v1/audit shows them as kind `token`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

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


def named(store: Store, name: str) -> list[Row]:
    """Active tokens called `name`."""
    return store.query(f"SELECT * FROM {{db}}.{TABLE} FINAL WHERE name = {lit(name)} AND revoked = 0")


AUDIT_TABLE = "budget_audit"
AUDIT_PREFIX = "token-"
PREFIX_LEN = 12  # how much of a token's sha256 is shown (listings, audit)


def audit(store: Store, action: str, row: Row, actor: str, reason: str = "") -> None:
    """One audit row for a person's token change (`action`: create | revoke)."""
    store.insert(AUDIT_TABLE, [{
        "at": datetime.now(timezone.utc), "seq": time.time_ns(), "action": AUDIT_PREFIX + action,
        "budget_ids": row["token_sha256"][:PREFIX_LEN], "detail": f"{row['role']} token {row['name']!r}",
        "reason": reason, "actor": actor}])


def revoke(store: Store, row: Row) -> Row:
    """A newer version of the row with revoked = 1 (ReplacingMergeTree keeps the latest)."""
    new = dict(row, version=time.time_ns(), revoked=1)
    store.insert(TABLE, [new])
    return new
