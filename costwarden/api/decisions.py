"""The decision cache: every workflow's current control, in memory, versioned, with subscribers.

Where control updates come from is an interface (`ControlFeed`):
    EmbeddedControlFeed   the embedded pipeline's ControlBook (changes pushed after each commit)
    (distributed mode)    a consumer of the compacted `controls` topic calls `cache.apply(control)`
The cache answers `decide(workflow)` from a dict and fans each change out to the SSE streams.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Protocol

from costwarden.budgets.controls import Control, ControlBook, Decision, State


class ControlFeed(Protocol):
    def start(self, apply: Callable[[Control], None]) -> None:
        """Deliver every current control to `apply`, then every later change, until stop()."""

    def stop(self) -> None:
        ...


class EmbeddedControlFeed:
    """Embedded mode: the pipeline's ControlBook is the source; the runtime calls push() after a
    batch or a person's change has been committed to the store."""

    def __init__(self, book: ControlBook) -> None:
        self.book = book
        self._apply: Callable[[Control], None] | None = None

    def start(self, apply: Callable[[Control], None]) -> None:
        self._apply = apply
        for c in self.book.all():
            apply(c)

    def push(self, controls: Iterable[Control]) -> None:
        if self._apply is not None:
            for c in controls:
                self._apply(c)

    def stop(self) -> None:
        self._apply = None


def decision_of(c: Control | None, workflow: str, now: datetime) -> Decision:
    return ControlBook([c] if c is not None else []).check(workflow, now)


def decision_json(d: Decision) -> dict:
    return {"workflow": d.workflow, "action": d.action.value,
            "rate_per_min": str(d.rate_per_min) if d.rate_per_min is not None else None,
            "reason": d.reason, "budget_id": d.budget_id,
            "expires_at": d.expires_at.isoformat() if d.expires_at else None}


@dataclass(frozen=True)
class Update:
    version: int
    control: Control


class DecisionCache:
    def __init__(self, history: int = 10_000) -> None:
        self._by_wf: dict[str, Control] = {}
        self._log: deque[Update] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._subs: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.version = 0
        self.updated_at: datetime | None = None

    # --- writes (any thread) ----------------------------------------------------------------
    def apply(self, control: Control) -> None:
        with self._lock:
            self.version += 1
            self._by_wf[control.workflow] = control
            up = Update(self.version, control)
            self._log.append(up)
            self.updated_at = datetime.now(timezone.utc)
            subs = list(self._subs)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(q.put_nowait, up)
            except RuntimeError:  # that loop is closed
                pass

    # --- reads (from memory) ----------------------------------------------------------------
    def decide(self, workflow: str, now: datetime | None = None) -> Decision:
        return decision_of(self._by_wf.get(workflow), workflow, now or datetime.now(timezone.utc))

    def active(self, now: datetime | None = None) -> list[Decision]:
        now = now or datetime.now(timezone.utc)
        out = [self.decide(wf, now) for wf in sorted(self._by_wf)]
        return [d for d in out if d.action is not State.allow]

    def controls(self) -> list[Control]:
        return sorted(self._by_wf.values(), key=lambda c: c.workflow)

    def since(self, version: int) -> list[Update] | None:
        """Updates after `version`, or None when they are no longer in the log (send a snapshot)."""
        with self._lock:
            if version >= self.version:
                return []
            if not self._log or self._log[0].version > version + 1:
                return None
            return [u for u in self._log if u.version > version]

    # --- subscribers (SSE streams, each on an event loop) -----------------------------------
    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subs.append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs = [(lp, s) for lp, s in self._subs if s is not q]
