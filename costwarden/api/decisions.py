"""The decision cache: every workflow's current control, in memory, versioned, with subscribers.

Where control updates come from is an interface (`ControlFeed`):
    EmbeddedControlFeed   the embedded pipeline's ControlBook (changes pushed after each commit)
    (distributed mode)    a consumer of the compacted `controls` topic calls `cache.apply(control)`
The cache answers `decide(workflow)` from a dict and fans each change out to the SSE streams;
`decision_bytes(workflow)` is the HTTP answer, JSON encoded once per control (not per request).
Versions are counted per cache `epoch` (one per server start, new on `replace`), so a client
never resumes from a version of another server start: it gets a snapshot instead.
"""
from __future__ import annotations

import asyncio
import json
import math
import secrets
import threading
import time
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


def encode_decision(d: Decision) -> bytes:
    """The body of GET /v1/decisions/{workflow} (compact JSON, UTF-8: as FastAPI would encode it)."""
    return json.dumps(decision_json(d), ensure_ascii=False, separators=(",", ":")).encode()


ENCODED_MAX = 100_000  # encoded answers kept for workflows without a control (a bound on memory)


@dataclass(frozen=True)
class Update:
    version: int
    control: Control | None  # None: the cache was replaced (`replace`): streams send a new snapshot
    epoch: str = ""

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.version}"


def new_epoch() -> str:
    """Names one life of a DecisionCache: the start time (hex seconds) and 32 random bits."""
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


def parse_cursor(token: str | None) -> tuple[str, int] | None:
    """"<epoch>:<version>" -> (epoch, version); anything else (a bare number, garbage) -> None."""
    if not token:
        return None
    epoch, sep, n = token.strip().rpartition(":")
    if not sep or not epoch or not n.isdigit() or len(n) > 18:
        return None
    return epoch, int(n)


class DecisionCache:
    """Every workflow's current control, a version counted from 0 per cache and an `epoch` naming
    this cache's life (one per server start, new again on `replace`). A client resumes the stream
    with the cursor "<epoch>:<version>"; a cursor of another epoch, ahead of this version, or too
    old for the log cannot be resumed: the client gets a full snapshot (`since()` returns None).
    A bare version number names no epoch, so it gets a snapshot too."""

    def __init__(self, history: int = 10_000) -> None:
        self._by_wf: dict[str, Control] = {}
        self._log: deque[Update] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._subs: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        # workflow -> (encoded decision, valid until: unix time): the HTTP answer, encoded once per
        # control. Dropped under the lock by every write; filled under the lock from the current
        # control, so a reader never stores an answer older than a write it raced with.
        self._encoded: dict[str, tuple[bytes, float]] = {}
        self._listeners: list[Callable[[str | None], None]] = []
        self.epoch = new_epoch()
        self.version = 0
        self.updated_at: datetime | None = None

    @property
    def cursor(self) -> str:
        """"<epoch>:<version>": where a client that has seen everything so far resumes."""
        with self._lock:
            return f"{self.epoch}:{self.version}"

    # --- writes (any thread) ----------------------------------------------------------------
    def apply(self, control: Control) -> None:
        with self._lock:
            self.version += 1
            self._by_wf[control.workflow] = control
            self._encoded.pop(control.workflow, None)
            up = Update(self.version, control, self.epoch)
            self._log.append(up)
            self.updated_at = datetime.now(timezone.utc)
            self._fan_out(up)  # under the lock: every stream gets the updates in version order
            for fn in self._listeners:
                fn(control.workflow)

    def replace(self, controls: Iterable[Control]) -> None:
        """Swap in a complete set of controls (a feed that re-read its source after a regression):
        a new epoch, so every client resyncs from a snapshot."""
        with self._lock:
            self._by_wf = {c.workflow: c for c in controls}
            self._encoded = {}
            self.epoch = new_epoch()
            self.version = len(self._by_wf)
            self._log.clear()
            self.updated_at = datetime.now(timezone.utc)
            self._fan_out(Update(self.version, None, self.epoch))
            for fn in self._listeners:
                fn(None)

    def end_streams(self) -> None:
        """Wake every stream so that it sees the server stopping now (not at its next tick)."""
        with self._lock:
            self._fan_out(None)

    def _fan_out(self, up: Update | None) -> None:
        for loop, q in self._subs:
            try:
                loop.call_soon_threadsafe(q.put_nowait, up)
            except RuntimeError:  # that loop is closed
                pass

    def listen(self, fn: Callable[[str | None], None]) -> None:
        """Call `fn(workflow)` after each change of a workflow's control, `fn(None)` after the
        cache was replaced; under the cache's lock, in version order: `fn` must only hand the
        name on (a queue), never block. (The decision process, decision_process.py, follows it.)"""
        with self._lock:
            self._listeners.append(fn)

    def unlisten(self, fn: Callable[[str | None], None]) -> None:
        with self._lock:
            self._listeners = [f for f in self._listeners if f is not fn]

    def control(self, workflow: str) -> Control | None:
        return self._by_wf.get(workflow)

    # --- reads (from memory) ----------------------------------------------------------------
    def decide(self, workflow: str, now: datetime | None = None) -> Decision:
        return decision_of(self._by_wf.get(workflow), workflow, now or datetime.now(timezone.utc))

    def decision_bytes(self, workflow: str) -> bytes:
        """`decide(workflow)` as the JSON body of GET /v1/decisions/{workflow}. A dict lookup while
        the answer stands (no lock, nothing encoded); re-encoded after the workflow's control
        changed or expired."""
        hit = self._encoded.get(workflow)
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        with self._lock:
            c = self._by_wf.get(workflow)
            now = datetime.now(timezone.utc)
            body = encode_decision(decision_of(c, workflow, now))
            # the answer stands until the control changes (apply / replace drop it) or expires
            until = c.expires_at.timestamp() if c is not None and c.expires_at is not None and c.active(now) \
                else math.inf
            if c is not None or len(self._encoded) < ENCODED_MAX:
                self._encoded[workflow] = (body, until)
        return body

    def active(self, now: datetime | None = None) -> list[Decision]:
        now = now or datetime.now(timezone.utc)
        out = [self.decide(wf, now) for wf in sorted(self._by_wf)]
        return [d for d in out if d.action is not State.allow]

    def controls(self) -> list[Control]:
        return sorted(list(self._by_wf.values()), key=lambda c: c.workflow)

    def snapshot(self) -> tuple[str, int, list[Control]]:
        """(epoch, version, controls) read together."""
        with self._lock:
            return self.epoch, self.version, sorted(self._by_wf.values(), key=lambda c: c.workflow)

    def since(self, version: int | None, epoch: str | None = None) -> list[Update] | None:
        """Updates after `version` of `epoch`, or None when the client must take a snapshot: no
        cursor, another epoch (the server restarted, another replica, a replaced cache), a version
        ahead of this cache's, or one older than the log."""
        with self._lock:
            if version is None or epoch != self.epoch or version > self.version:
                return None
            if version == self.version:
                return []
            if not self._log or self._log[0].version > version + 1:
                return None
            return [u for u in self._log if u.version > version]

    def resume(self, cursor: str | None) -> list[Update] | None:
        """`since()` for a cursor "<epoch>:<version>" as sent by a client."""
        parsed = parse_cursor(cursor)
        return None if parsed is None else self.since(parsed[1], parsed[0])

    # --- subscribers (SSE streams, each on an event loop) -----------------------------------
    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subs.append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs = [(lp, s) for lp, s in self._subs if s is not q]
