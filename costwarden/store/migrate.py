"""Versioned, idempotent migrations applied at start-up (files NNN_name.sql or NNN_name.py in
migrations/). A `.py` migration has `apply(store)` and must be safe to run again from the start
(a process killed inside it runs it again at the next start)."""
from __future__ import annotations

import importlib
from datetime import datetime, timezone
from importlib import resources
from typing import Callable

from costwarden.store.base import Store

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


def migrate(store: Store) -> list[str]:
    """Apply every migration not yet recorded. Returns the names applied now."""
    store.command(MIGRATIONS_TABLE)
    done = {r["version"] for r in store.query("SELECT version FROM {db}.schema_migrations FINAL")}
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
