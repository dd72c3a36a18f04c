"""The Store contract, run against both stores: what the pipeline relies on from ClickHouse."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from costwarden.errors import StoreError
from costwarden.store import migrate

ROLLUP_SUMS = ("events", "requests", "input_tokens", "cache_read_tokens", "cache_write_tokens",
               "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "gpu_hours", "cost_nanos",
               "unpriced_events")


@pytest.fixture
def migrated(store):
    migrate(store)
    return store


def test_migrations_are_versioned_and_idempotent(store):
    from costwarden.store.migrate import migration_files

    expected = [name for _, name, _ in migration_files()]
    assert expected[0] == "001_init.sql"
    assert migrate(store) == expected
    assert migrate(store) == []
    rows = store.query("SELECT version, name, applied_at FROM {db}.schema_migrations FINAL ORDER BY version")
    assert [r["name"] for r in rows] == expected
    assert [r["version"] for r in rows] == sorted(int(n.split("_")[0]) for n in expected)
    assert rows[0]["applied_at"].tzinfo is not None
    tables = {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = '{db}'")}
    assert {"usage_events", "usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day", "mv_rollup_day",
            "dead_letters", "budget_events", "alert_outbox", "controls", "control_audit"} <= tables


def test_every_usage_event_value_type_round_trips_exactly(migrated, make_event, t0):
    rows = [make_event(1), make_event(2, provider_cost=None, tags={}, gpu_hours=Decimal("123456789012345.123456789"),
                              input_tokens=2**64 - 1, cost_nanos=-(2**63))]
    migrated.insert("usage_events", rows)
    got = migrated.query("SELECT * FROM {db}.usage_events FINAL ORDER BY event_id")
    expected = [dict(r, unpriced=int(r["unpriced"])) for r in rows]
    assert got == expected
    first = got[0]
    assert first["occurred_at"] == t0 + timedelta(seconds=37, milliseconds=1)  # ms kept, UTC
    assert first["occurred_at"].utcoffset() == timedelta(0)
    assert str(first["provider_cost"].normalize()) == "13.345678901234"
    assert got[1]["provider_cost"] is None and got[1]["tags"] == {}


def test_replacing_merge_tree_keeps_latest_ingest_per_event_id(migrated, make_event, t0):
    migrated.insert("usage_events", [make_event(1, model="old", ingested_at=t0)])
    migrated.insert("usage_events", [make_event(1, model="new", ingested_at=t0 + timedelta(minutes=5)), make_event(2)])
    got = migrated.query("SELECT event_id, model FROM {db}.usage_events FINAL ORDER BY event_id")
    assert got == [{"event_id": "ev-00001", "model": "new"}, {"event_id": "ev-00002", "model": "gpt-4.1-2025-04-14"}]


@pytest.mark.parametrize("table,bucket", [("usage_rollup_minute", "toStartOfMinute"),
                                          ("usage_rollup_hour", "toStartOfHour"),
                                          ("usage_rollup_day", "toStartOfDay")])
def test_rollups_equal_the_raw_sums(migrated, table, bucket, make_event):
    migrated.insert("usage_events", [make_event(i) for i in range(1, 301)])  # spans minutes, hours, two days
    keys = "bucket, team, workflow, cost_center, env, provider, model"
    sums = ", ".join(f"sum({c}) AS {c}" for c in ROLLUP_SUMS)
    rollup = migrated.query(f"SELECT {keys}, {sums} FROM {{db}}.{table} GROUP BY {keys} ORDER BY {keys}")
    raw = migrated.query(
        f"SELECT {bucket}(occurred_at) AS bucket, team, workflow, cost_center, env, provider, "
        f"priced_model AS model, count() AS events, sum(requests) AS requests, sum(input_tokens) AS input_tokens, "
        f"sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens, "
        f"sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(output_tokens) AS output_tokens, "
        f"sum(reasoning_tokens) AS reasoning_tokens, sum(gpu_hours) AS gpu_hours, sum(cost_nanos) AS cost_nanos, "
        f"sum(unpriced) AS unpriced_events FROM {{db}}.usage_events GROUP BY {keys} ORDER BY {keys}")
    assert rollup == raw
    assert len({r["bucket"] for r in rollup}) > 1
    total = migrated.query(f"SELECT sum(cost_nanos) AS c, sum(gpu_hours) AS g FROM {{db}}.{table}")[0]
    assert total == {"c": sum(1_234_567 * i - 5 for i in range(1, 301)),
                     "g": sum(Decimal("0.000000001") * i for i in range(1, 301))}


def test_insert_retried_with_same_token_is_stored_once_in_raw_and_rollups(migrated, make_event):
    batch = [make_event(i) for i in range(1, 51)]
    migrated.insert("usage_events", batch, dedup_token="batch-0001")
    migrated.insert("usage_events", batch, dedup_token="batch-0001")  # the retry after a lost ack
    # count() without FINAL: the duplicate block was never written, not merely merged away.
    assert migrated.query("SELECT count() AS n FROM {db}.usage_events")[0]["n"] == 50
    for table in ("usage_rollup_minute", "usage_rollup_hour", "usage_rollup_day"):
        got = migrated.query(f"SELECT sum(events) AS n, sum(cost_nanos) AS c FROM {{db}}.{table}")[0]
        assert got == {"n": 50, "c": sum(r["cost_nanos"] for r in batch)}, table
    migrated.insert("usage_events", batch, dedup_token="batch-0002")  # a different token is a new batch
    assert migrated.query("SELECT count() AS n FROM {db}.usage_events")[0]["n"] == 100


def test_errors_surface_as_store_error_with_the_server_message(migrated, make_event):
    with pytest.raises(StoreError, match="UNKNOWN_TABLE"):
        migrated.query("SELECT * FROM {db}.no_such_table")
    with pytest.raises(StoreError, match="(?i)syntax error"):
        migrated.command("CREAT TABLE {db}.x (a UInt8) ENGINE = Memory")
    with pytest.raises(StoreError, match="UNKNOWN_TABLE"):
        migrated.insert("no_such_table", [{"a": 1}])
    with pytest.raises(StoreError):
        migrated.insert("usage_events", [make_event(1, requests="lots")])
    assert migrated.query("SELECT count() AS n FROM {db}.usage_events") == [{"n": 0}]


def test_empty_result_and_empty_insert(migrated):
    migrated.insert("usage_events", [])
    assert migrated.query("SELECT event_id FROM {db}.usage_events") == []


def test_columns_a_row_omits_get_their_defaults(migrated, make_event):
    full = make_event(1)
    sparse = {k: v for k, v in make_event(2).items() if k not in ("tags", "provider_cost", "gpu_type", "team")}
    migrated.insert("usage_events", [full, sparse], dedup_token="mixed-1")
    migrated.insert("usage_events", [full, sparse], dedup_token="mixed-1")
    got = migrated.query("SELECT event_id, tags, provider_cost, gpu_type, team, cost_nanos "
                         "FROM {db}.usage_events ORDER BY event_id")
    assert got == [
        {"event_id": "ev-00001", "tags": full["tags"], "provider_cost": full["provider_cost"], "gpu_type": "H100",
         "team": "t1", "cost_nanos": full["cost_nanos"]},
        {"event_id": "ev-00002", "tags": {}, "provider_cost": None, "gpu_type": "", "team": "",
         "cost_nanos": sparse["cost_nanos"]},
    ]
