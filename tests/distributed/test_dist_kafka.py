"""The distributed runtime against real servers: a Kafka broker, `costwarden worker` processes,
and ClickHouse through clickhouse-connect (the HTTP test adapter over chDB). Totals in
ClickHouse are compared with the ground truth (part 1's core run over the same lines in this
process) to the nano-dollar, in the raw table (FINAL) and in every rollup."""
from __future__ import annotations

import random
import threading
import time
import urllib.request

import pytest

import dist_harness as h
from costwarden.distributed.producer import produce
from costwarden.store.clickhouse_store import ClickHouseStore

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def expected(truth):
    pair = (truth["events"], truth["cost_nanos"])
    return {"raw": pair, "minute": pair, "hour": pair, "day": pair}


def settle(store, truth, workers, timeout=150):
    """Wait until ClickHouse holds every event, then a little longer (nothing more may arrive)."""
    try:
        h.wait_for(lambda: h.totals(store)["raw"][0] >= truth["events"], timeout, what="all events stored")
    except AssertionError:
        raise AssertionError(f"{h.totals(store)} vs {truth}\n" + "\n".join(w.tail() for w in workers)) from None
    time.sleep(2)
    return h.totals(store)


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_sigkilled_worker_restarted_three_times_loses_nothing_and_counts_nothing_twice(
        kafka_broker, clickhouse_url, tmp_path, spawn):
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "w", h.unique("cw"))
    lines = h.demo_lines(24000, seed=11)
    truth = h.truth(lines)
    worker = spawn(env, tmp_path / "worker.log")
    worker.metrics_port()
    done = threading.Event()

    def producer():  # a steady stream over ~15 s, so the kills land mid-stream
        for i in range(0, len(lines), 1600):
            produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[i:i + 1600])
            time.sleep(1.0)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    rng = random.Random()
    store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
    mid_stream = 0
    try:
        for _ in range(3):
            h.wait_for(lambda: h.totals(store)["raw"][0] > 0, 60, what="first events stored")
            time.sleep(rng.uniform(1.0, 4.0))
            mid_stream += not done.is_set()
            worker.kill()
            worker.start()
            worker.metrics_port()
    finally:
        t.join()
    assert mid_stream >= 2  # the kills landed while events were still being produced
    totals = settle(store, truth, [worker])
    worker.stop()
    assert totals == expected(truth), worker.tail()
    dead = store.query("SELECT count() AS n FROM {db}.dead_letters FINAL")[0]["n"]
    assert dead == truth["dead"]


def test_two_workers_in_one_group_share_partitions_and_total_the_same(kafka_broker, clickhouse_url, tmp_path,
                                                                      spawn):
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "a", h.unique("cw"))
    env_b = dict(env, COSTWARDEN_DATA_DIR=str(tmp_path / "b"))
    workers = [spawn(env, tmp_path / "a.log"), spawn(env_b, tmp_path / "b.log")]
    try:
        ports = [w.metrics_port() for w in workers]
        lines = h.demo_lines(10000, seed=5)
        truth = h.truth(lines)
        time.sleep(8)  # both members in the group
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines)
        store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
        totals = settle(store, truth, workers)
        time.sleep(3)  # let the metrics catch up with the last commit point
        metrics = [scrape(p) for p in ports]
    finally:
        for w in workers:
            w.stop()
    assert totals == expected(truth)
    processed = [m.get("costwarden_events_processed_total", 0) for m in metrics]
    assert all(n > 0 for n in processed), processed          # both did work
    assert sum(processed) == truth["events"]                  # and none was counted by both
    dead = sum(v for m in metrics for k, v in m.items() if k.startswith("costwarden_events_dead_lettered_total"))
    assert dead >= truth["dead"]
    assert all('costwarden_consumer_lag{partition=' in "".join(m) for m in metrics)
    assert sum(m.get("costwarden_clickhouse_write_seconds_count{stage=\"raw\"}", 0) for m in metrics) > 0


