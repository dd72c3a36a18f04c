"""Versioned, idempotent migrations applied at start-up (files NNN_name.sql or NNN_name.py in
migrations/). A `.py` migration has `apply(store)` and must be safe to run again from the start
(a process killed inside it runs it again at the next start).

One process migrates at a time: several workers starting together on one ClickHouse database
take a lock first, the creation of the table `schema_migration_lock` (a CREATE TABLE succeeds for
one creator only); the others wait for it to go, then find nothing left to do. A lock older than
`STALE_S` was left by a process that died while migrating: it is dropped and taken again (the
migrations are safe to run again from the start)."""
from __future__ import annotations

import contextlib
import importlib
import logging
import time
import uuid
from datetime import datetime, timezone
from importlib import resources
from typing import Callable, Iterator

from costwarden.errors import StoreError
from costwarden.store.base import Store

log = logging.getLogger(__name__)
LOCK = "schema_migration_lock"
STALE_S = 600

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(version UInt32, name String, applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"""


def migration_files() -> list[tuple[int, str, str]]:
    out = []
    for f in resources.files("costwarden.store").joinpath("migrations").iterdir():
        if f.name.endswith(".sql"):
            out.append((int(f.name.split("_", 1)[0]), f.name, f.read_text()))
        elif f.name.endswith(".py") and f.name[:1].isdigit():
            out.append((int(f.name.split("_", 1)[0]), f.name, ""))
    return sorted(out)


def statements(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _step(name: str) -> Callable[[Store], None]:
    module = importlib.import_module(f"costwarden.store.migrations.{name[:-3]}")
    return module.apply


def _done(store: Store) -> set[int]:
    return {r["version"] for r in store.query("SELECT version FROM {db}.schema_migrations FINAL")}


@contextlib.contextmanager
def migration_lock(store: Store, wait_s: float = 900) -> Iterator[None]:
    """Hold the database's migration lock (see the module docstring)."""
    me = uuid.uuid4().hex[:12]
    deadline = time.monotonic() + wait_s
    while True:
        try:
            store.command(f"CREATE TABLE {{db}}.{LOCK} (owner String, since DateTime DEFAULT now()) ENGINE = Memory")
            break
        except StoreError as e:
            if "exist" not in str(e).lower():
                raise
        age = store.query(f"SELECT toUInt64(now() - metadata_modification_time) AS age FROM system.tables "
                          f"WHERE database = '{{db}}' AND name = '{LOCK}'")
        if age and age[0]["age"] > STALE_S:
            log.warning("migration lock older than %d s (a process died migrating): taken over", STALE_S)
            store.command(f"DROP TABLE IF EXISTS {{db}}.{LOCK}")
            continue
        if time.monotonic() > deadline:
            raise StoreError(f"another process has been migrating the schema for over {wait_s:.0f} s "
                             f"(table {LOCK}); if none is, drop that table")
        time.sleep(0.2)
    try:
        log.debug("migration lock %s taken", me)
        yield
    finally:
        store.command(f"DROP TABLE IF EXISTS {{db}}.{LOCK}")


def migrate(store: Store) -> list[str]:
    """Apply every migration not yet recorded, under the migration lock (only when one is missing).
    Returns the names applied now."""
    store.command(MIGRATIONS_TABLE)
    if {v for v, _, _ in migration_files()} <= _done(store):
        return []
    with migration_lock(store):
        return _apply(store)


def _apply(store: Store) -> list[str]:
    done = _done(store)  # again, under the lock: another process may have migrated meanwhile
    applied = []
    for version, name, text in migration_files():
        if version in done:
            continue
        if name.endswith(".py"):
            _step(name)(store)
        for stmt in statements(text):
            store.command(stmt)
        store.insert("schema_migrations", [{"version": version, "name": name,
                                             "applied_at": datetime.now(timezone.utc)}])
        applied.append(name)
    return applied
