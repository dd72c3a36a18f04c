"""The SDK's decision cache: filled once from POST /v1/decisions, then kept current by following
GET /v1/controls/stream (server-sent events) in a background thread, resuming from the last
version after a disconnect. `fresh()` says whether the cache may be trusted right now."""
from __future__ import annotations

import json
import logging
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


class StreamFollower:
    def __init__(self, client: httpx.Client, stale_after_s: float, on_change=None) -> None:
        self.client = client
        self.stale_after_s = stale_after_s
        self.on_change = on_change
        self.entries: dict[str, Entry] = {}
        self.version: int | None = None
        self.connected = False
        self.last_ok = 0.0  # monotonic time the server was last heard from
        self.filled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="costwarden-sdk-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

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
        self.last_ok = time.monotonic()
        self.filled.set()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if self.version is None:
                    self._fill()
                self._follow()
                backoff = 0.1
            except Exception as e:  # unreachable, refused, timed out: the fail policy applies when stale
                if self._stop.is_set():
                    return
                if isinstance(e, httpx.HTTPStatusError) and e.response.status_code in (401, 403):
                    log.error("costwarden SDK: the API refused the token (%s); decisions follow the fail "
                              "policy", e.response.status_code)
                else:
                    log.warning("costwarden SDK: control stream down (%s); retrying", type(e).__name__)
            self.connected = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _follow(self) -> None:
        params = {"since": self.version} if self.version is not None else {}
        with self.client.stream("GET", "/v1/controls/stream", params=params,
                                timeout=httpx.Timeout(5.0, read=40.0)) as r:
            r.raise_for_status()
            self.connected = True
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
        if event == "snapshot":
            self.entries = {d["workflow"]: Entry.of(d) for d in body["decisions"]}
            self.filled.set()
        elif event == "control":
            self.entries[body["workflow"]] = Entry.of(body)
        else:
            return
        if ident and ident.isdigit():
            self.version = int(ident)
        if self.on_change is not None:
            self.on_change(event, body)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
