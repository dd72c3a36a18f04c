"""The Kafka topics of the distributed runtime: names, partitions, retention, compaction.

Every topic is created explicitly (never by broker auto-creation, which would give it the
broker's default partition count) from `KafkaSettings`:

    usage.raw          keyed by event_id: a redelivered event lands on the same partition
    usage.deadletter   original payload + reason + source, keyed by source
    usage.processed    priced, attributed rows, keyed by workflow
    usage.by-budget    internal: per-batch usage per budget, keyed by budget id (one owner per budget)
    budget.events      threshold crossings and spikes, keyed by budget id
    controls           compacted, keyed by workflow: the latest Control per workflow (JSON)
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from costwarden.config import KafkaSettings

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000


def key_partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to, as the producers compute it: Faust's producer (no
    `producer_partitioner` set) and `ingest-kafka` use aiokafka's DefaultPartitioner, which is the
    Java client's: murmur2(key) & 0x7fffffff, modulo the number of partitions, indexing the
    partition ids in order (0..n-1). So a worker can tell which budget ids the by-budget
    partitions it holds cover (costwarden/distributed/app.py: alert delivery)."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def budget_partition(budget_id: str, partitions: int) -> int:
    """The `usage.by-budget` partition of a budget id (records are keyed by the id's UTF-8)."""
    return key_partition(budget_id.encode(), partitions)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)

    def kafka_topics_args(self) -> list[str]:
        """Arguments for Kafka's own `kafka-topics.sh --create` (docker-compose's setup step)."""
        args = ["--create", "--if-not-exists", "--topic", self.name, "--partitions", str(self.partitions),
                "--replication-factor", str(self.replication)]
        for k, v in sorted(self.config.items()):
            args += ["--config", f"{k}={v}"]
        return args


def topic_specs(k: KafkaSettings) -> list[TopicSpec]:
    def delete(hours: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(hours * HOUR_MS)}

    r = k.replication_factor
    return [
        TopicSpec(k.topic_raw, k.partitions, r, delete(k.retention_hours)),
        TopicSpec(k.topic_dead_letter, k.partitions, r, delete(k.dead_letter_retention_hours)),
        TopicSpec(k.topic_processed, k.partitions, r, delete(k.retention_hours)),
        TopicSpec(k.topic_budget_usage, k.budget_partitions, r, delete(k.retention_hours)),
        TopicSpec(k.topic_budget_events, k.partitions, r, delete(k.budget_events_retention_hours)),
        TopicSpec(k.topic_controls, k.partitions, r,
                  {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": str(HOUR_MS)}),
    ]


async def create_topics_async(bootstrap: str, specs: list[TopicSpec], timeout_s: float = 60) -> list[str]:
    """Create the topics that do not exist yet; returns the names created now."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [s for s in specs if s.name not in existing]
        if todo:
            await admin.create_topics([NewTopic(s.name, s.partitions, s.replication, topic_configs=s.config)
                                       for s in todo])
        for s in specs:
            if s.name in existing:
                log.info("topic %s exists (partitions and retention are left as they are)", s.name)
        return [s.name for s in todo]
    finally:
        await admin.close()


def create_topics(bootstrap: str, specs: list[TopicSpec], attempts: int = 30) -> list[str]:
    """`create_topics_async` with retries while the broker is starting (compose start-up)."""
    from costwarden.errors import CostwardenError

    last: Exception | None = None
    for i in range(attempts):
        try:
            return asyncio.run(create_topics_async(bootstrap, specs))
        except Exception as e:  # broker not reachable yet, or a race with another creator
            last = e
            if "TopicAlreadyExists" in type(e).__name__ or "already exists" in str(e):
                return []
            log.warning("creating topics on %s failed (attempt %d of %d): %s", bootstrap, i + 1, attempts, e)
            import time

            time.sleep(min(1 + i, 5))
    raise CostwardenError(f"could not create Kafka topics on {bootstrap}: {last}")
