"""De-duplication by event_id: a bounded window in memory, exact by asking the store (no I/O here).

The window holds ids of stored events, evicted by event time (older than `horizon` behind the
newest event seen) and by count (`max_entries`). It is a cache, never the authority: `floor` is
the newest event time of any id that may be stored but is not in the window (evicted, or not
loaded at start). An event not in the window whose time is at or before `floor` may be a
duplicate; the runner asks the store about such ids once per batch (`lookups()`), and feeds
the answer to `known()`. So dedupe is exact whatever the memory bound; the bound only decides
how often the store is asked.

A batch is staged: ids are taken in `seen()` into the batch, and enter the window (with
eviction, which may raise the floor) only at `commit()`, after the batch was stored; `rollback()`
forgets them. Nothing is evicted while a batch is formed, so a batch never loses its own ids.
"""
from __future__ import annotations

import heapq
from datetime import datetime, timedelta, timezone
from typing import Iterable

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def _us(at: datetime) -> int:
    return (at - _EPOCH) // _US


class DedupeWindow:
    def __init__(self, horizon: timedelta = timedelta(hours=48), max_entries: int = 2_000_000,
                 lookup_all: bool = False) -> None:
        self.horizon = horizon
        self.max_entries = max_entries
        self.lookup_all = lookup_all   # ids may be stored by other writers (distributed workers)
        self._ids: set[str] = set()
        self._heap: list[tuple[int, str]] = []  # (event time in µs, id) for eviction
        self.watermark: datetime | None = None
        self.floor: datetime | None = None  # ids at or before it may be stored and not held here
        self._batch: dict[str, datetime] = {}
        self._known: set[str] = set()  # ids the store holds, answered for the batch in progress

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def may_be_stored(self, event_id: str, occurred_at: datetime) -> bool:
        """True when absence from the window proves nothing: the store must be asked."""
        if event_id in self._ids or event_id in self._batch or event_id in self._known:
            return False
        return self.lookup_all or (self.floor is not None and occurred_at <= self.floor)

    def lookups(self, events: Iterable[tuple[str, datetime]]) -> list[str]:
        """The ids of a batch to ask the store about (each once)."""
        out = {i for i, at in events if self.may_be_stored(i, at)}
        return sorted(out)

    def known(self, event_ids: Iterable[str]) -> None:
        """Ids the store already holds (the answer to `lookups`), for the batch in progress."""
        self._known.update(event_ids)

    def seen(self, event_id: str, occurred_at: datetime) -> bool:
        """True for a duplicate; otherwise stage the id in the batch and return False."""
        if event_id in self._ids or event_id in self._batch or event_id in self._known:
            return True
        self._batch[event_id] = occurred_at
        return False

    def commit(self) -> None:
        """The batch was stored: its ids enter the window (evicting the oldest beyond the bounds)."""
        for event_id, at in self._batch.items():
            self._add(event_id, at)
        self._batch.clear()
        self._known.clear()
        self._evict()

    def rollback(self) -> None:
        self._batch.clear()
        self._known.clear()

    def mark_seen(self, items: Iterable[tuple[str, datetime]], floor: datetime | None = None) -> None:
        """Stored ids (the window rebuilt at start); `floor` as for the ids not loaded."""
        for event_id, at in items:
            if event_id not in self._ids:
                self._add(event_id, at)
        self._raise_floor(floor)
        self._evict()

    def _add(self, event_id: str, at: datetime) -> None:
        self._ids.add(event_id)
        heapq.heappush(self._heap, (_us(at), event_id))
        if self.watermark is None or at > self.watermark:
            self.watermark = at

    def _raise_floor(self, at: datetime | None) -> None:
        if at is not None and (self.floor is None or at > self.floor):
            self.floor = at

    def _evict(self) -> None:
        if self.watermark is None:
            return
        floor = _us(self.watermark - self.horizon)
        heap = self._heap
        while heap and (heap[0][0] < floor or len(self._ids) > self.max_entries):
            t, old = heapq.heappop(heap)
            if old in self._ids:
                self._ids.discard(old)
                self._raise_floor(_EPOCH + t * _US)
        if len(heap) > 2 * max(len(self._ids), 1024):  # ids re-added: compact
            self._heap = [(t, i) for t, i in heap if i in self._ids]
            heapq.heapify(self._heap)
