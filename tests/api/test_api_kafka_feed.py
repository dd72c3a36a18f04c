"""The distributed controls feed resyncs when the controls topic goes backwards, against a real
broker: the topic is deleted and re-created with other contents while a KafkaControlFeed follows
it. The feed notices the offsets went back, re-reads the whole topic and replaces the cache (a new
epoch): controls that are no longer in the topic are gone, and SSE clients / SDKs resync."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def _row(workflow: str, state: str, rate: str | None = None) -> bytes:
    from costwarden.distributed.state import to_json

    return to_json({"workflow": workflow, "version": time.time_ns(), "state": state, "rate_per_min": rate,
                    "reason": f"test {state}", "budget_id": "b", "period_start": None,
                    "set_at": datetime.now(timezone.utc), "expires_at": None, "set_by": "rule", "kept_by_person": 0})


async def _create(bootstrap: str, topic: str) -> None:
    from costwarden.distributed.topics import TopicSpec, create_topics_async

    await create_topics_async(bootstrap, [TopicSpec(topic, 2, 1, {"cleanup.policy": "compact"})])


async def _delete(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(100):  # deletion is asynchronous on the broker
            if topic not in await admin.list_topics():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"topic {topic} was not deleted")
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for key, value in records:
            await p.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await p.stop()


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def test_feed_resyncs_the_cache_when_the_controls_topic_goes_back(kafka_broker):
    from costwarden.api.decisions import DecisionCache
    from costwarden.api.kafka_feed import KafkaControlFeed, LoopThread
    from costwarden.budgets.controls import State

    bootstrap, topic = kafka_broker.bootstrap, f"controls-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(bootstrap, topic))
    # several records per workflow: the partitions' offsets get well ahead of the re-created topic's
    asyncio.run(_produce(bootstrap, topic, [("a", _row("a", "throttle", "60")), ("a", _row("a", "block")),
                                            ("b", _row("b", "throttle", "10")), ("b", _row("b", "block")),
                                            ("c", _row("c", "block")), ("c", _row("c", "block"))]))
    loop = LoopThread()
    cache = DecisionCache()
    feed = KafkaControlFeed(loop, bootstrap, topic, catch_up_timeout_s=60)
    try:
        feed.start(cache.apply)
        assert [cache.decide(w).action for w in "abc"] == [State.block] * 3
        epoch = cache.epoch

        # the topic is re-created and holds only a release of `a` (b's and c's blocks are gone)
        asyncio.run(_delete(bootstrap, topic))
        asyncio.run(_create(bootstrap, topic))
        asyncio.run(_produce(bootstrap, topic, [("a", _row("a", "allow"))]))
        t0 = time.monotonic()
        assert _wait(lambda: feed.resyncs >= 1 and cache.epoch != epoch and
                     [c.workflow for c in cache.controls()] == ["a"], 60), \
            (feed.resyncs, feed.failed, [(c.workflow, c.state) for c in cache.controls()])
        print(f"\nresynced {time.monotonic() - t0:.1f}s after the re-created topic got its record")
        assert [cache.decide(w).action for w in "abc"] == [State.allow] * 3
        assert cache.resume(f"{epoch}:{cache.version}") is None  # clients of the old epoch get a snapshot

        # and it keeps following the new topic
        asyncio.run(_produce(bootstrap, topic, [("d", _row("d", "block"))]))
        assert _wait(lambda: cache.decide("d").action is State.block, 30)
        assert feed.failed is None
    finally:
        feed.stop()
        loop.stop()
