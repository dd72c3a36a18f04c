"""The SDK's decision cache: filled once from POST /v1/decisions, then kept current by following
GET /v1/controls/stream (server-sent events) in a background thread, resuming from the last
cursor ("<epoch>:<version>") after a disconnect, resyncing from a snapshot whenever the server's
controls went backwards (a restart, another replica). `fresh()` says whether the cache may be
trusted right now."""
from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import httpx

log = logging.getLogger("costwarden.sdk")


@dataclass(frozen=True)
class Entry:
    action: str
    rate_per_min: Decimal | None
    reason: str
    budget_id: str
    expires_at: datetime | None

    @classmethod
    def of(cls, d: dict) -> "Entry":
        rate = d.get("rate_per_min")
        exp = d.get("expires_at")
        return cls(d["action"], Decimal(rate) if rate is not None else None, d.get("reason", ""),
                   d.get("budget_id", ""), datetime.fromisoformat(exp) if exp else None)

    def active(self, now: datetime) -> bool:
        return self.action != "allow" and (self.expires_at is None or now < self.expires_at)


class _Resync(Exception):
    """The stream went backwards or skipped (another server start, a replaced cache, a gap):
    reconnect at once without a cursor and take a snapshot."""


class StreamFollower:
    """Follows the control stream. `cursor` ("<epoch>:<version>", the last event's id) is what a
    reconnect resumes from; the server answers a cursor it cannot resume (a restart, another
    replica) with a snapshot. Any event that is not the next one of our epoch (a regression, a
    gap, another epoch without a snapshot) makes the follower drop its cursor and resync."""

    RECONNECT_MAX_S = 1.0  # a restarted server is followed again within about a second

    def __init__(self, client: httpx.Client, stale_after_s: float, on_change=None) -> None:
        self.client = client
        self.stale_after_s = stale_after_s
        self.on_change = on_change
        self.entries: dict[str, Entry] = {}
        self.version: int | None = None
        self.epoch: str | None = None
        self.connected = False
        self.last_ok = 0.0  # monotonic time the server was last heard from
        self.last_error: str | None = None  # why the stream is down; None while connected
        self.resyncs = 0  # snapshots taken after a regression, a gap or a new server epoch
        self.filled = threading.Event()
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="costwarden-sdk-stream", daemon=True)

    @property
    def cursor(self) -> str | None:
        if self.version is None:
            return None
        return f"{self.epoch}:{self.version}" if self.epoch else None

    def start(self) -> None:
        self._thread.start()

    def stop(self, join_s: float = 0.5) -> None:
        """Stop following: the open stream's socket is shut down so the thread ends now."""
        self._stop.set()
        r = self._response
        if r is not None:
            try:
                sock = r.extensions["network_stream"].get_extra_info("socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except Exception:  # already closed, or a transport without a socket
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join_s)

    def fresh(self) -> bool:
        if not self.filled.is_set():
            return False
        return self.connected or time.monotonic() - self.last_ok <= self.stale_after_s

    def lookup(self, workflow: str) -> Entry | None:
        return self.entries.get(workflow)

    # --- background ----------------------------------------------------------------------------
    def _fill(self) -> None:
        r = self.client.post("/v1/decisions", json={"workflows": []})
        r.raise_for_status()
        body = r.json()
        self.entries = {d["workflow"]: Entry.of(d) for d in body["decisions"]}
        self.version = body["version"]
        self.epoch = body.get("epoch")  # a server without epochs: no cursor, a snapshot per connect
        self.last_ok = time.monotonic()
        self.filled.set()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if not self.filled.is_set():
                    self._fill()
                self._follow()
                backoff = 0.1
            except _Resync as e:
                self.resyncs += 1
                log.warning("costwarden SDK: %s; resyncing from a snapshot", e)
                self.epoch = self.version = None
                self.connected = False
                self._response = None
                if self._stop.wait(0.02):  # at once (a broken server cannot make this spin)
                    return
                continue
            except Exception as e:  # unreachable, refused, timed out: the fail policy applies when stale
                if self._stop.is_set():
                    return
                self.last_error = f"{type(e).__name__}"
                if isinstance(e, httpx.HTTPStatusError) and e.response.status_code in (401, 403):
                    self.last_error = f"HTTP {e.response.status_code}"
                    log.error("costwarden SDK: the API refused the token (%s); decisions follow the fail "
                              "policy", e.response.status_code)
                else:
                    log.warning("costwarden SDK: control stream down (%s); retrying", type(e).__name__)
            finally:
                self.connected = False
                self._response = None
            if self._stop.wait(backoff * random.uniform(0.8, 1.2)):
                return
            backoff = min(backoff * 2, self.RECONNECT_MAX_S)

    def _follow(self) -> None:
        cursor = self.cursor
        params = {"since": cursor} if cursor else {}
        with self.client.stream("GET", "/v1/controls/stream", params=params,
                                timeout=httpx.Timeout(5.0, read=40.0)) as r:
            self._response = r
            if self._stop.is_set():
                return
            r.raise_for_status()
            self.connected = True
            self.last_error = None
            self.last_ok = time.monotonic()
            event, data, ident = "message", [], None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                self.last_ok = time.monotonic()
                if line == "":
                    if data:
                        self._apply(event, "\n".join(data), ident)
                    event, data, ident = "message", [], None
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        ident = value

    def _apply(self, event: str, data: str, ident: str | None) -> None:
        body = json.loads(data)
        epoch, version = _cursor_of(ident, body)
        if event == "snapshot":
            self.entries = {d["workflow"]: Entry.of(d) for d in body["decisions"]}
            self.filled.set()
        elif event == "control":
            if self.epoch is not None and self.version is not None and \
                    (epoch != self.epoch or version is None or version != self.version + 1):
                if epoch == self.epoch and version == self.version:
                    return  # the same event again: nothing to do
                raise _Resync(f"control stream went from {self.cursor} to {epoch}:{version}")
            self.entries[body["workflow"]] = Entry.of(body)
        else:
            return
        self.epoch, self.version = epoch, version
        if self.on_change is not None:
            self.on_change(event, body)


def _cursor_of(ident: str | None, body: dict) -> tuple[str | None, int | None]:
    """(epoch, version) of an event: its id "<epoch>:<n>" (a bare number from a server without
    epochs: no epoch), else the body's fields."""
    if ident:
        epoch, sep, n = ident.strip().rpartition(":")
        if n.isdigit():
            return (epoch or None) if sep else None, int(n)
    v = body.get("version")
    return body.get("epoch"), v if isinstance(v, int) else None


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
