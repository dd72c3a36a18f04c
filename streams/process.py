"""The processing core, no I/O: two steps every runtime calls the same way.

    enrich   parse + dedupe -> price -> attribute -> raw rows, dead letters, charges
    budget   charges -> ledger (thresholds, forecast, spike) -> signals + control changes

The embedded runner and the API run both in one batch (costwarden/pipeline.py); the distributed
raw stage runs `enrich`, the budget stage runs `charge` on the totals it reads from the store.
A batch is staged: `begin()` before the steps, then `commit()` after the batch's rows were
written, or `rollback()` if the write failed, which puts the dedupe window, the ledger and the
controls back exactly as they were. The one store question the core has (which of these ids are
stored already?) is asked by the caller before `enrich`, from `dedupe.lookups()`.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from costwarden.budgets.controls import ControlBook, ControlChange, State
from costwarden.budgets.evaluate import BudgetLedger, Signal
from costwarden.errors import InvalidEventError
from costwarden.events import Limits, UsageEvent, parse_event
from costwarden.storable import storable_text as storable
from costwarden.streams.attribution import Attributor, as_dims
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.rollup import event_row
from costwarden.streams.unpriced import UnpricedNotice, block, notice, notice_key, recent

PAYLOAD_LIMIT = 256 * 1024


@dataclass(frozen=True)
class DeadLetter:
    received_at: datetime
    source: str
    reason: str
    detail: str
    payload: str

    def row(self) -> dict[str, Any]:
        payload = storable(self.payload)
        return {"received_at": self.received_at, "source": storable(self.source), "reason": self.reason,
                "detail": storable(self.detail), "payload": payload,
                "payload_sha256": hashlib.sha256(payload.encode()).hexdigest()}


@dataclass(frozen=True)
class Charge:
    """What one accepted event costs, for the budget step."""

    dims: dict[str, Any]
    cost_nanos: int
    at: datetime
    key: str


@dataclass
class Enriched:
    rows: list[dict] = field(default_factory=list)         # new events, input order
    dead: list[DeadLetter] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)     # one per row
    events: list[UsageEvent] = field(default_factory=list)  # one per row
    duplicates: list[UsageEvent] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)       # per input item: accepted|duplicate|rejected
    notices: list[UnpricedNotice] = field(default_factory=list)  # first unpriced use of a model on a day
    changes: list[ControlChange] = field(default_factory=list)   # blocks of the unpriced `block` policy


@dataclass
class Metrics:
    events_in: int = 0
    processed: int = 0
    duplicates: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)  # by provider/model
    cost_nanos: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"events_in": self.events_in, "processed": self.processed, "duplicates": self.duplicates,
                "dead_lettered": dict(self.dead_lettered), "unpriced": dict(self.unpriced),
                "cost_nanos": self.cost_nanos}


def _payload_text(payload: Any, limit: int = PAYLOAD_LIMIT) -> str:
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", "replace")
    elif isinstance(payload, str):
        text = payload
    else:
        text = json.dumps(payload, default=str)
    return text[:limit]


def dead_letter(payload: Any, source: str, reason: str, detail: str, at: datetime) -> DeadLetter:
    """The one way a dead letter is made: detail and payload capped, whatever the entry point."""
    return DeadLetter(at, source, reason, detail[:2000], _payload_text(payload))


class Processor:
    def __init__(self, catalogue: PriceCatalogue, attributor: Attributor, ledger: BudgetLedger,
                 controls: ControlBook, dedupe: DedupeWindow, limits: Limits | None = None,
                 clock: Callable[[], datetime] | None = None, unpriced_notify: Iterable[str] = ()) -> None:
        """`unpriced_notify`: the alert channels of unpriced notices (settings pricing.unpriced.notify)."""
        self.catalogue = catalogue
        self.attributor = attributor
        self.ledger = ledger
        self.controls = controls
        self.dedupe = dedupe
        self.limits = limits or Limits()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.metrics = Metrics()
        self._staged = Metrics()
        self.unpriced_notify = tuple(unpriced_notify)

    # --- staging ------------------------------------------------------------------------------
    def begin(self) -> None:
        self._staged = Metrics()
        self.ledger.begin()
        self.controls.begin()

    def commit(self) -> None:
        self.dedupe.commit()
        self.ledger.commit()
        self.controls.commit()
        m, s = self.metrics, self._staged
        m.events_in += s.events_in
        m.processed += s.processed
        m.duplicates += s.duplicates
        m.cost_nanos += s.cost_nanos
        m.dead_lettered.update(s.dead_lettered)
        m.unpriced.update(s.unpriced)
        self._staged = Metrics()

    def rollback(self) -> None:
        self.dedupe.rollback()
        self.ledger.rollback()
        self.controls.rollback()
        self._staged = Metrics()

    # --- enrich ---------------------------------------------------------------------------------
    def parse(self, payload: Any, source: str) -> UsageEvent | DeadLetter:
        if isinstance(payload, (UsageEvent, DeadLetter)):
            return payload
        try:
            return parse_event(payload, self.limits, now=self.clock())
        except InvalidEventError as e:
            return self.dead_letter(payload, source, e.reason, e.detail)

    def dead_letter(self, payload: Any, source: str, reason: str, detail: str) -> DeadLetter:
        return dead_letter(payload, source, reason, detail, self.clock())

    def lookups(self, items: Iterable[UsageEvent | DeadLetter]) -> list[str]:
        """Ids of the batch the store must be asked about (absence from the window proves nothing)."""
        return self.dedupe.lookups((e.event_id, e.occurred_at) for e in items if isinstance(e, UsageEvent))

    def enrich(self, items: list[UsageEvent | DeadLetter], stored: Iterable[str] = ()) -> Enriched:
        """`stored`: the ids among `lookups()` the store already holds."""
        self.dedupe.known(stored)
        out = Enriched()
        m = self._staged
        now = self.clock()
        for item in items:
            m.events_in += 1
            if isinstance(item, DeadLetter):
                m.dead_lettered[item.reason] += 1
                out.dead.append(item)
                out.statuses.append("rejected")
                continue
            if self.dedupe.seen(item.event_id, item.occurred_at):
                m.duplicates += 1
                out.duplicates.append(item)
                out.statuses.append("duplicate")
                continue
            price = self.catalogue.price(item)
            attributed = self.attributor.attribute(item)
            if price.unpriced:
                m.unpriced[f"{item.provider}/{item.model}"] += 1
                self._unpriced(item, price, attributed.workflow, now, out)
            out.rows.append(event_row(item, price, attributed, now))
            out.events.append(item)
            at = item.attribution
            out.charges.append(Charge(as_dims(item, attributed), price.cost_nanos, item.occurred_at,
                                      at.api_key_id or at.project_id or ""))
            out.statuses.append("accepted")
            m.processed += 1
            m.cost_nanos += price.cost_nanos
        return out

    def _unpriced(self, ev: UsageEvent, price, workflow: str, now: datetime, out: Enriched) -> None:
        """A notice the first time a model is unpriced on a day (staged like a fired threshold), and
        the block of the `block` policy."""
        if price.policy == "block":
            change = block(self.controls, ev, workflow)
            if change is not None:
                out.changes.append(change)
        if recent(ev.occurred_at, now) and self.ledger.mark(notice_key(ev)):
            out.notices.append(notice(ev, price, workflow, self.unpriced_notify))

    # --- budget ---------------------------------------------------------------------------------
    def charge(self, charges: Iterable[Charge]) -> tuple[list[Signal], list[ControlChange]]:
        signals: list[Signal] = []
        changes: list[ControlChange] = []
        for c in charges:
            s, ch = self.evaluate(c.dims, c.cost_nanos, c.at, c.key)
            signals += s
            changes += ch
        return signals, changes

    def evaluate(self, dims: dict[str, Any], cost_nanos: int, at: datetime,
                 key: str = "") -> tuple[list[Signal], list[ControlChange]]:
        """Charge budgets and apply the controls they ask for."""
        signals: list[Signal] = []
        changes: list[ControlChange] = []
        for signal, pt, budget in self.ledger.charge(dims, cost_nanos, at, key):
            if signal is not None:
                signals.append(signal)
            for th_id, action in pt.control_actions:
                change = self._control(dims.get("workflow") or "", action, budget, pt, th_id, at)
                if change is not None:
                    changes.append(change)
        return signals, changes

    def _control(self, workflow: str, action, budget, pt, th_id: str, at: datetime) -> ControlChange | None:
        if getattr(action, "block", None):
            state, rate = State.block, None
        else:
            state, rate = State.throttle, Decimal(action.throttle.rate_per_min)
        reason = f"budget {budget.id} {pt.key} reached {th_id}"
        rolling = budget.period.rolling_seconds
        expires = at + timedelta(seconds=rolling) if rolling else pt.end
        return self.controls.apply_rule(workflow, state, rate_per_min=rate, budget_id=budget.id,
                                        period_start=pt.start, expires_at=expires, reason=reason, at=at)
