"""Canonical events straight to Kafka with kafka-python's synchronous `KafkaProducer`: the
records `POST /v1/events` produces in distributed mode (costwarden/api/distributed.py), made by
`encode` for `costwarden ingest FILE --to kafka` (here) and the SDK's KafkaReporter:

    a valid event     -> the raw topic, key = event_id, value = the canonical event as JSON
                         (`model_dump(mode="json", exclude_none=True)` through `state.to_json`),
                         so the workers read it exactly as they read the API's
    an invalid one    -> the dead-letter topic, key = source, value = the dead-letter row
                         (received_at, source, reason, detail, payload, payload_sha256)

Validation is `parse_event` with the configured limits, as the embedded pipeline and the API do.
The producer is idempotent with acks=all, and a record counts only once the broker acknowledged
it. Broker unreachable at start: KafkaUnavailable, nothing produced. Broker lost mid-file: the
records it did not acknowledge are counted as such and the run fails (KafkaUnavailable); those it
acknowledged stay, and producing the file again is safe: the workers count each event_id once.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from costwarden.distributed.topic_admin import KafkaUnavailable

MAX_REJECTS_KEPT = 50
DRAIN_EVERY = 5000  # records in flight before we wait for their acknowledgements


@dataclass(frozen=True)
class Encoded:
    topic: str
    key: bytes
    value: bytes
    reason: str = ""   # set for a dead letter
    detail: str = ""
    event_id: str = ""


def encode(payload: Any, source: str, raw_topic: str, dead_letter_topic: str, limits=None,
           now: datetime | None = None) -> Encoded:
    """One event (JSON bytes/text or a mapping) -> its record, on the raw or the dead-letter topic."""
    from costwarden.distributed.state import to_json
    from costwarden.errors import InvalidEventError
    from costwarden.events import parse_event
    from costwarden.streams.process import dead_letter

    now = now or datetime.now(timezone.utc)
    try:
        ev = parse_event(payload, limits, now=now)
    except InvalidEventError as e:
        row = dead_letter(payload, source, e.reason, e.detail, now).row()
        return Encoded(dead_letter_topic, source.encode(), to_json(row), e.reason, e.detail)
    return Encoded(raw_topic, ev.event_id.encode(), to_json(ev.model_dump(mode="json", exclude_none=True)),
                   event_id=ev.event_id)


def producer(bootstrap: str, timeout_s: float = 30.0, **client_config):
    """An idempotent, acks=all producer that never creates a topic by producing to it (the
    broker's default partition count would be wrong); KafkaUnavailable when no broker answers."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    ms = int(timeout_s * 1000)
    try:
        return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                             batch_size=256 * 1024, allow_auto_create_topics=False, bootstrap_timeout_ms=ms,
                             max_block_ms=ms, request_timeout_ms=ms, delivery_timeout_ms=2 * ms + 10,
                             **client_config)
    except KafkaError as e:
        raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s "
                               f"({type(e).__name__}); nothing was produced") from None


class IngestIncomplete(KafkaUnavailable):
    """The broker did not acknowledge every record; `report` says what it did acknowledge."""

    def __init__(self, message: str, report: "IngestReport") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class IngestReport:
    topic: str
    dead_letter_topic: str
    accepted: int = 0                                   # on the raw topic, acknowledged
    rejected: Counter = field(default_factory=Counter)  # on the dead-letter topic, by reason
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, detail), the first ones
    unacknowledged: int = 0                             # sent, not acknowledged by the broker
    error: str | None = None

    def summary(self) -> dict:
        return {"accepted": self.accepted, "rejected": sum(self.rejected.values()),
                "dead_lettered": dict(self.rejected), "topic": self.topic,
                "dead_letter_topic": self.dead_letter_topic}


def produce_validated(settings, lines: Iterable[bytes], source: str = "ingest", timeout_s: float = 30.0,
                      progress: Callable[[int], None] | None = None) -> IngestReport:
    """Validate and produce each line; raises KafkaUnavailable when no broker answers (nothing
    produced), IngestIncomplete (its `report` and message say what was acknowledged) when the
    broker does not acknowledge every record."""
    from costwarden.distributed.topic_admin import ensure_topics, log
    from costwarden.distributed.topics import topic_specs

    k = settings.kafka
    try:
        states = ensure_topics(k.bootstrap_servers, topic_specs(k), timeout_s=timeout_s)  # never auto-created
    except KafkaUnavailable as e:
        raise KafkaUnavailable(f"{e}; nothing was produced") from None
    for st in states:
        for p in st.problems:
            log.warning(p)
    rep = IngestReport(k.topic_raw, k.topic_dead_letter)
    limits = settings.limits.limits()
    p = producer(k.bootstrap_servers, timeout_s)
    inflight: list[tuple[int, Encoded, Any]] = []
    try:
        for n, line in enumerate(lines, 1):
            rec = encode(line, source, k.topic_raw, k.topic_dead_letter, limits)
            try:
                inflight.append((n, rec, p.send(rec.topic, key=rec.key, value=rec.value)))
            except Exception as e:  # KafkaTimeoutError: no metadata within max_block_ms (broker gone)
                rep.unacknowledged += 1
                rep.error = rep.error or f"{type(e).__name__}: {e}"
            if len(inflight) >= DRAIN_EVERY:
                _drain(p, inflight, rep, timeout_s, progress)
        _drain(p, inflight, rep, timeout_s, progress)
    finally:
        p.close(timeout=5)
    if rep.unacknowledged:
        raise IngestIncomplete(
            f"the Kafka broker at {k.bootstrap_servers} did not acknowledge {rep.unacknowledged} record(s) "
            f"({rep.error}); {rep.accepted} event(s) and {sum(rep.rejected.values())} dead letter(s) were "
            f"acknowledged before that. Producing the file again is safe: the workers count each event_id once",
            rep)
    return rep


def _drain(p, inflight: list, rep: IngestReport, timeout_s: float, progress) -> None:
    """Wait for the records in flight; count each by its acknowledgement."""
    try:
        p.flush(timeout=2 * timeout_s + 5)  # the delivery timeout (2 x timeout_s) fails a record before
    except Exception:
        pass  # the futures say which records failed
    for n, rec, fut in inflight:
        if not fut.is_done or fut.failed():
            rep.unacknowledged += 1
            exc = fut.exception if fut.is_done else "not acknowledged in time"
            rep.error = rep.error or (f"{type(exc).__name__}: {exc}" if fut.is_done else str(exc))
        elif rec.reason:
            rep.rejected[rec.reason] += 1
            if len(rep.rejects) < MAX_REJECTS_KEPT:
                rep.rejects.append((n, rec.reason, rec.detail))
        else:
            rep.accepted += 1
    if progress:
        progress(len(inflight))
    inflight.clear()
