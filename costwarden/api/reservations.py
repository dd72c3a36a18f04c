"""Reserve-then-settle: admission against hard budgets that stays exact under concurrency.

A gateway reserves what a call may cost before the call, and settles with the real usage after
it. Admission is refused when, for any hard budget of the workflow (a budget with a `block`
action), spent + held + this hold would pass the block threshold. Holds expire after a TTL, so a
gateway that dies mid-call frees them.

Hold size (`sizing="quantile"`, the default): the smaller of
    worst  = catalogue price of max input + max output tokens (what LiteLLM's proxy holds), and
    recent = the workflow's p99 cost per call over its last 256 calls (`CostSample`: seeded from
             the store at first use and every 10 minutes, and fed by every settle),
never less than the price of the input tokens alone (the prompt is billed whatever the answer).
With fewer than 20 recent calls, or `sizing="worst"`, the hold is the worst case. Worst-case holds
never overshoot but refuse calls the budget could pay (a burst of long `max_tokens` fills the
budget with holds while real spend is near zero); quantile holds admit what the workflow really
spends, and a call that costs more than its hold can overshoot by the difference:
    overshoot <= sum over the calls in flight at the last admission of (actual - hold)+
(each term <= worst - hold, and it is nonzero for about 1 call in 100 at p99).

Refusals (`Refused`, HTTP 409) carry a code: `budget_exceeded` when waiting cannot help in this
period (the workflow is blocked, or spent + this hold passes the limit) and `budget_reserved`
when only other open holds stand in the way (retry after they settle: `retry_after_s`).

Consistency: every method runs on the pipeline thread (the one writer of spend), so `spent` and
`held` are read and changed without interleaving: in one process admission is linearizable.
Settle records the usage first and drops the hold after, so no instant undercounts.
Holds live in memory: a restart drops them (they would expire within one TTL anyway).
Distributed mode: `OwnerBook` (owner_book.py) runs this class on the replica that owns the
workflow, against the store's spend plus settled-but-not-yet-stored amounts.
"""
from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from costwarden.budgets.controls import State
from costwarden.errors import ControlError, InvalidEventError
from costwarden.events import Attribution, Tokens, UsageEvent
from costwarden.money import from_nanos
from costwarden.store.queries import lit, ts
from costwarden.streams.attribution import as_dims

log = logging.getLogger("costwarden.api.reservations")

BUDGET_EXCEEDED = "budget_exceeded"  # final for this period: do not retry
BUDGET_RESERVED = "budget_reserved"  # other calls' holds fill the budget: retry after they settle
RESERVED_RETRY_AFTER_S = 1


