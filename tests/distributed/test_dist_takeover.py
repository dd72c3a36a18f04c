"""Distributed mode through the one core and the one writer, against real servers (a Kafka broker,
`costwarden worker` processes, ClickHouse through the HTTP test adapter):

- re-deliveries older than the dedupe horizon, in later slices and on other partitions, are
  counted once in the raw table, every rollup and the report;
- a budget partition moved to another worker (its owner SIGKILLed) fires each threshold once;
- two live workers deliver each alert exactly once.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

import dist_harness as h
from costwarden.distributed.producer import produce, record_key
from costwarden.distributed.topics import budget_partition, key_partition
from costwarden.store.clickhouse_store import ClickHouseStore
from costwarden.store.queries import ReportQuery

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def settle(store, truth, workers, timeout=150):
    try:
        h.wait_for(lambda: h.totals(store)["raw"][0] >= truth["events"], timeout, what="all events stored")
    except AssertionError:
        raise AssertionError(f"{h.totals(store)} vs {truth}\n" + "\n".join(w.tail() for w in workers)) from None
    time.sleep(3)
    return h.totals(store)


def by_team(store) -> dict[str, dict[str, tuple[int, int]]]:
    """Events and cost per team: the raw table (FINAL) and the report (each rollup)."""
    out = {"final": {r["team"]: (int(r["events"]), int(r["cost_nanos"])) for r in store.query(
        "SELECT team, count() AS events, sum(cost_nanos) AS cost_nanos FROM {db}.usage_events FINAL GROUP BY team")}}
    start, end = datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc)
    for g in ("minute", "hour", "day"):
        out[g] = {r["team"]: (int(r["events"]), int(r["cost_nanos"]))
                  for r in store.query(ReportQuery(("team",), start, end, g).to_sql())}
    return out


def test_redeliveries_older_than_the_dedupe_horizon_across_slices_and_partitions_count_once(
        kafka_broker, clickhouse_url, tmp_path, spawn):
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "a", h.unique("cw"),
                       COSTWARDEN_PIPELINE__DEDUPE_MAX_ENTRIES=1000, COSTWARDEN_PIPELINE__DEDUPE_HORIZON_HOURS=1,
                       COSTWARDEN_KAFKA__BATCH_MAX=400)
    env_b = dict(env, COSTWARDEN_DATA_DIR=str(tmp_path / "b"))
    lines = h.demo_lines(12000, seed=13)
    truth = h.truth(lines)
    # every 12th valid event of the first half comes again: half of them ~3,000 lines (about a
    # day of event time, far beyond a 1 h / 1,000-id window) later in the stream, on its own
    # partition; the other half after the stream, on another partition than the first copy's.
    firsts = [(i, ln) for i, ln in enumerate(lines[:6000]) if record_key(ln)[1]][::12]
    stream = list(lines)
    for n, (i, ln) in enumerate(firsts[::2]):
        stream.insert(i + 3000 + n, ln)
    raw = h.topic(env, "raw")
    cross = [(k, ln, (key_partition(k, 4) + 1) % 4) for _, ln in firsts[1::2] for k in [record_key(ln)[0]]]
    workers = [spawn(env, tmp_path / "a.log"), spawn(env_b, tmp_path / "b.log")]
    try:
        ports = [w.metrics_port() for w in workers]
        time.sleep(8)  # both members in the group
        produce(kafka_broker.bootstrap, raw, stream)
        store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
        h.wait_for(lambda: h.totals(store)["raw"][0] >= truth["events"], 150, what="the stream stored")
        h.produce_to(kafka_broker.bootstrap, raw, cross)
        totals = settle(store, truth, workers)
        metrics = [h.scrape(p) for p in ports]
    finally:
        for w in workers:
            w.stop()
    pair = (truth["events"], truth["cost_nanos"])
    assert totals == {"raw": pair, "minute": pair, "hour": pair, "day": pair}, (totals, truth)
    teams = by_team(store)
    assert teams["minute"] == teams["hour"] == teams["day"] == teams["final"]
    assert sum(n for n, _ in teams["day"].values()) == truth["events"]
    processed = [m.get("costwarden_events_processed_total", 0) for m in metrics]
    duplicates = sum(m.get("costwarden_events_duplicate_total", 0) for m in metrics)
    assert all(processed) and sum(processed) == truth["events"], processed
    assert duplicates >= len(firsts), (duplicates, len(firsts))


BUDGET = """version: 1
budgets:
  - id: rag-cap
    scope: {workflow: rag-answer}
    period: month
    amount: '30'
    thresholds:
      - {at: 25, actions: [{notify: [ops]}]}
      - {at: 50, actions: [{notify: [ops]}, {throttle: {rate_per_min: '5'}}]}
      - {at: 100, actions: [{notify: [ops]}, {block: true}]}
