"""`costwarden ingest-kafka`: produce canonical events (JSON lines) to the raw usage topic.

Records are keyed by event_id (read from the payload; the whole line is sent unchanged), so a
redelivered event lands on the partition, and usually in the dedupe window, of the worker that
saw it first. The producer is idempotent (acks=all, enable_idempotence): a producer retry does
not duplicate a record. Lines that are not JSON objects are still sent (key = sha256 of the line):
the worker dead-letters them with the reason, so nothing is dropped silently.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass
class ProduceReport:
    sent: int = 0
    unkeyed: int = 0  # not a JSON object with an event_id: keyed by content, dead-lettered downstream


def record_key(line: bytes) -> tuple[bytes, bool]:
    try:
        obj = json.loads(line)
        if isinstance(obj, dict) and isinstance(obj.get("event_id"), str) and obj["event_id"]:
            return obj["event_id"].encode(), True
    except (ValueError, RecursionError):  # not JSON, a 5,000-digit number, a lone surrogate, deep nesting
        pass
    return hashlib.sha256(line).hexdigest().encode(), False


async def produce_async(bootstrap: str, topic: str, lines: Iterable[bytes],
                        progress: Callable[[int], None] | None = None, linger_ms: int = 5) -> ProduceReport:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=linger_ms, max_batch_size=512 * 1024)
    await producer.start()
    report = ProduceReport()
    pending = []
    try:
        for line in lines:
            key, ok = record_key(line)
            report.unkeyed += not ok
            pending.append(await producer.send(topic, value=line, key=key))
            report.sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                if progress:
                    progress(len(pending))
                pending = []
        if pending:
            await asyncio.gather(*pending)
            if progress:
                progress(len(pending))
    finally:
        await producer.stop()
    return report


def produce(bootstrap: str, topic: str, lines: Iterable[bytes], progress=None) -> ProduceReport:
    return asyncio.run(produce_async(bootstrap, topic, lines, progress))
