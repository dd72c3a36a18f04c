"""Usage reporting in the background: a bounded buffer, batches, retry with backoff.

`BufferedReporter` holds what every reporter shares: `add()` never blocks on the network (a lock
and a deque), a sender thread takes batches, `_send(batch)` returns the events to try again
(in order; retried first, after a backoff of 0.1 s doubling to 5 s), `flush()` waits for the
buffer to empty. `Reporter` posts batches to the API's /v1/events; `KafkaReporter`
(kafka_reporter.py) produces them straight to the raw usage topic.

Nothing is dropped silently: `pending` counts what is not yet acknowledged, an event refused by
a full buffer is counted in `dropped` and logged, and events refused as invalid are counted in
`rejected` with the reasons kept in `last_rejects`. `last_error` says why the last attempt
failed and is cleared by the next one that succeeds; `failures` counts failed attempts.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import httpx

log = logging.getLogger("costwarden.sdk")


def as_payload(usage: Any) -> dict:
    if hasattr(usage, "model_dump"):
        return usage.model_dump(mode="json", exclude_none=True)
    if isinstance(usage, dict):
        return usage
    raise TypeError("report() takes a costwarden.events.UsageEvent or a dict in its shape")


class BufferedReporter:
    thread_name = "costwarden-sdk-report"

    def __init__(self, max_buffer: int, batch_size: int, flush_interval_s: float) -> None:
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buf: deque[dict] = deque()
        self._batch: list[dict] = []  # taken by the sender, not yet delivered
        self._cv = threading.Condition()
        self._stop = False
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.failures = 0
        self.last_rejects: list[dict] = []
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _send(self, batch: list[dict]) -> list[dict]:
        """Deliver a batch; returns the events to try again (empty: all delivered or rejected)."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._buf) + len(self._batch)

    def add(self, usage: Any) -> bool:
        payload = as_payload(usage)
        with self._cv:
            if len(self._buf) + len(self._batch) >= self.max_buffer:
                self.dropped += 1
                log.warning("costwarden SDK: report buffer full (%d pending); event %s NOT queued "
                            "(dropped so far: %d)", self.max_buffer, payload.get("event_id"), self.dropped)
                return False
            self._buf.append(payload)
            if len(self._buf) >= self.batch_size:
                self._cv.notify_all()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            self._cv.notify_all()
            while self._buf or self._batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
                self._cv.notify_all()
        return True

    def stop(self, join_s: float = 1.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(join_s)

    def _take(self) -> list[dict]:
        with self._cv:
            while not self._buf and not self._stop:
                self._cv.wait(self.flush_interval_s)
            if len(self._buf) < self.batch_size and not self._stop:
                self._cv.wait(self.flush_interval_s)  # let a batch gather (flush() wakes us early)
            n = min(len(self._buf), self.batch_size)
            self._batch = [self._buf.popleft() for _ in range(n)]
            return self._batch

    def unsent(self) -> list[dict]:
        """The events not delivered yet (after `stop()`: those that stay unsent), oldest first."""
        with self._cv:
            return self._batch + list(self._buf)

    def _done(self, retry: list[dict]) -> None:
        with self._cv:
            self._buf.extendleft(reversed(retry))  # retried first, in order
            self._batch = []
            self._cv.notify_all()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            batch = self._take()
            if not batch:
                if self._stop:
                    return
                continue
            try:
                retry = self._send(batch)
            except Exception as e:  # a bug must not end the thread with events in hand
                log.exception("costwarden SDK: reporting failed")
                self.last_error, retry = type(e).__name__, batch
            if retry:
                self.failures += 1
            self._done(retry)
            if not retry:
                backoff = 0.1
            else:
                if self._stop:
                    return
                with self._cv:  # a retry waits for its backoff, or for stop()
                    self._cv.wait_for(lambda: self._stop, backoff)
                backoff = min(backoff * 2, 5.0)


class Reporter(BufferedReporter):
    """Batches POSTed to the API's /v1/events."""

    def __init__(self, client: httpx.Client, max_buffer: int, batch_size: int, flush_interval_s: float) -> None:
        self.client = client
        super().__init__(max_buffer, batch_size, flush_interval_s)

    def _send(self, batch: list[dict]) -> list[dict]:
        try:
            r = self.client.post("/v1/events", json=batch)
        except (httpx.HTTPError, RuntimeError) as e:  # RuntimeError: the client was closed
            self.last_error = f"{type(e).__name__}"
            return batch
        if r.status_code in (200, 422) and r.headers.get("content-type", "").startswith("application/json"):
            body = r.json()
            rejects = [x for x in body.get("results", []) if x.get("status") == "rejected"]
            if rejects:
                self.rejected += len(rejects)
                self.last_rejects = rejects[-20:]
                log.warning("costwarden SDK: %d event(s) rejected by the API, e.g. %s: %s", len(rejects),
                            rejects[0].get("reason"), rejects[0].get("detail", "")[:200])
            self.sent += len(batch) - len(rejects)
            self.last_error = None  # recovered: the API takes reports again
            return []
        if r.status_code == 413 and len(batch) > 1:
            self.batch_size = max(1, len(batch) // 2)
        self.last_error = f"HTTP {r.status_code}"
        log.warning("costwarden SDK: reporting failed (HTTP %s); %d event(s) kept for retry", r.status_code,
                    len(batch))
        return batch
