"""`Costwarden`: the gateway's guard. Public surface: check, enforce, wait_ready, report,
report_response, pending, stats, flush, close, reserve / settle / release.

The constructor never touches the network: a background thread loads the decisions and follows
the control stream; until the first load (`ready`, or `wait_ready(timeout)`) decisions follow
the fail policy below.

Fail policy when the API cannot be reached (never answered yet, or the control stream has been
down for longer than `stale_after_s`, default 30 s):
    fail open   (allow)  for workflows with fail_open[workflow] = True,
    fail closed (block)  for workflows with fail_open[workflow] = False,
    otherwise `default_fail_open` (False: a guard that cannot see its budgets blocks).
While the stream is down but younger than `stale_after_s`, the last known decisions stand.
"""
from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from costwarden.errors import ControlError
from costwarden.sdk.cache import StreamFollower, now_utc
from costwarden.sdk.reporter import Reporter, as_payload
from costwarden.sdk.usage import usage_from_response


class Refused(ControlError):
    """A reservation refused by the API (HTTP 409): a hard budget would be passed, or a block."""


class Blocked(ControlError):
    """Raised by `Costwarden.enforce()` for a workflow that may not spend now."""


@dataclass(frozen=True)
class GuardDecision:
    workflow: str
    action: str  # allow | throttle | block
    allowed: bool  # False for a block, or a throttle whose rate is used up right now
    reason: str = ""
    rate_per_min: Decimal | None = None
    budget_id: str = ""
    expires_at: datetime | None = None
    source: str = "cache"  # cache | fail-open | fail-closed


@dataclass(frozen=True)
class Reservation:
    id: str
    workflow: str
    estimate_usd: Decimal
    expires_at: str


