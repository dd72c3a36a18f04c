"""The durable alert outbox: one notification per (budget, period, threshold) per channel,
kept in the store across restarts, delivered and retried apart from event processing.

Each state change of a row (pending -> sent, or another failed attempt, or failed = gave up)
is a new version of the row in `alert_outbox` (ReplacingMergeTree(version), read FINAL).
Versions are wall-clock microseconds, max'ed with the previous version + 1, so they only
grow, across restarts too. Delivery is at least once: a crash between a send and the write
of its new version sends that one message again.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from costwarden.alerts.message import BudgetAlert, format_alert
from costwarden.alerts.notifier import Notifier
from costwarden.errors import DeliveryError
from costwarden.store import outbox as table
from costwarden.store.base import Row, Store

log = logging.getLogger(__name__)

TABLE = table.TABLE


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0     # gave up after max_attempts
    deferred: int = 0   # not tried: their channel already failed in this pass


def backoff(attempts: int, base: timedelta, cap: timedelta, jitter: float, rng: random.Random) -> timedelta:
    """Delay after the `attempts`-th failure: base * 2^(attempts-1), capped, minus up to
    `jitter` of itself (so retries of many alerts spread out and never exceed the cap)."""
    exp = min(max(attempts - 1, 0), 32)
    delay = min(base * (2 ** exp), cap)
    return delay * (1 - jitter * rng.random())


class Outbox:
    def __init__(self, store: Store, *, max_attempts: int = 8, base_delay: timedelta = timedelta(seconds=5),
                 max_delay: timedelta = timedelta(minutes=15), jitter: float = 0.2,
                 rng: random.Random | None = None, version_clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._clock = version_clock or (lambda: time.time_ns() // 1000)
        self._last_version = 0
        self._lock = threading.Lock()   # one delivery pass at a time per outbox

    def _version(self, previous: int = 0) -> int:
        v = max(self._clock(), previous + 1, self._last_version + 1)
        self._last_version = v
        return v

    # ---- enqueue -------------------------------------------------------------------------

    def _existing(self, keys: Iterable[str]) -> set[tuple[str, str]]:
        return table.existing(self.store, keys)

    def already_enqueued(self, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` that have a row for at least one channel."""
        return {k for k, _ in self._existing(keys)}

    def enqueue(self, alerts: list[BudgetAlert], now: datetime, write: bool = True) -> list[Row]:
        """One pending row per (alert, channel) not already in the outbox. With write=False the
        rows are returned unwritten, for the caller to insert into `alert_outbox` in its own flush."""
        existing = self._existing(a.key for a in alerts)
        rows: list[Row] = []
        for a in alerts:
            title, body = format_alert(a)
            for channel in dict.fromkeys(a.channels):
                if (a.key, channel) in existing:
                    continue
                existing.add((a.key, channel))
                rows.append({"key": a.key, "version": self._version(), "created_at": now,
                             "budget_id": a.budget_id, "channel": channel, "title": title, "body": body,
                             "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": ""})
        if write:
            table.write(self.store, rows)
        return rows

    # ---- delivery ------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100, budget_ids: Iterable[str] | None = None) -> list[Row]:
        """Pending rows due at `now`, oldest first (only those of `budget_ids`, when given)."""
        ids = None
        if budget_ids is not None:
            ids = tuple(sorted(set(budget_ids)))
            if not ids:
                return []
        return self.store.query(table.DueQuery(now, limit, ids).to_sql())

    def due_budget_ids(self, now: datetime) -> list[str]:
        """The budget ids that have a pending row due at `now`."""
        return [r["budget_id"] for r in self.store.query(table.DueBudgetsQuery(now).to_sql())]

    def deliver_due(self, notifier: Notifier, now: datetime, limit: int = 100,
                    owns: Callable[[str], bool] | None = None) -> DeliveryReport:
        """Send every pending row due at `now`; record each outcome as a new row version.
        After one failure on a channel, that channel's other rows wait for the next pass, so a
        dead receiver costs one timeout per pass, not one per alert.

        `owns(budget_id)`: where several processes share the outbox, only the rows of budgets this
        one owns now are delivered, and ownership is asked again just before each send (it may be
        taken away during a pass); nothing owned, nothing sent."""
        sent = retried = failed = deferred = 0
        down: set[str] = set()
        with self._lock:
            if owns is None:
                rows = self.due(now, limit)
            else:
                mine = [b for b in self.due_budget_ids(now) if owns(b)]
                rows = self.due(now, limit, mine) if mine else []
            for row in rows:
                if owns is not None and not owns(row["budget_id"]):
                    continue
                if row["channel"] in down:
                    deferred += 1
                    continue
                new = dict(row, version=self._version(row["version"]))
                try:
                    notifier.send(row["channel"], row["title"], row["body"])
                except Exception as e:  # DeliveryError by contract; anything else must not stop the pass
                    err = str(e) if isinstance(e, DeliveryError) else f"{type(e).__name__}: {e}"
                    new["attempts"] = row["attempts"] + 1
                    new["last_error"] = err[:1000]
                    down.add(row["channel"])
                    if new["attempts"] >= self.max_attempts:
                        new["status"] = "failed"
                        failed += 1
                        log.error("alert %s to channel %r given up after %d attempts: %s",
                                  row["key"], row["channel"], new["attempts"], err)
                    else:
                        delay = backoff(new["attempts"], self.base_delay, self.max_delay, self.jitter, self._rng)
                        new["next_attempt_at"] = now + delay
                        retried += 1
                        log.warning("alert %s to channel %r failed (attempt %d), retry in %.0fs: %s",
                                    row["key"], row["channel"], new["attempts"], delay.total_seconds(), err)
                else:
                    new["status"] = "sent"
                    new["attempts"] = row["attempts"] + 1
                    new["last_error"] = ""
                    sent += 1
                table.write(self.store, [new])
        return DeliveryReport(sent, retried, failed, deferred)

    # ---- reading -------------------------------------------------------------------------

    def pending_count(self) -> int:
        rows = self.store.query(table.PENDING_COUNT_SQL)
        return int(rows[0]["n"]) if rows else 0

    def rows(self, key: str | None = None, status: str | None = None, limit: int = 1000) -> list[Row]:
        """Current state of outbox rows, newest first (for the CLI and status pages)."""
        return self.store.query(table.RowsQuery(key, status, limit).to_sql())


class DeliveryWorker:
    """A daemon thread that calls `outbox.deliver_due` every `interval` seconds (or at once
    after `wake()`), so sending never runs on, or waits for, the processing thread."""

    def __init__(self, outbox: Outbox, notifier: Notifier, interval: float = 2.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.outbox = outbox
        self.notifier = notifier
        self.interval = interval
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush = True
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> "DeliveryWorker":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="costwarden-alert-delivery", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Deliver now rather than at the next interval (e.g. right after enqueue)."""
        self._wake.set()

    def _pass(self) -> None:
        try:
            self.outbox.deliver_due(self.notifier, self.clock())
        except Exception:  # the store may be briefly unavailable; try again next interval
            log.exception("alert delivery pass failed")
        self.passes += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._pass()
        if self._flush:
            self._pass()

    def stop(self, flush: bool = True, timeout: float | None = 30.0) -> None:
        """Stop the thread; with flush, make one last delivery pass first."""
        t = self._thread
        if t is None:
            return
        self._flush = flush
        self._stop.set()
        self._wake.set()
        t.join(timeout)
        self._thread = None