class Refused(ControlError):
    """Admission refused (HTTP 409). `code`: BUDGET_EXCEEDED (waiting cannot help in this period)
    or BUDGET_RESERVED (other open holds are in the way; `retry_after_s`)."""

    def __init__(self, message: str, code: str = BUDGET_EXCEEDED, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        """How clients that honour `x-should-retry` (the openai / anthropic SDKs' convention) and
        `Retry-After` should treat the refusal."""
        if self.retry_after_s is None:
            return {"x-should-retry": "false"}
        return {"x-should-retry": "true", "Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class CostSample:
    """A workflow's recent cost per call in nano-dollars (newest last, at most `size`)."""

    def __init__(self, size: int) -> None:
        self.values: deque[int] = deque(maxlen=size)
        self.seeded_at: datetime | None = None

    def __len__(self) -> int:
        return len(self.values)

    def add(self, nanos: int) -> None:
        if nanos > 0:
            self.values.append(nanos)

    def quantile(self, q: float) -> int | None:
        """Nearest-rank quantile (the smallest value with at least q of the sample at or below it)."""
        if not self.values:
            return None
        xs = sorted(self.values)
        return xs[max(0, math.ceil(q * len(xs)) - 1)]


def recent_cost_sql(workflow: str, since: datetime, limit: int) -> str:
    """The newest per-call costs of a workflow (events of one request; free calls left out)."""
    return (f"SELECT cost_nanos FROM {{db}}.usage_events WHERE workflow = {lit(workflow)} "
            f"AND occurred_at >= {ts(since)} AND requests <= 1 AND unpriced = 0 AND cost_nanos > 0 "
            f"ORDER BY occurred_at DESC LIMIT {int(limit)}")


@dataclass
class Hold:
    id: str
    workflow: str
    model: str
    provider: str
    nanos: int
    budgets: list[tuple[str, datetime]]  # (budget id, period start)
    created_at: datetime
    expires_at: datetime
    limits: dict[str, int] = field(default_factory=dict)
    worst_nanos: int | None = None
    sized_by: str = "worst case"

    def as_json(self) -> dict:
        worst = self.nanos if self.worst_nanos is None else self.worst_nanos
        return {"id": self.id, "workflow": self.workflow, "model": self.model, "provider": self.provider,
                "estimate_nanos": self.nanos, "estimate_usd": str(from_nanos(self.nanos)),
                "worst_case_usd": str(from_nanos(worst)), "sized_by": self.sized_by,
                "budgets": [b for b, _ in self.budgets], "expires_at": self.expires_at.isoformat()}


def _hard_limit(budget) -> int | None:
    """The spend at which the budget blocks (its lowest actual block threshold), or None."""
    lim = None
    for th in budget.thresholds:
        if th.basis == "actual" and any(a.block for a in th.actions):
            t = th.trigger_nanos(budget.amount_nanos)
            lim = t if lim is None else min(lim, t)
    return lim


class ReservationBook:
    QUANTILE = 0.99          # of the workflow's recent cost per call
    SAMPLE_SIZE = 256        # recent calls kept per workflow
    MIN_SAMPLES = 20         # fewer: holds are the worst case
    RESEED_S = 600           # re-read the sample from the store (usage that did not come by settle)
    HISTORY_DAYS = 30        # how far back the store is read

    def __init__(self, pipeline, ttl_s: float) -> None:
        self.pipeline = pipeline
        self.ttl = timedelta(seconds=ttl_s)
        self.holds: dict[str, Hold] = {}
        self.admitted = 0
        self.refused = 0
        self.id_prefix = ""  # distributed mode: names the owner replica (api/owner.py)
        self.store = getattr(pipeline, "store", None)  # OwnerBook sets its own
        self.samples: dict[str, CostSample] = {}

    def _now(self) -> datetime:
        return datetime.now(timezone.utc)

    def expire(self, now: datetime | None = None) -> int:
        now = now or self._now()
        gone = [h for h in self.holds.values() if h.expires_at <= now]
        for h in gone:
            del self.holds[h.id]
        return len(gone)

    def held(self, budget_id: str, period_start: datetime) -> int:
        return sum(h.nanos for h in self.holds.values() if (budget_id, period_start) in h.budgets)

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
        return ev, price.cost_nanos

    # --- the workflow's recent cost per call ---------------------------------------------------
    def sample(self, workflow: str, now: datetime | None = None) -> CostSample:
        """Runs on the pipeline thread. Seeded from the store at first use and every RESEED_S."""
        now = now or self._now()
        s = self.samples.get(workflow)
        if s is None:
            s = self.samples[workflow] = CostSample(self.SAMPLE_SIZE)
        if self.store is not None and (s.seeded_at is None or (now - s.seeded_at).total_seconds() >= self.RESEED_S):
            s.seeded_at = now  # also after a failure: at most one store read per workflow per RESEED_S
            try:
                rows = self.store.query(recent_cost_sql(workflow, now - timedelta(days=self.HISTORY_DAYS),
                                                        self.SAMPLE_SIZE))
            except Exception as e:  # the hold falls back to the worst case; admission goes on
                log.warning("recent cost of %r not read from the store (%s); holds are the worst case",
                            workflow, e)
            else:
                s.values.clear()
                for r in reversed(rows):
                    s.add(int(r["cost_nanos"]))
        return s

    def observe(self, workflow: str, cost_nanos: int) -> None:
        """Runs on the pipeline thread: a settled call's cost joins the workflow's sample."""
        s = self.samples.get(workflow)
        if s is not None:  # a sample not read yet is seeded from the store, which has the call
            s.add(cost_nanos)

    def size(self, workflow: str, ev: UsageEvent, worst: int, sizing: str, now: datetime) -> tuple[int, str]:
        """(hold, how it was sized): min(worst, max(recent p99, the input alone)); see the module doc."""
        if sizing == "worst":
            return worst, "worst case"
        s = self.sample(workflow, now)
        q = s.quantile(self.QUANTILE) if len(s) >= self.MIN_SAMPLES else None
        if q is None:
            return worst, f"worst case ({len(s)} recent calls < {self.MIN_SAMPLES})"
        if q >= worst:
            return worst, "worst case (below the recent p99)"
        floor = self.pipeline.processor.catalogue.price(ev.model_copy(update={
            "tokens": Tokens(input=ev.tokens.input)})).cost_nanos
        if floor >= q:
            return floor, "input tokens alone"
        return q, f"p{round(self.QUANTILE * 100)} of {len(s)} recent calls"

    def reserve(self, workflow: str, model: str, provider: str, max_input: int, max_output: int,
                tags: dict[str, str] | None = None, ttl_s: float | None = None, sizing: str = "quantile") -> Hold:
        """Runs on the pipeline thread. Raises Refused (409) when a hard budget would be passed."""
        now = self._now()
        self.expire(now)
        proc = self.pipeline.processor
        decision = self.pipeline.controls.check(workflow, now)
        if decision.action is State.block:
            self.refused += 1
            raise Refused(f"workflow {workflow!r} is blocked: {decision.reason}", BUDGET_EXCEEDED)
        ev, worst = self.estimate(workflow, model, provider, max_input, max_output, tags, now)
        dims = as_dims(ev, proc.attributor.attribute(ev))
        matching = [(b, lim) for b in proc.ledger.matching(dims) if (lim := _hard_limit(b)) is not None]
        nanos, sized_by = self.size(workflow, ev, worst, sizing, now) if matching else (worst, "worst case")
        keys, limits = [], {}
        for b, limit in matching:
            pt = proc.ledger.period(b, now)
            held = self.held(b.id, pt.start)
            if pt.spend + held + nanos > limit:
                self.refused += 1
                text = (f"budget {b.id} {pt.key}: spent ${from_nanos(pt.spend)} + held ${from_nanos(held)} + "
                        f"this call ${from_nanos(nanos)} ({sized_by}) would pass its hard limit "
                        f"${from_nanos(limit)}")
                if pt.spend + nanos > limit:
                    raise Refused(text, BUDGET_EXCEEDED)
                raise Refused(text + "; retry when calls in flight have settled", BUDGET_RESERVED,
                              RESERVED_RETRY_AFTER_S)
            keys.append((b.id, pt.start))
            limits[b.id] = limit
        ttl = timedelta(seconds=ttl_s) if ttl_s else self.ttl
        hold = Hold(self.id_prefix + uuid.uuid4().hex, workflow, model, provider, nanos, keys, now, now + ttl,
                    limits, worst, sized_by)
        self.holds[hold.id] = hold
        self.admitted += 1
        return hold

    def release(self, hold_id: str) -> Hold | None:
        return self.holds.pop(hold_id, None)
