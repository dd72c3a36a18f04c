"""The Kafka test broker is a real broker: plain and transactional produce, consume, restart."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from costwarden.testing.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


async def _create_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def _consume(bootstrap: str, topic: str, n: int, isolation: str = "read_committed") -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                                auto_offset_reset="earliest", isolation_level=isolation, enable_auto_commit=False)
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(r.value for r in records)
        extra = await consumer.getmany(timeout_ms=300)  # nothing beyond what was sent
        got.extend(r.value for records in extra.values() for r in records)
    finally:
        await consumer.stop()
    return got


def test_hundred_messages_round_trip(kafka_broker):
    async def run():
        topic = await _create_topic(kafka_broker.bootstrap, partitions=3)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(100):
                await producer.send(topic, f"m{i}".encode(), key=str(i % 7).encode())
            await producer.flush()
        finally:
            await producer.stop()
        return await _consume(kafka_broker.bootstrap, topic, 100)

    got = asyncio.run(run())
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(100))


def test_transactional_producer_commits_and_aborts(kafka_broker):
    async def run():
        topic = await _create_topic(kafka_broker.bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id=f"tx-{topic}")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(100):
                    await producer.send(topic, f"c{i}".encode())
            await producer.begin_transaction()
            for i in range(10):
                await producer.send(topic, f"aborted{i}".encode())
            await producer.abort_transaction()
        finally:
            await producer.stop()
        return await _consume(kafka_broker.bootstrap, topic, 100)

    got = asyncio.run(run())
    # A read_committed consumer sees exactly the committed 100, in order, and none of the aborted.
    assert got == [f"c{i}".encode() for i in range(100)]


def test_restart_keeps_data_and_address(kafka_broker):
    if not isinstance(kafka_broker, KafkaBroker):
        pytest.skip("the broker in use is not ours to restart")

    async def produce(topic: str, prefix: str) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"{prefix}{i}".encode())
        finally:
            await producer.stop()

    topic = asyncio.run(_create_topic(kafka_broker.bootstrap))
    asyncio.run(produce(topic, "before"))
    address = kafka_broker.bootstrap
    kafka_broker.restart()
    assert kafka_broker.bootstrap == address
    asyncio.run(produce(topic, "after"))
    got = asyncio.run(_consume(kafka_broker.bootstrap, topic, 10))
    assert got == [f"before{i}".encode() for i in range(5)] + [f"after{i}".encode() for i in range(5)]
