"""Usage reporting in the background: a bounded buffer, batches, retry with backoff.

Nothing is dropped silently: `pending` counts what is not yet acknowledged, an event refused by
a full buffer is counted in `dropped` and logged, and events the API rejects as invalid are
counted in `rejected` with the reasons kept in `last_rejects`. `last_error` says why the last
attempt failed and is cleared by the next one that succeeds.
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


class Reporter:
    def __init__(self, client: httpx.Client, max_buffer: int, batch_size: int, flush_interval_s: float) -> None:
        self.client = client
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buf: deque[dict] = deque()
        self._inflight = 0
        self._cv = threading.Condition()
        self._stop = False
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.last_rejects: list[dict] = []
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="costwarden-sdk-report", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._buf) + self._inflight

    def add(self, usage: Any) -> bool:
        payload = as_payload(usage)
        with self._cv:
            if len(self._buf) + self._inflight >= self.max_buffer:
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
            while self._buf or self._inflight:
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
            batch = [self._buf.popleft() for _ in range(n)]
            self._inflight = n
            return batch

    def _done(self, batch: list[dict], ok: bool) -> None:
        with self._cv:
            if not ok:
                self._buf.extendleft(reversed(batch))  # retried first, in order
            self._inflight = 0
            self._cv.notify_all()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            batch = self._take()
            if not batch:
                if self._stop:
                    return
                continue
            ok = self._send(batch)
            self._done(batch, ok)
            if ok:
                backoff = 0.1
            else:
                if self._stop:
                    return
                with self._cv:  # a retry waits for its backoff, or for stop()
                    self._cv.wait_for(lambda: self._stop, backoff)
                backoff = min(backoff * 2, 5.0)

    def _send(self, batch: list[dict]) -> bool:
        try:
            r = self.client.post("/v1/events", json=batch)
        except (httpx.HTTPError, RuntimeError) as e:  # RuntimeError: the client was closed
            self.last_error = f"{type(e).__name__}"
            return False
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
            return True
        if r.status_code == 413 and len(batch) > 1:
            self.batch_size = max(1, len(batch) // 2)
        self.last_error = f"HTTP {r.status_code}"
        log.warning("costwarden SDK: reporting failed (HTTP %s); %d event(s) kept for retry", r.status_code,
                    len(batch))
        return False
