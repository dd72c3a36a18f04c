"""Several processes starting together on one ClickHouse database (workers scaled out) migrate it
once, in turn: none fails, the schema ends complete, and money converted by 007 is converted once."""
from __future__ import annotations

import importlib
import threading
import uuid

import pytest

from costwarden.errors import StoreError

pytestmark = pytest.mark.integration
m = importlib.import_module("costwarden.store.migrate")  # the module: the package re-exports migrate()


def stores(url: str, database: str, n: int):
    from costwarden.store.clickhouse_store import ClickHouseStore

    return [ClickHouseStore.from_url(url, database) for _ in range(n)]


def race(stores_) -> list:
    results: list = [None] * len(stores_)
    barrier = threading.Barrier(len(stores_))

    def run(i, s):
        barrier.wait()
        try:
            results[i] = m.migrate(s)
        except Exception as e:  # noqa: BLE001 - the test reports what each starter saw
            results[i] = e
    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stores_)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_three_starters_on_a_fresh_database_migrate_it_once(clickhouse_http_url):
    database = f"t_{uuid.uuid4().hex[:12]}"
    ss = stores(clickhouse_http_url, database, 3)
    results = race(ss)
    assert not [r for r in results if isinstance(r, Exception)], results
    applied = [r for r in results if r]
    assert len(applied) == 1 and applied[0][0] == "001_init.sql"  # one did it all, the others nothing
    versions = [r["version"] for r in ss[0].query("SELECT version FROM {db}.schema_migrations FINAL ORDER BY version")]
    assert versions == sorted(v for v, _, _ in m.migration_files())
    cols = {r["name"] for r in ss[0].query("SELECT name FROM system.columns WHERE database = '{db}' "
                                           "AND table = 'usage_events'")}
    assert "cost_nanos" in cols and "cost_micros" not in cols and "input_audio_tokens" in cols
    assert not ss[0].query(f"SELECT name FROM system.tables WHERE database = '{{db}}' AND name = '{m.LOCK}'")
    ss[0].command(f"DROP DATABASE IF EXISTS {database}")


def test_an_old_store_upgraded_by_two_starters_converts_money_once(clickhouse_http_url, at_schema, make_event):
    database = f"t_{uuid.uuid4().hex[:12]}"
    a, b = stores(clickhouse_http_url, database, 2)
    at_schema(a, 6)
    row = make_event(1)
    row = {k: v for k, v in row.items() if not k.endswith(("_nanos", "audio_tokens", "image_tokens"))}
    a.insert("usage_events", [dict(row, cost_micros=13)])
    results = race([a, b])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert a.query("SELECT cost_nanos FROM {db}.usage_events")[0]["cost_nanos"] == 13_000
    assert a.query("SELECT sum(cost_nanos) AS c FROM {db}.usage_rollup_day")[0]["c"] == 13_000
    a.command(f"DROP DATABASE IF EXISTS {database}")


def test_a_lock_left_by_a_process_that_died_is_taken_over_and_a_live_one_is_waited_for(clickhouse_http_url,
                                                                                         monkeypatch):
    database = f"t_{uuid.uuid4().hex[:12]}"
    (s,) = stores(clickhouse_http_url, database, 1)
    s.command(m.MIGRATIONS_TABLE)
    s.command(f"CREATE TABLE {{db}}.{m.LOCK} (owner String) ENGINE = Memory")  # a live migrator
    with pytest.raises(StoreError, match="drop that table"):
        with m.migration_lock(s, wait_s=1):
            pass
    monkeypatch.setattr(m, "STALE_S", -1)  # the same lock, now older than the stale bound
    assert m.migrate(s)[-1] == m.migration_files()[-1][1]
    s.command(f"DROP DATABASE IF EXISTS {database}")
