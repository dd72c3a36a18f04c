"""kafka-python where a synchronous client fits, against a real broker: topic administration at
start (`costwarden topics create|describe`, workers, the API), `costwarden ingest FILE --to
kafka`, and, end to end, events from the CLI and from the SDK's KafkaReporter stored once by a
real `costwarden worker` with exact totals."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

import dist_harness as h
from costwarden.cli import cli
from costwarden.config import KafkaSettings
from costwarden.distributed.state import to_json
from costwarden.distributed.topics import create_topics_async, key_partition, topic_specs
from costwarden.events import parse_event

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    """Every record of a topic up to its end offsets now, as (partition, key, value)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end, out = c.end_offsets(parts), []
        deadline = time.monotonic() + 30
        while any(c.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                out += [(tp.partition, r.key, r.value) for r in recs]
        return out
    finally:
        c.close()


def describe(bootstrap: str, names: list[str]) -> dict[str, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if t["error_code"] == 0}
    finally:
        admin.close()


def kafka_env(monkeypatch, bootstrap: str, tmp_path, prefix: str) -> dict:
    env = h.worker_env(bootstrap, "chdb", "unused", tmp_path, h.unique(prefix))
    for k, v in env.items():
        if k.startswith("COSTWARDEN_KAFKA__"):
            monkeypatch.setenv(k, v)
    return env


def settings_of(env: dict) -> KafkaSettings:
    return KafkaSettings(**{k[len("COSTWARDEN_KAFKA__"):].lower(): v for k, v in env.items()
                            if k.startswith("COSTWARDEN_KAFKA__")})


def event(event_id: str, workflow: str = "support-bot", **over) -> dict:
    ev = {"event_id": event_id, "occurred_at": "2026-03-02T10:00:00+00:00", "source": "gateway",
          "provider": "openai", "model": "gpt-4o-mini", "tokens": {"input": 1200, "output": 300},
          "attribution": {"tags": {"workflow": workflow}}}
    ev.update(over)
    return ev


# --- 1. topics ----------------------------------------------------------------------------------
def test_topics_are_created_with_their_specs_and_existing_ones_are_left_alone(kafka_broker, tmp_path, monkeypatch):
    from kafka.admin import KafkaAdminClient

    env = kafka_env(monkeypatch, kafka_broker.bootstrap, tmp_path, "tp")
    raw, controls = h.topic(env, "raw"), h.topic(env, "controls")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics({raw: {"num_partitions": 2, "replication_factor": 1},           # 4 configured
                         controls: {"num_partitions": 4, "replication_factor": 1,
                                    "configs": {"cleanup.policy": "delete"}}})         # compact configured
    admin.close()

    run = CliRunner().invoke(cli, ["topics", "create", "--json"], obj={})
    assert run.exit_code == 2, run.output  # created what was missing, reported what differs
    out = json.loads(run.stdout)
    specs = topic_specs(settings_of(env))
    assert sorted(out["created"]) == sorted(s.name for s in specs if s.name not in (raw, controls))
    assert len(out["problems"]) == 3, out["problems"]  # raw partitions; controls cleanup.policy, segment.ms
    few = next(p for p in out["problems"] if raw in p)
    assert "has 2 partitions, 4 configured; left as it is" in few
    assert "COSTWARDEN_KAFKA__PARTITIONS=2" in few and f"kafka-topics.sh --alter --topic {raw} --partitions 4" in few
    policy = next(p for p in out["problems"] if "cleanup.policy" in p)
    assert f"--entity-name {controls} --add-config cleanup.policy=compact" in policy

    assert describe(kafka_broker.bootstrap, [s.name for s in specs]) == {
        s.name: 2 if s.name == raw else s.partitions for s in specs}  # never repartitioned
    details = {d["topic"]: d for d in out["details"]}
    for s in specs:
        if s.name not in (raw, controls):
            assert details[s.name]["configs"] == s.config and details[s.name]["status"] == "created"
    assert details[controls]["configs"]["cleanup.policy"] == "delete"  # left as it was

    again = CliRunner().invoke(cli, ["topics", "create", "--json"], obj={})
    assert json.loads(again.stdout)["created"] == []  # idempotent
    assert json.loads(again.stdout)["problems"] == out["problems"]
    text = CliRunner().invoke(cli, ["topics", "describe"], obj={})
    assert text.exit_code == 2 and f"{raw}: exists (2 of 4 partitions" in text.output


def test_describe_creates_nothing_and_the_api_start_creates_every_topic(kafka_broker, tmp_path, monkeypatch):
    env = kafka_env(monkeypatch, kafka_broker.bootstrap, tmp_path, "td")
    specs = topic_specs(settings_of(env))
    run = CliRunner().invoke(cli, ["topics", "describe", "--json"], obj={})
    assert run.exit_code == 2
    assert {d["status"] for d in json.loads(run.stdout)["details"]} == {"missing"}
    assert describe(kafka_broker.bootstrap, [s.name for s in specs]) == {}
    # the distributed API's start (costwarden/api/distributed.py) goes through create_topics_async
    created = asyncio.run(create_topics_async(kafka_broker.bootstrap, specs))
    assert sorted(created) == sorted(s.name for s in specs)
    assert asyncio.run(create_topics_async(kafka_broker.bootstrap, specs)) == []
    run = CliRunner().invoke(cli, ["topics", "describe", "--json"], obj={})
    assert run.exit_code == 0 and json.loads(run.stdout)["problems"] == []


# --- 2. costwarden ingest FILE --to kafka -------------------------------------------------------
BAD_LINES = {
    b"not json at all": "malformed_json",
    json.dumps({"event_id": "bad-missing", "occurred_at": "2026-03-02T10:00:00Z"}).encode(): "missing_field",
    json.dumps(event("bad-negative", tokens={"input": -5})).encode(): "negative_value",
    json.dumps(event("bad-content", prompt="what is the meaning of life")).encode(): "content_field",
    b"[1, 2, 3]": "not_an_object",
}


def test_ingest_to_kafka_puts_exactly_the_valid_events_on_raw_and_the_rest_on_the_dead_letter_topic(
        kafka_broker, tmp_path, monkeypatch):
    env = kafka_env(monkeypatch, kafka_broker.bootstrap, tmp_path, "ing")
    good = [event(f"cli-{i:03d}", workflow=f"wf-{i % 3}") for i in range(40)]
    lines = [json.dumps(e).encode() for e in good]
    for i, bad in enumerate(BAD_LINES):  # bad lines between good ones: no neighbour fails with them
        lines.insert(3 + 7 * i, bad)
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n\n")

    run = CliRunner().invoke(cli, ["ingest", str(f), "--to", "kafka", "--json", "--source-name", "cli-test"],
                             obj={})
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["accepted"] == 40 and summary["rejected"] == len(BAD_LINES)
    assert summary["dead_lettered"] == {r: 1 for r in BAD_LINES.values()}
    assert [r["line"] for r in summary["rejects"]] == [lines.index(b) + 1 for b in BAD_LINES]

    raw = read_topic(kafka_broker.bootstrap, h.topic(env, "raw"))
    assert sorted(k for _, k, _ in raw) == sorted(e["event_id"].encode() for e in good)  # exactly, once each
    for part, key, value in raw:  # the API's encoding, on the partition every producer picks for the id
        ev = parse_event(next(x for x in lines if key.decode() in x.decode()))
        assert value == to_json(ev.model_dump(mode="json", exclude_none=True))
        assert part == key_partition(key, 4)

    dead = read_topic(kafka_broker.bootstrap, h.topic(env, "dead_letter"))
    assert len(dead) == len(BAD_LINES) and {k for _, k, _ in dead} == {b"cli-test"}
    rows = [json.loads(v) for _, _, v in dead]
    assert {r["payload"].encode(): r["reason"] for r in rows} == BAD_LINES
    assert set(rows[0]) == {"received_at", "source", "reason", "detail", "payload", "payload_sha256"}
    assert all(r["source"] == "cli-test" and r["detail"] for r in rows)

    human = CliRunner().invoke(cli, ["ingest", str(f), "--to", "kafka"], obj={})
    assert human.exit_code == 0 and f"40 events produced to {h.topic(env, 'raw')}" in human.output
    assert "line 4: malformed_json" in human.output  # each rejected line named (on stderr)


def test_ingest_to_kafka_exit_codes_broker_unreachable_and_nothing_valid(kafka_broker, tmp_path, monkeypatch):
    from costwarden.api.server import free_port

    env = kafka_env(monkeypatch, kafka_broker.bootstrap, tmp_path, "ex")
    f = tmp_path / "events.jsonl"
    f.write_bytes(json.dumps(event("down-1")).encode() + b"\n")
    t0 = time.monotonic()
    run = CliRunner().invoke(cli, ["ingest", str(f), "--to", "kafka", "--json", "--timeout", "2",
                                   "--bootstrap", f"127.0.0.1:{free_port()}"], obj={})
    assert run.exit_code == 1 and time.monotonic() - t0 < 15
    assert "no Kafka broker answered" in run.output and "nothing was produced" in run.output
    assert "accepted" not in run.output

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(BAD_LINES) + b"\n")
    run = CliRunner().invoke(cli, ["ingest", str(bad), "--to", "kafka", "--json"], obj={})
    assert run.exit_code == 3 and json.loads(run.stdout)["accepted"] == 0
    assert len(read_topic(kafka_broker.bootstrap, h.topic(env, "dead_letter"))) == len(BAD_LINES)
    assert read_topic(kafka_broker.bootstrap, h.topic(env, "raw")) == []


