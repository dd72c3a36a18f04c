"""De-duplication by event_id over a bounded window (no I/O).

The window holds the ids of events whose event time lies within `horizon` of the newest event
time seen (the watermark), at most `max_entries` of them. It is persistent because it is rebuilt
at start from the raw events table: the dedupe mark of an event IS its stored row, so the mark is
recorded exactly together with the data it protects. An event older than the window is "late":
the runner asks the store about late ids once per batch (never per event) and feeds the answer
to `mark_seen`.
"""
from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from typing import Iterable


class DedupeWindow:
    def __init__(self, horizon: timedelta = timedelta(hours=48), max_entries: int = 2_000_000) -> None:
        self.horizon = horizon
        self.max_entries = max_entries
        self._ids: set[str] = set()
        self._heap: list[tuple[float, str]] = []  # (event time, id) for eviction
        self.watermark: datetime | None = None
        self._late: set[str] = set()  # late ids known for the batch in progress

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def is_late(self, occurred_at: datetime) -> bool:
        """True when the event is older than the window, so absence here proves nothing."""
        return self.watermark is not None and occurred_at < self.watermark - self.horizon

    def seen(self, event_id: str, occurred_at: datetime) -> bool:
        """Return True for a duplicate; otherwise remember the id and return False."""
        if event_id in self._ids or event_id in self._late:
            return True
        if self.is_late(occurred_at):
            self._late.add(event_id)
        else:
            self._add(event_id, occurred_at)
        return False

    def mark_late_seen(self, event_ids: Iterable[str]) -> None:
        """Late ids the store already holds (asked once per batch); kept until `end_batch`."""
        self._late.update(event_ids)

    def end_batch(self) -> None:
        self._late.clear()

    def mark_seen(self, items: Iterable[tuple[str, datetime]]) -> None:
        for event_id, at in items:
            if event_id not in self._ids:
                self._add(event_id, at)

    def forget(self, event_ids: Iterable[str]) -> None:
        """Undo marks of events that were not stored (a failed flush), so a retry is not a duplicate."""
        for e in event_ids:
            self._ids.discard(e)
            self._late.discard(e)

    def _add(self, event_id: str, at: datetime) -> None:
        self._ids.add(event_id)
        heapq.heappush(self._heap, (at.timestamp(), event_id))
        if self.watermark is None or at > self.watermark:
            self.watermark = at
        self._evict()

    def _evict(self) -> None:
        assert self.watermark is not None
        floor = (self.watermark - self.horizon).timestamp()
        heap = self._heap
        while heap and (heap[0][0] < floor or len(self._ids) > self.max_entries):
            _, old = heapq.heappop(heap)
            self._ids.discard(old)
        if len(heap) > 2 * max(len(self._ids), 1024):  # ids forgotten or re-added: compact
            self._heap = [(t, i) for t, i in heap if i in self._ids]
            heapq.heapify(self._heap)


def window_floor(watermark: datetime | None, horizon: timedelta) -> datetime | None:
    return None if watermark is None else watermark - horizon
