"""The SDK's direct-to-Kafka reporter (costwarden/sdk/kafka_reporter.py) against a real broker:
records keyed by event_id in the API's encoding, invalid events dead-lettered with the reason,
and what happens while the broker is down: report() never waits, the buffer is bounded and a
refused event is counted and logged, failed attempts are counted and retried, a restarted
broker gets every event, and close() says what stayed unsent."""
from __future__ import annotations

import logging
import time

import pytest

from sdk_helpers import free_port, usage, wait_for
from costwarden.config import KafkaSettings
from costwarden.distributed.state import to_json
from costwarden.distributed.topic_admin import ensure_topics
from costwarden.distributed.topics import topic_specs
from costwarden.events import parse_event
from costwarden.sdk import Costwarden
from costwarden.sdk.kafka_reporter import KafkaReporter
from costwarden.testing.fixtures import kafka_broker_fixture

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


@pytest.fixture(scope="module")
def kafka_broker():
    yield from kafka_broker_fixture()


@pytest.fixture
def topics(kafka_broker):
    """Fresh raw and dead-letter topics (2 partitions each), created as a worker creates them."""
    import uuid

    p = f"sdk{uuid.uuid4().hex[:8]}"
    k = KafkaSettings(topic_raw=f"{p}.raw", topic_dead_letter=f"{p}.deadletter", partitions=2)
    ensure_topics(kafka_broker.bootstrap, topic_specs(k)[:2])
    return k.topic_raw, k.topic_dead_letter


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end, out = c.end_offsets(parts), []
        deadline = time.monotonic() + 30
        while any(c.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out += [(r.key, r.value) for r in recs]
        return out
    finally:
        c.close()


def test_events_go_to_the_raw_topic_keyed_by_id_and_invalid_ones_to_the_dead_letter_topic(kafka_broker, topics):
    raw, dead = topics
    events = [usage(f"kr-{i}", "rag") for i in range(60)]
    bad = {"event_id": "kr-bad", "occurred_at": "2026-03-02T10:00:00Z", "source": "gateway"}
    with KafkaReporter(kafka_broker.bootstrap, topic=raw, dead_letter_topic=dead, source="sdk:test") as r:
        t0 = time.monotonic()
        assert all(r.report(e) for e in events[:30]) and r.report(bad) and all(r.report(e) for e in events[30:])
        assert time.monotonic() - t0 < 0.05  # report() only queues
        assert r.flush(30)
        assert r.stats == {"pending": 0, "sent": 60, "dropped": 0, "rejected": 1, "failures": 0, "last_error": None}
        assert r.last_rejects[0]["event_id"] == "kr-bad" and r.last_rejects[0]["reason"] == "missing_field"
    records = read_topic(kafka_broker.bootstrap, raw)
    assert sorted(k for k, _ in records) == sorted(e["event_id"].encode() for e in events)
    by_id = {e["event_id"]: e for e in events}
    for key, value in records:  # the value the API produces for the same event
        assert value == to_json(parse_event(by_id[key.decode()]).model_dump(mode="json", exclude_none=True))
    [(key, value)] = read_topic(kafka_broker.bootstrap, dead)
    assert key == b"sdk:test" and b'"reason":"missing_field"' in value and b"kr-bad" in value


def test_the_guard_reports_to_kafka_when_asked(kafka_broker, topics):
    raw, dead = topics
    guard = Costwarden(f"http://127.0.0.1:{free_port()}", "cw_x", kafka_bootstrap=kafka_broker.bootstrap,
                       kafka_topic=raw, kafka_dead_letter_topic=dead)
    try:
        assert all(guard.report(usage(f"g-{i}", "chat")) for i in range(25))
        assert guard.flush(30) and guard.stats["sent"] == 25 and guard.stats["last_error"] is None
    finally:
        assert guard.close(timeout=5)
    assert len(read_topic(kafka_broker.bootstrap, raw)) == 25


def test_a_missing_topic_is_never_created_by_reporting(kafka_broker, caplog):
    r = KafkaReporter(kafka_broker.bootstrap, topic="sdk-no-such-topic", dead_letter_topic="sdk-no-such-dl",
                      timeout_s=2)
    with caplog.at_level(logging.WARNING, logger="costwarden.sdk"):
        r.report(usage("nt-1", "rag"))
        assert wait_for(lambda: r.failures >= 1, 10)
        assert not r.close(timeout=0.2)
    assert "does not exist" in r.last_error and "costwarden topics create" in r.last_error
    assert [e["event_id"] for e in r.unsent()] == ["nt-1"]
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert "sdk-no-such-topic" not in admin.list_topics()
    finally:
        admin.close()


def test_broker_unreachable_bounded_buffer_counted_failures_and_a_close_that_says_what_is_unsent(caplog):
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    r = KafkaReporter(down, max_buffer=5, batch_size=2, timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="costwarden.sdk"):
        t0 = time.monotonic()
        results = [r.report(usage(f"down-{i}", "rag")) for i in range(7)]
        assert time.monotonic() - t0 < 0.05  # never waits for the broker
        assert results == [True] * 5 + [False] * 2
        assert r.dropped == 2 and r.pending == 5
        assert wait_for(lambda: r.failures >= 2, 15)  # retried, each attempt counted
        assert "no Kafka broker answered" in r.last_error and r.sent == 0
        t0 = time.monotonic()
        assert r.close(timeout=0.3) is False
        assert time.monotonic() - t0 < 3
    text = caplog.text
    assert "report buffer full" in text and "down-5" in text                       # each refusal named
    assert f"Kafka at {down} did not take" in text and text.count("did not take") == 1  # not a storm
    assert "stopped with 5 usage event(s) not delivered" in text
    assert sorted(e["event_id"] for e in r.unsent()) == [f"down-{i}" for i in range(5)]


def test_a_broker_restart_loses_nothing(kafka_broker, topics):
    if not hasattr(kafka_broker, "proc"):
        pytest.skip("the broker is not ours to restart")
    raw, dead = topics
    r = KafkaReporter(kafka_broker.bootstrap, topic=raw, dead_letter_topic=dead, timeout_s=2, batch_size=20)
    try:
        for i in range(50):
            r.report(usage(f"rs-{i}", "rag"))
        assert r.flush(30) and r.sent == 50
        kafka_broker.stop(hard=True)
        t0 = time.monotonic()
        assert all(r.report(usage(f"rs-{i}", "rag")) for i in range(50, 100))
        assert time.monotonic() - t0 < 0.05
        assert wait_for(lambda: r.failures >= 1 and r.last_error is not None, 30)
        assert r.pending > 0
        kafka_broker.start()
        assert r.flush(120), r.stats
        assert r.sent == 100 and r.last_error is None
    finally:
        r.close(timeout=1)
    keys = {k for k, _ in read_topic(kafka_broker.bootstrap, raw)}
    assert keys == {f"rs-{i}".encode() for i in range(100)}  # every event; a retried one may be there twice