"""


def test_a_budget_partition_moved_to_another_worker_fires_each_threshold_once(
        kafka_broker, clickhouse_url, tmp_path, spawn):
    """Both workers start with empty state; the owner of the budget's partition fires 25% and
    50% (throttle) and is SIGKILLed; the survivor takes the partition over and must fire only
    100% (block): one allow -> throttle -> block path, each threshold once."""
    receiver = h.Receiver()
    budgets = tmp_path / "rag.yaml"
    budgets.write_text(BUDGET)
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "a", h.unique("cw"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=budgets,
                       COSTWARDEN_ALERTS__CHANNELS=json.dumps({"ops": receiver.url}),
                       COSTWARDEN_ALERTS__DELIVERY_INTERVAL_S=0.3)
    env_b = dict(env, COSTWARDEN_DATA_DIR=str(tmp_path / "b"))
    lines = h.demo_lines(16000, seed=21)
    truth = h.truth(lines)
    workers = [spawn(env, tmp_path / "a.log"), spawn(env_b, tmp_path / "b.log")]
    ports = [w.metrics_port() for w in workers]
    store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
    part = budget_partition("rag-cap", 2)
    label = f'costwarden_partition_assigned{{partition="{part}",topic="{h.topic(env, "budget_usage")}"}}'

    def owner():
        held = [i for i, p in enumerate(ports) if h.scrape(p).get(label) == 1]
        return held if len(held) == 1 else None
    try:
        time.sleep(8)  # both members in the group, each with its state from the store at start (empty)
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[:8000])

        def fired():
            return {r["threshold"] for r in store.query(
                "SELECT threshold FROM {db}.budget_events WHERE budget_id = 'rag-cap'")}
        h.wait_for(lambda: fired() >= {"25%", "50%"}, 120, what="25% and 50% fired")
        assert "100%" not in fired()
        victim = h.wait_for(owner, 30, what="one owner of the budget's partition")[0]
        time.sleep(2)  # its alerts delivered
        workers[victim].kill()
        survivor = workers[1 - victim]
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[8000:])
        totals = settle(store, truth, [survivor], timeout=180)
        h.wait_for(lambda: "100%" in fired(), 60, what="100% fired")
        h.wait_for(lambda: h.scrape(ports[1 - victim]).get(label) == 1, 30, what="the partition moved")
        time.sleep(4)  # anything fired twice would be stored and sent by now
        events = h.json_lines(h.read_topic(kafka_broker.bootstrap, h.topic(env, "budget_events"), timeout_s=2))
        controls = h.json_lines(h.read_topic(kafka_broker.bootstrap, h.topic(env, "controls"), timeout_s=2))
        by_budget = h.read_partitions(kafka_broker.bootstrap, h.topic(env, "budget_usage"), timeout_s=2)
    finally:
        for w in workers:
            w.stop()
        receiver.stop()
    pair = (truth["events"], truth["cost_nanos"])
    assert totals == {"raw": pair, "minute": pair, "hour": pair, "day": pair}
    assert sorted(e["threshold"] for e in events if e["budget_id"] == "rag-cap") == ["100%", "25%", "50%"]
    rows = store.query("SELECT key, count() AS n FROM {db}.budget_events WHERE budget_id = 'rag-cap' GROUP BY key")
    assert len(rows) == 3 and all(r["n"] == 1 for r in rows), rows
    audit = store.query("SELECT from_state, to_state FROM {db}.control_audit WHERE workflow = 'rag-answer' "
                        "ORDER BY at, seq")
    assert [(a["from_state"], a["to_state"]) for a in audit] == [("allow", "throttle"), ("throttle", "block")]
    rag = [c for c in controls if c["workflow"] == "rag-answer"]  # re-sent on takeover: same versions
    assert [s for _, s in sorted({(c["version"], c["state"]) for c in rag})] == ["throttle", "block"]
    assert rag[-1]["state"] == "block"
    # the records of a budget are on the partition the workers compute for it
    assert {p for p, k, _ in by_budget if k == b"rag-cap"} == {part}
    assert sorted(set(receiver.alert_keys())) == sorted(r["key"] for r in rows)


TEAM_DAY = """version: 1
budgets:
""" + "".join(f"""  - id: day-{team}
    scope: {{team: {team}}}
    period: day
    amount: '{amount}'
    thresholds:
      - {{at: 25, actions: [{{notify: [ops]}}]}}
      - {{at: 50, actions: [{{notify: [ops]}}]}}
      - {{at: 75, actions: [{{notify: [ops]}}]}}
