"""Reserve-then-settle: admission against hard budgets that stays exact under concurrency.

A gateway reserves the most a call can cost (catalogue price of max input + max output tokens)
before the call, and settles with the real usage after it. Admission is refused when, for any
hard budget of the workflow (a budget with a `block` action), spent + held + this estimate would
pass the block threshold. Holds expire after a TTL, so a gateway that dies mid-call frees them.

Consistency: every method runs on the pipeline thread (the one writer of spend), so `spent` and
`held` are read and changed without interleaving: in one process admission is linearizable.
Settle records the usage first and drops the hold after, so no instant undercounts.
Holds live in memory: a restart drops them (they would expire within one TTL anyway).
Distributed mode: `OwnerBook` (owner_book.py) runs this class on the replica that owns the
workflow, against the store's spend plus settled-but-not-yet-stored amounts.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from costwarden.budgets.controls import State
from costwarden.errors import ControlError, InvalidEventError
from costwarden.events import Attribution, Tokens, UsageEvent
from costwarden.money import from_micros
from costwarden.streams.attribution import as_dims


class Refused(ControlError):
    """Admission refused: the reservation would pass a hard budget (HTTP 409)."""


@dataclass
class Hold:
    id: str
    workflow: str
    model: str
    provider: str
    micros: int
    budgets: list[tuple[str, datetime]]  # (budget id, period start)
    created_at: datetime
    expires_at: datetime
    limits: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"id": self.id, "workflow": self.workflow, "model": self.model, "provider": self.provider,
                "estimate_micros": self.micros, "estimate_usd": str(from_micros(self.micros)),
                "budgets": [b for b, _ in self.budgets], "expires_at": self.expires_at.isoformat()}


def _hard_limit(budget) -> int | None:
    """The spend at which the budget blocks (its lowest actual block threshold), or None."""
    lim = None
    for th in budget.thresholds:
        if th.basis == "actual" and any(a.block for a in th.actions):
            t = th.trigger_micros(budget.amount_micros)
            lim = t if lim is None else min(lim, t)
    return lim


class ReservationBook:
    def __init__(self, pipeline, ttl_s: float) -> None:
        self.pipeline = pipeline
        self.ttl = timedelta(seconds=ttl_s)
        self.holds: dict[str, Hold] = {}
        self.admitted = 0
        self.refused = 0
        self.id_prefix = ""  # distributed mode: names the owner replica (api/owner.py)

    def _now(self) -> datetime:
        return datetime.now(timezone.utc)

    def expire(self, now: datetime | None = None) -> int:
        now = now or self._now()
        gone = [h for h in self.holds.values() if h.expires_at <= now]
        for h in gone:
            del self.holds[h.id]
        return len(gone)

    def held(self, budget_id: str, period_start: datetime) -> int:
        return sum(h.micros for h in self.holds.values() if (budget_id, period_start) in h.budgets)

    def estimate(self, workflow: str, model: str, provider: str, max_input: int, max_output: int,
                 tags: dict[str, str] | None = None, at: datetime | None = None) -> tuple[UsageEvent, int]:
        ev = UsageEvent(event_id=f"reservation:{uuid.uuid4().hex}", occurred_at=at or self._now(),
                        source="reservation", provider=provider, model=model,
                        tokens=Tokens(input=max_input, output=max_output),
                        attribution=Attribution(tags={**(tags or {}), "workflow": workflow}))
        price = self.pipeline.processor.catalogue.price(ev)
        if price.unpriced:
            raise InvalidEventError("unpriced", f"{provider}/{model} is not in the price catalogue; "
                                                f"cannot estimate a reservation")
        return ev, price.cost_micros

    def reserve(self, workflow: str, model: str, provider: str, max_input: int, max_output: int,
                tags: dict[str, str] | None = None, ttl_s: float | None = None) -> Hold:
        """Runs on the pipeline thread. Raises Refused (409) when a hard budget would be passed."""
        now = self._now()
        self.expire(now)
        proc = self.pipeline.processor
        decision = self.pipeline.controls.check(workflow, now)
        if decision.action is State.block:
            self.refused += 1
            raise Refused(f"workflow {workflow!r} is blocked: {decision.reason}")
        ev, micros = self.estimate(workflow, model, provider, max_input, max_output, tags, now)
        dims = as_dims(ev, proc.attributor.attribute(ev))
        keys, limits = [], {}
        for b in proc.ledger.matching(dims):
            limit = _hard_limit(b)
            if limit is None:
                continue
            pt = proc.ledger.period(b, now)
            held = self.held(b.id, pt.start)
            if pt.spend + held + micros > limit:
                self.refused += 1
                raise Refused(f"budget {b.id} {pt.key}: spent ${from_micros(pt.spend)} + held "
                              f"${from_micros(held)} + this call up to ${from_micros(micros)} would pass its "
                              f"hard limit ${from_micros(limit)}")
            keys.append((b.id, pt.start))
            limits[b.id] = limit
        ttl = timedelta(seconds=ttl_s) if ttl_s else self.ttl
        hold = Hold(self.id_prefix + uuid.uuid4().hex, workflow, model, provider, micros, keys, now, now + ttl,
                    limits)
        self.holds[hold.id] = hold
        self.admitted += 1
        return hold

    def release(self, hold_id: str) -> Hold | None:
        return self.holds.pop(hold_id, None)
