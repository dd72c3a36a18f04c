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

A throttle holds across replicas: every guard of a throttled workflow leases small batches of
tokens from the API's one bucket for it (POST /v1/throttle/{workflow}/lease, at the configured
rate; costwarden/api/throttle.py), so N guards together admit the rate, not N x the rate. A
lease is ~0.2 s of the rate (at least 1 call) and valid for 2 s; a refused call is answered from
memory until the next token is due (`retry_after_s`), so a throttled workflow costs about one
round trip per lease, never one per refused call. When the lease cannot be had:
    API unreachable (or 5xx, 401/403)  the guard's own bucket at rate / guards (the number of
                                       guards of the workflow the API last reported), trying the
                                       API again every second; the guards together stay within
                                       the rate while they all lose the API, and this lasts only
                                       while the decisions are fresh: after `stale_after_s` the
                                       fail policy above decides.
    not offered (404/405/501: an older server, distributed mode without api.replicas)
                                       the guard's own bucket at the full rate (per guard, as
                                       before), asking again after a minute.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

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
    retry_after_s: float | None = None  # a refused throttle: seconds until its next token is due


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

    def wait_s(self) -> float:
        """Seconds until the next token (after a refused take)."""
        return (1.0 - self.tokens) / self.rate_s if self.rate_s > 0 else 60.0


LEASE_SHARE_S = 0.2     # a lease asks for this much of the rate (at least 1 call, at most LEASE_MAX)
LEASE_MAX = 100
LEASE_TIMEOUT_S = 1.0   # one lease request; then the API counts as unreachable
UNREACHABLE_RETRY_S = 1.0
NOT_OFFERED_RETRY_S = 60.0


class _Lease:
    """A throttled workflow at this guard: tokens leased from the API's shared bucket, spent here.
    One lease request at a time per workflow; the other callers wait for it (a condition)."""

    def __init__(self, rate_per_min: Decimal) -> None:
        self.rate = rate_per_min
        self.want = max(1, min(LEASE_MAX, math.ceil(float(rate_per_min) / 60.0 * LEASE_SHARE_S)))
        self.cond = threading.Condition()
        self.tokens = 0
        self.until = 0.0       # the leased tokens are valid until then (monotonic)
        self.retry_at = 0.0    # refused by the API: no token is due before then
        self.asking = False    # a lease request is in flight
        self.guards = 1        # guards of this workflow, as the API last said
        self.local: _Bucket | None = None  # without the API: a bucket of our own ...
        self.local_until = 0.0              # ... until then, then the API is asked again


class _NoLease(Exception):
    def __init__(self, not_offered: bool, why: str) -> None:
        super().__init__(why)
        self.not_offered = not_offered


