"""Throttle leases: one token bucket per throttled workflow, shared by every guard of it.

A throttle (`rate_per_min`) enforced by a local bucket in each SDK guard lets N gateway replicas
of one workflow admit N x the rate together. Instead every guard leases small batches of tokens
from the API (POST /v1/throttle/{workflow}/lease) and spends them locally; the API's bucket for the
workflow fills at the configured rate, so the guards together are admitted at that rate:

    admitted over any window of W seconds <= capacity + rate x W + (tokens leased before the window
                                             and still unspent: at most one lease per guard)

capacity = max(1, one second of the rate), as the guard's own bucket had. A lease is valid for
`LEASE_VALID_S`; the guard drops what it did not spend by then, so tokens cannot be hoarded and
used in a burst later. Each guard names itself (`guard`, a random id per Costwarden instance);
the API counts the guards of a workflow seen in the last `GUARD_WINDOW_S` and says so (`guards`),
which is what a guard divides the rate by when it cannot reach the API (costwarden/sdk/client.py).

In embedded mode the bucket lives in the API process. In distributed mode the owner replica of the
workflow (api/owner.py, the same rendezvous hashing as reservations) holds it and the other replicas
forward the lease; without `api.replicas` leases are not offered (501) -- each replica would hold a
bucket of its own -- and the guards fall back to their local bucket.

Everything here runs on the event loop (a dict and a few floats): never on the pipeline thread.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from decimal import Decimal

LEASE_VALID_S = 2.0     # a guard spends a lease within this, or drops the rest
GUARD_WINDOW_S = 10.0   # guards that leased within this count in `guards`
MAX_WANT = 1000
_MAX_GUARDS = 10_000    # per workflow (a bound on memory; ids come from authenticated gateways)


@dataclass
class _Bucket:
    rate_per_min: Decimal
    tokens: float
    at: float
    guards: dict[str, float] = field(default_factory=dict)  # guard id -> last lease (monotonic)

    @property
    def rate_s(self) -> float:
        return float(self.rate_per_min) / 60.0

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_s)


class ThrottleBook:
    """Per-workflow buckets at the throttle's rate, filled lazily (nothing runs between leases)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def lease(self, workflow: str, rate_per_min: Decimal, want: int, guard: str = "") -> dict:
        """Grant up to `want` tokens of `workflow`'s bucket at `rate_per_min` (a new rate starts a
        full bucket at it). Returns granted, retry_after_s (when the next token is due, if none was
        granted), valid_s and guards (distinct guards of the last GUARD_WINDOW_S)."""
        now = self._clock()
        b = self._buckets.get(workflow)
        if b is None or b.rate_per_min != rate_per_min:
            b = self._buckets[workflow] = _Bucket(rate_per_min, max(1.0, float(rate_per_min) / 60.0), now,
                                                  b.guards if b is not None else {})
        rate_s = b.rate_s
        b.tokens = min(b.capacity, b.tokens + (now - b.at) * rate_s)
        b.at = now
        granted = min(max(0, min(want, MAX_WANT)), int(math.floor(b.tokens + 1e-9)))
        b.tokens -= granted
        if guard:
            if guard not in b.guards and len(b.guards) >= _MAX_GUARDS:
                self._forget(b, now)
            if guard in b.guards or len(b.guards) < _MAX_GUARDS:
                b.guards[guard] = now
        retry = 0.0
        if granted == 0:
            retry = (1.0 - b.tokens) / rate_s if rate_s > 0 else 60.0
        return {"granted": granted, "retry_after_s": round(max(retry, 0.0), 3), "valid_s": LEASE_VALID_S,
                "guards": max(1, self.guards(workflow, now))}

    def guards(self, workflow: str, now: float | None = None) -> int:
        b = self._buckets.get(workflow)
        if b is None:
            return 0
        now = self._clock() if now is None else now
        return sum(1 for t in b.guards.values() if now - t <= GUARD_WINDOW_S)

    @staticmethod
    def _forget(b: _Bucket, now: float) -> None:
        for g in [g for g, t in b.guards.items() if now - t > GUARD_WINDOW_S]:
            del b.guards[g]

    def drop(self, workflow: str) -> None:
        """The workflow is no longer throttled: its bucket goes (a new throttle starts full)."""
        self._buckets.pop(workflow, None)
