"""`KafkaReporter`: usage straight to the raw usage topic with kafka-python, instead of through
the API (opt-in: `Costwarden(url, token, kafka_bootstrap="kafka:9092")`, or on its own for a
gateway that only reports).

Each event is validated here as the API validates it (`parse_event`) and produced as the API
produces it in distributed mode (costwarden/distributed/kafka_ingest.py `encode`): a valid one
to the raw topic keyed by event_id with the canonical JSON value, an invalid one to the
dead-letter topic with the reason (counted in `rejected`, kept in `last_rejects`). The producer
is idempotent with acks=all; an event counts as `sent` once the broker acknowledged it.

When the broker is down or slow (the contract, tested in tests/sdk/test_sdk_kafka_reporter.py):
    report()       never waits for Kafka: it appends to a bounded buffer (`max_buffer`) and
                   returns; a full buffer refuses the event: report() returns False, `dropped`
                   counts it and a warning names its event_id.
    the sender     (a background thread) connects lazily (and checks that the topics exist:
                   it never creates one by producing to it), waits at most `timeout_s` for a
                   connection and about 2 x `timeout_s` for acknowledgements, and puts every event
                   not acknowledged back at the head of the buffer, in order, to be retried after
                   a backoff (0.1 s doubling to 5 s) with a new producer, for as long as it runs.
                   `failures` counts failed attempts, `last_error` says why (None again after a
                   success); a warning is logged at the first failure and at most once a minute
                   while it lasts, and a line when delivery resumes. A retried event may reach the
                   topic twice; the workers count each event_id once.
    close()        flushes for up to `timeout` s; what is still unsent is logged as an error
                   with its count, stays in `pending`, and is returned by `unsent()` (to keep it
                   elsewhere); close() then returns False.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from costwarden.sdk.reporter import BufferedReporter, log

WARN_EVERY_S = 60.0


class KafkaReporter(BufferedReporter):
    thread_name = "costwarden-sdk-kafka"

    def __init__(self, bootstrap: str, *, topic: str = "usage.raw", dead_letter_topic: str = "usage.deadletter",
                 source: str = "sdk", max_buffer: int = 10_000, batch_size: int = 500,
                 flush_interval_s: float = 0.5, timeout_s: float = 5.0, limits=None, **producer_config: Any) -> None:
        """`producer_config`: more kafka-python KafkaProducer settings (security_protocol, sasl_*,
        ssl_*); never logged. No network here: the sender thread connects."""
        try:
            import kafka  # noqa: F401
        except ImportError:
            from costwarden.errors import ConfigError

            raise ConfigError("the direct-to-Kafka reporter needs kafka-python: "
                              "pip install 'costwarden[distributed]'") from None
        self.bootstrap, self.topic, self.dead_letter_topic, self.source = bootstrap, topic, dead_letter_topic, source
        self.timeout_s = timeout_s
        self.limits = limits
        self._config = producer_config
        self._producer = None
        self._failing_since: float | None = None
        self._warned_at = 0.0
        super().__init__(max_buffer, batch_size, flush_interval_s)

    # --- on its own (Costwarden uses add / flush / stop) ---------------------------------------
    def report(self, usage: Any) -> bool:
        """Queue a usage event (UsageEvent or dict); False if the bounded buffer is full (counted)."""
        return self.add(usage)

    @property
    def stats(self) -> dict:
        return {"pending": self.pending, "sent": self.sent, "dropped": self.dropped, "rejected": self.rejected,
                "failures": self.failures, "last_error": self.last_error}

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for up to `timeout` s, then stop; False if some usage stayed unsent (see unsent())."""
        ok = self.flush(timeout)
        self.stop(join_s=0.5)
        return ok and not self.pending

    def __enter__(self) -> "KafkaReporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self, join_s: float = 1.0) -> None:
        super().stop(join_s)
        self._discard_producer(1.0)
        left = self.pending
        if left:
            log.error("costwarden SDK: stopped with %d usage event(s) not delivered to Kafka at %s (%s); "
                      "they are in KafkaReporter.unsent()", left, self.bootstrap, self.last_error or "not sent yet")

    # --- the sender thread ----------------------------------------------------------------------
    def _connect(self):
        from costwarden.distributed.kafka_ingest import producer
        from costwarden.distributed.topic_admin import missing_topics

        missing = missing_topics(self.bootstrap, [self.topic, self.dead_letter_topic], self.timeout_s, **self._config)
        if missing:  # never created by producing to it (the broker's default partition count)
            raise LookupError(f"topic {', '.join(missing)} does not exist at {self.bootstrap}: "
                              f"run `costwarden topics create` (or start a worker)")
        return producer(self.bootstrap, self.timeout_s, client_id="costwarden-sdk", **self._config)

    def _discard_producer(self, timeout: float = 0.0) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            try:
                p.close(timeout=timeout)
            except Exception:
                pass

    def _send(self, batch: list[dict]) -> list[dict]:
        from costwarden.distributed.kafka_ingest import encode

        if self._producer is None:
            try:
                self._producer = self._connect()
            except Exception as e:  # KafkaUnavailable: no broker answered within timeout_s
                return self._failed(batch, e)
        p, now = self._producer, datetime.now(timezone.utc)
        futures, retry, error = [], [], None
        for payload in batch:
            rec = encode(payload, self.source, self.topic, self.dead_letter_topic, self.limits, now)
            try:
                futures.append((payload, rec, p.send(rec.topic, key=rec.key, value=rec.value)))
            except Exception as e:  # no metadata within timeout_s (broker gone, topic missing)
                retry.append(payload)
                error = error or e
        try:
            p.flush(timeout=2 * self.timeout_s + 5)  # each record is done (acked or failed) before this
        except Exception as e:
            error = error or e
        rejects = []
        for payload, rec, fut in futures:
            if not fut.is_done or fut.failed():
                retry.append(payload)
                error = error or (fut.exception if fut.is_done else TimeoutError("not acknowledged in time"))
            elif rec.reason:
                rejects.append({"event_id": payload.get("event_id"), "status": "rejected", "reason": rec.reason,
                                "detail": rec.detail})
            else:
                self.sent += 1
        if rejects:
            self.rejected += len(rejects)
            self.last_rejects = (self.last_rejects + rejects)[-20:]
            log.warning("costwarden SDK: %d event(s) invalid, sent to %s, e.g. %s: %s", len(rejects),
                        self.dead_letter_topic, rejects[0]["reason"], rejects[0]["detail"][:200])
        if retry:
            order = {id(x): i for i, x in enumerate(batch)}
            return self._failed(sorted(retry, key=lambda x: order[id(x)]), error)
        if self._failing_since is not None:
            log.warning("costwarden SDK: Kafka at %s takes usage again after %.0f s of failures", self.bootstrap,
                        time.monotonic() - self._failing_since)
        self._failing_since, self._warned_at = None, 0.0
        self.last_error = None
        return []

    def _failed(self, retry: list[dict], error: BaseException | None) -> list[dict]:
        """Keep `retry` for the next attempt, with a new producer (a fresh connection and session)."""
        self._discard_producer()
        self.last_error = f"{type(error).__name__}: {error}"[:300] if error else "not delivered"
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("costwarden SDK: Kafka at %s did not take %d usage event(s) (%s); kept for retry, "
                        "%d pending", self.bootstrap, len(retry), self.last_error, self.pending)
        return retry
