"""Store fixtures: the same contract runs against ChdbStore and ClickHouseStore.

ClickHouseStore talks HTTP to costwarden.testing.clickhouse_http (a TEST ADAPTER serving
ClickHouse's HTTP interface on chDB, in its own process, one per test session). Every test gets a
fresh database name, so tests stay independent while sharing one chDB path per process.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costwarden.testing.clickhouse_http import serve_clickhouse_http


@pytest.fixture(scope="session")
def clickhouse_http_url(tmp_path_factory):
    """URL of the ClickHouse HTTP test adapter (http://default:@127.0.0.1:PORT)."""
    with serve_clickhouse_http(tmp_path_factory.mktemp("ch-http")) as url:
        yield url


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory):
    """chDB opens one path per process: reuse the one already open, else a session directory."""
    from costwarden.store import chdb_store

    open_paths = list(chdb_store._SESSIONS)
    # `<root>/chdb` is the layout open_store(None, root) uses, so other suites can share it.
    return open_paths[0] if open_paths else str(tmp_path_factory.mktemp("chdb-root") / "chdb")


T0 = datetime(2026, 3, 14, 23, 58, 30, 123000, tzinfo=timezone.utc)
def event(i: int, **over) -> dict:
    row = {
        "event_id": f"ev-{i:05d}", "occurred_at": T0 + timedelta(seconds=37 * i, milliseconds=i),
        "ingested_at": T0 + timedelta(hours=1), "source": "gateway", "provider": ("openai", "anthropic")[i % 2],
        "model": "gpt-4.1-2025-04-14", "priced_model": "gpt-4.1", "operation": "chat", "service_tier": "standard",
        "requests": 1, "input_tokens": 1000 + i, "cache_read_tokens": i % 3, "cache_write_tokens": 2,
        "cache_write_1h_tokens": 1, "output_tokens": 50 + i, "reasoning_tokens": i % 5,
        "input_audio_tokens": 3 * i, "output_audio_tokens": 2**40 + i, "input_image_tokens": i % 4,
        "output_image_tokens": 7,  # the modality columns of migration 008
        "gpu_hours": Decimal("0.000000001") * i, "gpu_type": "H100", "api_key_id": "k1", "project_id": "p1",
        "workspace_id": "w1", "user_id": "u1", "service_account": "", "trace_id": f"tr{i}",
        "tags": {"team": f"t{i % 3}", "résumé": "naïve ✓"}, "team": f"t{i % 3}", "workflow": "wf",
        "cost_center": "cc", "env": "prod", "rule_id": "r1", "cost_nanos": 1_234_567 * i - 5, "unpriced": i % 7 == 0,
        "catalogue_version": "2026-03", "provider_cost": Decimal("12.345678901234") + i,
        "provider_cost_currency": "USD",
    }
    row.update(over)
    return row



@pytest.fixture
def t0() -> datetime:
    """The first event's occurred_at (minus i*37 s): late on a day, so events span days."""
    return T0


@pytest.fixture
def make_event():
    """make_event(i, **overrides) -> a usage_events row using every column type."""
    return event


def at_schema(store, version: int) -> None:
    """Bring a fresh database to schema `version` as the release that shipped it left it: migration
    files 001..version applied and recorded in schema_migrations (later ones not even known)."""
    import importlib
    from datetime import datetime, timezone

    m = importlib.import_module("costwarden.store.migrate")  # the module: the package re-exports migrate()
    store.command(m.MIGRATIONS_TABLE)
    for v, name, text in m.migration_files():
        if v > version:
            break
        if name.endswith(".py"):
            m._step(name)(store)
        for stmt in m.statements(text):
            store.command(stmt)
        store.insert("schema_migrations", [{"version": v, "name": name, "applied_at": datetime.now(timezone.utc)}])


@pytest.fixture(name="at_schema")
def at_schema_fixture():
    """at_schema(store, version): a database at an older schema (see `at_schema`)."""
    return at_schema


@pytest.fixture(params=["chdb", pytest.param("clickhouse", marks=pytest.mark.integration)])
def store(request):
    database = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "chdb":
        from costwarden.store.chdb_store import ChdbStore

        s = ChdbStore(request.getfixturevalue("chdb_path"), database)
    else:
        from costwarden.store.clickhouse_store import ClickHouseStore

        s = ClickHouseStore.from_url(request.getfixturevalue("clickhouse_http_url"), database)
    yield s
    s.command(f"DROP DATABASE IF EXISTS {database}")
    s.close()