class _Bucket:
    def __init__(self, rate_per_min: Decimal) -> None:
        self.rate_s = float(rate_per_min) / 60.0
        self.capacity = max(1.0, self.rate_s)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Costwarden:
    def __init__(self, url: str, token: str, *, fail_open: dict[str, bool] | None = None,
                 default_fail_open: bool = False, stale_after_s: float = 30.0, max_buffer: int = 10_000,
                 batch_size: int = 500, flush_interval_s: float = 0.5, timeout_s: float = 5.0,
                 wait_ready_s: float = 0.0) -> None:
        """Never touches the network: the decisions are loaded by a background thread, and until
        they are (`ready`), `check()` follows the fail policy. Call `wait_ready(timeout)` where a
        first decision must come from the API (a script, a test); `wait_ready_s` > 0 does the same
        from the constructor (opt-in: the constructor then blocks up to that long)."""
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "costwarden-sdk/1"}
        tls = httpx.create_ssl_context()  # one for both clients (building one costs ~20 ms)
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, verify=tls)
        self._stream_http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, verify=tls)
        self.fail_open = dict(fail_open or {})
        self.default_fail_open = default_fail_open
        self._buckets: dict[str, tuple[Decimal, _Bucket]] = {}
        self._lock = threading.Lock()
        self._cache = StreamFollower(self._stream_http, stale_after_s)
        self._cache.start()
        self._reporter = Reporter(self._http, max_buffer, batch_size, flush_interval_s)
        self._closed = False
        atexit.register(self.close)
        if wait_ready_s:
            self.wait_ready(wait_ready_s)

    # --- decisions ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True while decisions come from a current cache (not from the fail policy)."""
        return self._cache.fresh()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block up to `timeout` s until the decisions were loaded from the API; True if they were."""
        return self._cache.filled.wait(timeout) and self.ready

    @property
    def controls_version(self) -> int | None:
        """The version of the last control event applied (counted per `controls_epoch`)."""
        return self._cache.version

    @property
    def controls_epoch(self) -> str | None:
        """Names the server start the decisions come from; a new one after a restart or failover."""
        return self._cache.epoch

    def check(self, workflow: str) -> GuardDecision:
        """May `workflow` spend now? From memory; a throttle is enforced with a local token bucket."""
        if not self._cache.fresh():
            why = "costwarden unreachable" if self._cache.filled.is_set() or self._cache.last_error \
                else "costwarden decisions not loaded yet"
            if self.fail_open.get(workflow, self.default_fail_open):
                return GuardDecision(workflow, "allow", True, f"{why}: fail open", source="fail-open")
            return GuardDecision(workflow, "block", False, f"{why}: fail closed", source="fail-closed")
        e = self._cache.lookup(workflow)
        if e is None or not e.active(now_utc()):
            return GuardDecision(workflow, "allow", True)
        if e.action == "block":
            return GuardDecision(workflow, "block", False, e.reason, None, e.budget_id, e.expires_at)
        rate = e.rate_per_min or Decimal(0)
        with self._lock:
            cur = self._buckets.get(workflow)
            if cur is None or cur[0] != rate:
                cur = self._buckets[workflow] = (rate, _Bucket(rate))
            ok = cur[1].take()
        return GuardDecision(workflow, "throttle", ok, e.reason, rate, e.budget_id, e.expires_at)

    def enforce(self, workflow: str) -> GuardDecision:
        d = self.check(workflow)
        if not d.allowed:
            raise Blocked(f"costwarden: workflow {workflow!r} may not spend now ({d.action}: {d.reason})")
        return d

    # --- usage -------------------------------------------------------------------------------
    def report(self, usage: Any) -> bool:
        """Queue a usage event (UsageEvent or dict). False if the bounded buffer is full (counted)."""
        return self._reporter.add(usage)

    @property
    def pending(self) -> int:
        return self._reporter.pending

    def report_response(self, response: Any, *, workflow: str | None = None, **kw: Any) -> bool:
        """`report(usage_from_response(response, workflow=..., ...))`: the usage of an OpenAI,
        Anthropic or Gemini response object (see costwarden.sdk.usage). Raises InvalidEventError
        when the response carries no usable usage (nothing is queued then)."""
        return self._reporter.add(usage_from_response(response, workflow=workflow, **kw))

    @property
    def stats(self) -> dict:
        """pending / sent / dropped / rejected reports; `last_error`: why the last report attempt
        failed, None once one succeeded again; `stream_connected`, and `stream_error` (why the
        control stream is down, None while connected); `resyncs`: snapshots taken because the
        server's controls went backwards (a restart, another replica)."""
        r, c = self._reporter, self._cache
        return {"pending": r.pending, "sent": r.sent, "dropped": r.dropped, "rejected": r.rejected,
                "last_error": r.last_error, "stream_connected": c.connected, "stream_error": c.last_error,
                "resyncs": c.resyncs}

    def flush(self, timeout: float = 10.0) -> bool:
        return self._reporter.flush(timeout)

    # --- reserve-then-settle -----------------------------------------------------------------
    def reserve(self, workflow: str, model: str, provider: str, max_input_tokens: int, max_output_tokens: int,
                tags: dict[str, str] | None = None) -> Reservation:
        r = self._http.post("/v1/reservations", json={
            "workflow": workflow, "model": model, "provider": provider, "max_input_tokens": max_input_tokens,
            "max_output_tokens": max_output_tokens, "tags": tags or {}})
        if r.status_code == 409:
            raise Refused(r.json().get("detail", "refused"))
        r.raise_for_status()
        b = r.json()
        return Reservation(b["id"], b["workflow"], Decimal(b["estimate_usd"]), b["expires_at"])

    def settle(self, reservation: Reservation | str, usage: Any) -> dict:
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        r = self._http.post(f"/v1/reservations/{rid}/settle", json=as_payload(usage))
        r.raise_for_status()
        return r.json()

    def release(self, reservation: Reservation | str) -> None:
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        r = self._http.post(f"/v1/reservations/{rid}/release")
        if r.status_code != 404:
            r.raise_for_status()

    # --- lifecycle ---------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> bool:
        """Flush pending usage (up to `timeout`), then stop: the control stream is closed at once
        (nothing pending: close() returns within a few ms, not at the stream's next heartbeat).
        Returns False if some usage stayed unsent."""
        if self._closed:
            return True
        self._closed = True
        self._cache.stop(join_s=0)
        ok = self._reporter.flush(timeout)
        self._reporter.stop(join_s=0.5)
        self._cache.stop(join_s=0.5)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        self._stream_http.close()
        self._http.close()
        return ok

    def __enter__(self) -> "Costwarden":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
