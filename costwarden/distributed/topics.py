"""The Kafka topics of the distributed runtime: names, partitions, retention, compaction.

Every topic is created explicitly (never by broker auto-creation, which would give it the
broker's default partition count) from `KafkaSettings`:

    usage.raw          keyed by event_id: a redelivered event lands on the same partition
    usage.deadletter   original payload + reason + source, keyed by source
    usage.processed    priced, attributed rows, keyed by workflow
    usage.by-budget    internal: per-batch usage per budget, keyed by budget id (one owner per budget)
    budget.events      threshold crossings and spikes, keyed by budget id
    controls           compacted, keyed by workflow: the latest Control per workflow (JSON)

Creating them (kafka-python's KafkaAdminClient, never changing an existing topic) is
topic_admin.py's; `create_topics` / `create_topics_async` here are its entry points at start.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# At module load, in the main thread, never lazily: a worker's alert delivery thread asks for
# budget partitions at start while the main thread imports Faust's Kafka driver, and two threads
# importing the aiokafka package at once can leave it without a submodule ("module 'aiokafka'
# has no attribute 'abc'", seen once in a restarted worker).
from aiokafka.partitioner import murmur2

from costwarden.config import KafkaSettings

HOUR_MS = 3_600_000


def key_partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to, as the producers compute it: Faust's producer (no
    `producer_partitioner` set) and `ingest-kafka` use aiokafka's DefaultPartitioner, `ingest --to
    kafka` and the SDK's KafkaReporter kafka-python's; both are the Java client's: murmur2(key) &
    0x7fffffff, modulo the number of partitions, indexing the partition ids in order (0..n-1). So
    a worker can tell which budget ids the by-budget partitions it holds cover
    (costwarden/distributed/app.py: alert delivery)."""
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
    partitions_setting: str = "COSTWARDEN_KAFKA__PARTITIONS"  # where a person sets `partitions`

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
        TopicSpec(k.topic_budget_usage, k.budget_partitions, r, delete(k.retention_hours),
                  "COSTWARDEN_KAFKA__BUDGET_PARTITIONS"),
        TopicSpec(k.topic_budget_events, k.partitions, r, delete(k.budget_events_retention_hours)),
        TopicSpec(k.topic_controls, k.partitions, r,
                  {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": str(HOUR_MS)}),
    ]


async def create_topics_async(bootstrap: str, specs: list[TopicSpec], timeout_s: float = 60) -> list[str]:
    """Create the topics that do not exist yet (in a thread: kafka-python is synchronous); returns
    the names created now. Differences of existing topics from their specs are logged."""
    from costwarden.distributed.topic_admin import ensure_topics, log

    states = await asyncio.to_thread(ensure_topics, bootstrap, specs, timeout_s=timeout_s)
    for st in states:
        for p in st.problems:
            log.warning(p)
    return [st.name for st in states if st.status == "created"]


def create_topics(bootstrap: str, specs: list[TopicSpec], attempts: int = 30) -> list[str]:
    """The same, retried while the broker is starting (compose start-up)."""
    from costwarden.distributed.topic_admin import create_topics as create

    return [st.name for st in create(bootstrap, specs, attempts) if st.status == "created"]