class Costwarden:
    def __init__(self, url: str, token: str, *, fail_open: dict[str, bool] | None = None,
                 default_fail_open: bool = False, stale_after_s: float = 30.0, max_buffer: int = 10_000,
                 batch_size: int = 500, flush_interval_s: float = 0.5, timeout_s: float = 5.0,
                 wait_ready_s: float = 0.0, kafka_bootstrap: str | None = None, kafka_topic: str = "usage.raw",
                 kafka_dead_letter_topic: str = "usage.deadletter", kafka_config: dict | None = None) -> None:
        """Never touches the network: the decisions are loaded by a background thread, and until
        they are (`ready`), `check()` follows the fail policy. Call `wait_ready(timeout)` where a
        first decision must come from the API (a script, a test); `wait_ready_s` > 0 does the same
        from the constructor (opt-in: the constructor then blocks up to that long).

        `kafka_bootstrap` (opt-in, needs kafka-python): usage goes straight to the raw usage topic
        of the distributed mode (`kafka_topic`, invalid events to `kafka_dead_letter_topic`) instead
        of through the API; `kafka_config`: more KafkaProducer settings (TLS, SASL). See
        costwarden/sdk/kafka_reporter.py for what happens while the broker is down."""
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "costwarden-sdk/1"}
        tls = httpx.create_ssl_context()  # one for both clients (building one costs ~20 ms)
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, verify=tls)
        self._stream_http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, verify=tls)
        self.fail_open = dict(fail_open or {})
        self.default_fail_open = default_fail_open
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self.guard_id = uuid.uuid4().hex[:16]  # names this guard to the API's throttle buckets
        self._lease_stats = {"leases": 0, "lease_fallbacks": 0}
        self._cache = StreamFollower(self._stream_http, stale_after_s)
        self._cache.start()
        if kafka_bootstrap:
            from costwarden.sdk.kafka_reporter import KafkaReporter

            self._reporter = KafkaReporter(
                kafka_bootstrap, topic=kafka_topic, dead_letter_topic=kafka_dead_letter_topic, max_buffer=max_buffer,
                batch_size=batch_size, flush_interval_s=flush_interval_s, timeout_s=timeout_s, **(kafka_config or {}))
        else:
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
        """May `workflow` spend now? From memory; a throttle spends tokens leased from the API's
        bucket for the workflow (shared by every guard of it; a round trip per lease, see above)."""
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
        ok, retry = self._throttled(workflow, rate)
        return GuardDecision(workflow, "throttle", ok, e.reason, rate, e.budget_id, e.expires_at,
                             retry_after_s=retry)

    # --- throttles: tokens leased from the API's bucket of the workflow ----------------------
    def _throttled(self, workflow: str, rate: Decimal) -> tuple[bool, float | None]:
        with self._lock:
            lease = self._leases.get(workflow)
            if lease is None or lease.rate != rate:
                lease = self._leases[workflow] = _Lease(rate)
        with lease.cond:
            while True:
                now = time.monotonic()
                if lease.tokens > 0 and now < lease.until:
                    lease.tokens -= 1
                    return True, None
                if lease.local is not None and (now < lease.local_until or lease.asking):
                    # without the API (and while it is being asked again): our own bucket, no wait
                    return (True, None) if lease.local.take() else (False, lease.local.wait_s())
                if now < lease.retry_at:
                    return False, lease.retry_at - now
                if not lease.asking:
                    lease.asking = True
                    break
                lease.cond.wait(LEASE_TIMEOUT_S + 0.5)  # another caller is asking: its grant is ours too
        try:
            try:
                grant = self._ask_lease(workflow, lease.want)
            except _NoLease as e:
                return self._without_lease(lease, rate, e)
            with lease.cond:
                now = time.monotonic()
                self._lease_stats["leases"] += 1
                lease.local = None
                lease.guards = max(1, int(grant.get("guards") or 1))
                action = grant.get("action")
                if action == "allow":  # released since the cache heard: the stream brings it
                    return True, None
                if action != "throttle":  # blocked since: refused (the stream brings the block)
                    return False, None
                granted = int(grant.get("granted") or 0)
                lease.until = now + float(grant.get("valid_s") or 1.0)
                if granted > 0:
                    lease.tokens = granted - 1
                    return True, None
                wait = float(grant.get("retry_after_s") or 0.0)
                lease.retry_at = now + wait
                return False, wait
        finally:
            with lease.cond:
                lease.asking = False
                lease.cond.notify_all()

    def _ask_lease(self, workflow: str, want: int) -> dict:
        try:
            r = self._http.post(f"/v1/throttle/{quote(workflow, safe='')}/lease",
                                json={"want": want, "guard": self.guard_id}, timeout=LEASE_TIMEOUT_S)
        except httpx.HTTPError as e:
            raise _NoLease(False, f"{type(e).__name__}") from None
        if r.status_code in (404, 405, 501):
            raise _NoLease(True, f"HTTP {r.status_code}")
        if r.status_code != 200:
            raise _NoLease(False, f"HTTP {r.status_code}")
        try:
            return r.json()
        except ValueError:
            raise _NoLease(False, "not JSON") from None

    def _without_lease(self, lease: _Lease, rate: Decimal, e: _NoLease) -> tuple[bool, float | None]:
        """No lease: our own bucket, at the full rate where the API offers none, else at
        rate / guards, for a short while (then the API is asked again)."""
        with lease.cond:
            share = rate if e.not_offered else rate / lease.guards
            if lease.local is None or lease.local.rate_s != float(share) / 60.0:
                lease.local = _Bucket(share)
            lease.local_until = time.monotonic() + (NOT_OFFERED_RETRY_S if e.not_offered else UNREACHABLE_RETRY_S)
            self._lease_stats["lease_fallbacks"] += 1
            return (True, None) if lease.local.take() else (False, lease.local.wait_s())

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
        """pending / sent / dropped / rejected reports; `failures`: failed report attempts (each
        retried); `last_error`: why the last report attempt failed, None once one succeeded again; `stream_connected`, and `stream_error` (why the
        control stream is down, None while connected); `resyncs`: snapshots taken because the
        server's controls went backwards (a restart, another replica); `leases`: throttle leases
        granted by the API, `lease_fallbacks`: times a throttle fell back to this guard's own bucket."""
        r, c = self._reporter, self._cache
        return {"pending": r.pending, "sent": r.sent, "dropped": r.dropped, "rejected": r.rejected,
                "failures": r.failures, "last_error": r.last_error, "stream_connected": c.connected, "stream_error": c.last_error,
                "resyncs": c.resyncs, **self._lease_stats}

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