def test_ingest_to_kafka_when_the_broker_goes_away_mid_file_fails_and_a_second_run_completes(
        kafka_broker, tmp_path, monkeypatch):
    if not hasattr(kafka_broker, "proc"):
        pytest.skip("the broker is not ours to stop")
    from costwarden.config import load_settings
    from costwarden.distributed.kafka_ingest import IngestIncomplete, produce_validated

    env = kafka_env(monkeypatch, kafka_broker.bootstrap, tmp_path, "mid")
    lines = [json.dumps(event(f"mid-{i:04d}")).encode() for i in range(4000)]

    def stream():  # the broker dies after the first half was handed to the producer
        yield from lines[:2000]
        time.sleep(0.5)
        kafka_broker.stop(hard=True)
        yield from lines[2000:]

    try:
        with pytest.raises(IngestIncomplete) as e:
            produce_validated(load_settings(), stream(), timeout_s=2)
    finally:
        kafka_broker.start()
    msg = str(e.value)
    assert "did not acknowledge" in msg and "Producing the file again is safe" in msg
    acked = e.value.report.accepted
    assert 0 < acked < 4000 and acked + e.value.report.unacknowledged == 4000
    assert f"{acked} event(s) and 0 dead letter(s) were acknowledged" in msg
    assert len({k for _, k, _ in read_topic(kafka_broker.bootstrap, h.topic(env, "raw"))}) >= acked
    rep = produce_validated(load_settings(), lines, timeout_s=10)  # again: every event is there
    assert rep.accepted == 4000
    assert {k for _, k, _ in read_topic(kafka_broker.bootstrap, h.topic(env, "raw"))} == {
        f"mid-{i:04d}".encode() for i in range(4000)}