""" for team, amount in [("research", "40"), ("search", "8"), ("support", "3"), ("growth", "1.6"),
                         ("platform", "200")])


def test_two_live_workers_deliver_each_alert_exactly_once(kafka_broker, clickhouse_url, tmp_path, spawn):
    receiver = h.Receiver()
    budgets = tmp_path / "days.yaml"
    budgets.write_text(TEAM_DAY)
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "a", h.unique("cw"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=budgets,
                       COSTWARDEN_ALERTS__CHANNELS=json.dumps({"ops": receiver.url}),
                       COSTWARDEN_ALERTS__DELIVERY_INTERVAL_S=0.1)
    env_b = dict(env, COSTWARDEN_DATA_DIR=str(tmp_path / "b"))
    lines = h.demo_lines(16000, seed=21)
    truth = h.truth(lines)
    store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
    workers = [spawn(env, tmp_path / "a.log")]
    try:
        ports = [workers[0].metrics_port()]
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[:5000])
        h.wait_for(lambda: store.query("SELECT count() AS n FROM {db}.alert_outbox")[0]["n"] > 0, 90,
                   what="first alerts")
        workers.append(spawn(env_b, tmp_path / "b.log"))  # joins while alerts are being delivered
        ports.append(workers[1].metrics_port())
        for i in range(5000, len(lines), 2750):
            produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[i:i + 2750])
            time.sleep(1.5)
        settle(store, truth, workers)

        def all_sent():
            rows = store.query("SELECT status, count() AS n FROM {db}.alert_outbox FINAL GROUP BY status")
            st = {r["status"]: r["n"] for r in rows}
            return st and set(st) == {"sent"} and st
        h.wait_for(all_sent, 60, what="every alert sent")
        time.sleep(3)
        metrics = [h.scrape(p) for p in ports]
    finally:
        for w in workers:
            w.stop()
        receiver.stop()
    outbox = store.query("SELECT key, channel FROM {db}.alert_outbox FINAL")
    keys = receiver.alert_keys()
    assert len(outbox) >= 40
    dup = {k: keys.count(k) for k in set(keys) if keys.count(k) > 1}
    assert not dup, dup
    assert sorted(keys) == sorted(r["key"] for r in outbox)
    sent = [m.get("costwarden_alerts_sent_total", 0) for m in metrics]
    assert sum(sent) == len(outbox) and all(sent), sent  # both delivered: each its own budgets'