def test_broker_restart_mid_stream_loses_nothing_and_a_budget_blocks_once(kafka_broker, clickhouse_url, tmp_path,
                                                                          spawn):
    if not hasattr(kafka_broker, "proc"):
        pytest.skip("the broker is not ours to restart")
    budgets = tmp_path / "tight.yaml"
    budgets.write_text("version: 1\nbudgets:\n  - id: tight\n    scope: {workflow: ticket-triage}\n"
                       "    period: month\n    amount: '0.50'\n    thresholds:\n"
                       "      - at: 100\n        actions: [{block: true}]\n")
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("k"), tmp_path / "w", h.unique("cw"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=budgets)
    worker = spawn(env, tmp_path / "w.log")
    worker.metrics_port()
    lines = h.demo_lines(12000, seed=3)
    truth = h.truth(lines)
    produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[:6000])
    store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
    h.wait_for(lambda: h.totals(store)["raw"][0] > 1000, 60, what="first events stored")
    kafka_broker.restart(hard=True)
    produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[6000:])
    totals = settle(store, truth, [worker], timeout=180)
    time.sleep(3)
    controls = h.json_lines(h.read_topic(kafka_broker.bootstrap, h.topic(env, "controls")))
    events = h.json_lines(h.read_topic(kafka_broker.bootstrap, h.topic(env, "budget_events"), timeout_s=2))
    worker.stop()
    assert totals == expected(truth)
    assert [(c["workflow"], c["state"], c["budget_id"]) for c in controls] == [("ticket-triage", "block", "tight")]
    assert [(e["budget_id"], e["threshold"]) for e in events] == [("tight", "100%")]


def _adapter(path, port: int):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "costwarden.testing.clickhouse_http", "--path", str(path),
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip()  # the port, once it serves
    return proc


def test_clickhouse_down_worker_waits_with_lag_then_stores_everything_once(kafka_broker, tmp_path, spawn):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://default:@127.0.0.1:{port}"
    ch = _adapter(tmp_path / "ch", port)
    env = h.worker_env(kafka_broker.bootstrap, url, h.unique("k"), tmp_path / "w", h.unique("cw"))
    worker = spawn(env, tmp_path / "w.log")
    metrics_port = worker.metrics_port()
    lines = h.demo_lines(8000, seed=9)
    truth = h.truth(lines)
    try:
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[:3000])
        store = ClickHouseStore.from_url(url, env["COSTWARDEN_STORE__DATABASE"])
        h.wait_for(lambda: h.totals(store)["raw"][0] > 0, 60, what="first events stored")
        store.close()
        ch.kill()
        ch.wait()
        produce(kafka_broker.bootstrap, h.topic(env, "raw"), lines[3000:])

        def waiting():
            m = scrape(metrics_port)
            lag = sum(v for k, v in m.items() if k.startswith("costwarden_consumer_lag{") and ".raw" in k)
            failures = sum(v for k, v in m.items() if k.startswith("costwarden_clickhouse_write_failures_total"))
            return lag > 0 and failures > 0 and (lag, failures)
        try:
            h.wait_for(waiting, 90, interval=1, what="write failures and consumer lag in the metrics")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{scrape(metrics_port)}\n{worker.tail()}") from None
        ch = _adapter(tmp_path / "ch", port)
        store = ClickHouseStore.from_url(url, env["COSTWARDEN_STORE__DATABASE"])
        totals = settle(store, truth, [worker])
        h.wait_for(lambda: not waiting(), 30, interval=1, what="the lag to drain")
    finally:
        worker.stop()
        ch.kill()
    assert totals == expected(truth)


def test_cli_creates_topics_with_their_partitions_and_produces_a_file(kafka_broker, tmp_path, monkeypatch):
    import asyncio
    import json

    from aiokafka.admin import AIOKafkaAdminClient
    from click.testing import CliRunner

    from costwarden.cli import cli

    env = h.worker_env(kafka_broker.bootstrap, "chdb", "unused", tmp_path, h.unique("cli"))
    for k, v in env.items():
        if k.startswith("COSTWARDEN_KAFKA__"):
            monkeypatch.setenv(k, v)
    run = CliRunner().invoke(cli, ["topics", "create", "--json"], obj={})
    assert run.exit_code == 0, run.output
    assert len(json.loads(run.output)["created"]) == 6
    again = CliRunner().invoke(cli, ["topics", "create", "--json"], obj={})
    assert json.loads(again.output)["created"] == []  # idempotent

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            return await admin.describe_topics([h.topic(env, "raw"), h.topic(env, "budget_usage")])
        finally:
            await admin.close()
    parts = {t["topic"]: len(t["partitions"]) for t in asyncio.run(describe())}
    assert parts == {h.topic(env, "raw"): 4, h.topic(env, "budget_usage"): 2}

    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(h.demo_lines(300)) + b"\nnot json\n")
    run = CliRunner().invoke(cli, ["ingest-kafka", str(f), "--json"], obj={})
    assert run.exit_code == 0, run.output
    assert json.loads(run.output) == {"sent": 301, "without_event_id": 1, "topic": h.topic(env, "raw")}
    records = h.read_topic(kafka_broker.bootstrap, h.topic(env, "raw"), timeout_s=2)
    assert len(records) == 301
    assert records and all(k for k, _ in records)