# --- 3. end to end: the CLI and the SDK reporter into a real worker ------------------------------
def test_events_from_the_cli_and_the_sdk_reporter_are_stored_once_by_a_worker(
        kafka_broker, clickhouse_url, tmp_path, monkeypatch, spawn):
    from costwarden.api.server import free_port
    from costwarden.sdk import Costwarden
    from costwarden.sdk.kafka_reporter import KafkaReporter
    from costwarden.store.clickhouse_store import ClickHouseStore

    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("kp"), tmp_path / "w", h.unique("cw"))
    for k, v in env.items():
        if k.startswith("COSTWARDEN_KAFKA__"):
            monkeypatch.setenv(k, v)
    worker = spawn(env, tmp_path / "w.log")
    worker.metrics_port()  # started: it created the topics (kafka-python) first
    assert describe(kafka_broker.bootstrap, [h.topic(env, "raw"), h.topic(env, "budget_usage")]) == {
        h.topic(env, "raw"): 4, h.topic(env, "budget_usage"): 2}

    cli_lines = h.demo_lines(3000, seed=21)  # ~1% re-deliveries, a few invalid events
    sdk_events = []
    for line in h.demo_lines(400, seed=22):
        ev = json.loads(line)
        ev["event_id"] = "sdk-" + ev["event_id"]
        sdk_events.append(ev)
    sdk_events += [json.loads(line) for line in cli_lines[100:120]]  # reported by both: counted once
    truth = h.truth(cli_lines + [json.dumps(e).encode() for e in sdk_events])
    cli_truth = h.truth(cli_lines)

    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(cli_lines) + b"\n")
    run = CliRunner().invoke(cli, ["ingest", str(f), "--to", "kafka", "--json"], obj={})
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["rejected"] == cli_truth["dead"] and summary["accepted"] == len(cli_lines) - cli_truth["dead"]

    half = len(sdk_events) // 2
    with KafkaReporter(kafka_broker.bootstrap, topic=h.topic(env, "raw"),
                       dead_letter_topic=h.topic(env, "dead_letter")) as reporter:
        assert all(reporter.report(e) for e in sdk_events[:half])
        assert reporter.flush(60), reporter.stats
    guard = Costwarden(f"http://127.0.0.1:{free_port()}", "cw_x", kafka_bootstrap=kafka_broker.bootstrap,
                       kafka_topic=h.topic(env, "raw"), kafka_dead_letter_topic=h.topic(env, "dead_letter"))
    assert all(guard.report(e) for e in sdk_events[half:])
    assert guard.close(timeout=60), guard.stats
    sdk_rejected = reporter.rejected + guard.stats["rejected"]
    assert reporter.sent + guard.stats["sent"] + sdk_rejected == len(sdk_events)

    store = ClickHouseStore.from_url(clickhouse_url, env["COSTWARDEN_STORE__DATABASE"])
    try:
        h.wait_for(lambda: h.totals(store)["raw"][0] >= truth["events"], 120, what="all events stored")
    except AssertionError:
        raise AssertionError(f"{h.totals(store)} vs {truth}\n{worker.tail()}") from None
    time.sleep(2)  # nothing more may arrive
    totals = h.totals(store)
    worker.stop()
    pair = (truth["events"], truth["cost_nanos"])
    assert totals == {"raw": pair, "minute": pair, "hour": pair, "day": pair}
    assert summary["rejected"] + sdk_rejected == truth["dead"]
