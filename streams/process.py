"""The processing core: validate+dedupe -> price -> attribute -> row -> evaluate budgets -> controls.

No I/O. The embedded runner and the Faust agents both call `Processor.handle()` per payload and
persist what it returns at their commit point.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from costwarden.budgets.controls import ControlBook, ControlChange, State
from costwarden.budgets.evaluate import BudgetLedger, Signal
from costwarden.errors import InvalidEventError
from costwarden.events import Limits, UsageEvent, parse_event
from costwarden.streams.attribution import Attributor, as_dims
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.rollup import event_row


@dataclass(frozen=True)
class DeadLetter:
    received_at: datetime
    source: str
    reason: str
    detail: str
    payload: str

    def row(self) -> dict[str, Any]:
        return {"received_at": self.received_at, "source": self.source, "reason": self.reason,
                "detail": self.detail, "payload": self.payload,
                "payload_sha256": hashlib.sha256(self.payload.encode()).hexdigest()}


@dataclass
class Outcome:
    row: dict[str, Any] | None = None
    duplicate: bool = False
    dead: DeadLetter | None = None
    signals: list[Signal] = field(default_factory=list)
    changes: list[ControlChange] = field(default_factory=list)


@dataclass
class Metrics:
    events_in: int = 0
    processed: int = 0
    duplicates: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)  # by provider/model
    cost_micros: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"events_in": self.events_in, "processed": self.processed, "duplicates": self.duplicates,
                "dead_lettered": dict(self.dead_lettered), "unpriced": dict(self.unpriced),
                "cost_micros": self.cost_micros}


def _payload_text(payload: Any, limit: int = 256 * 1024) -> str:
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", "replace")
    elif isinstance(payload, str):
        text = payload
    else:
        import json

        text = json.dumps(payload, default=str)
    return text[:limit]


class Processor:
    def __init__(self, catalogue: PriceCatalogue, attributor: Attributor, ledger: BudgetLedger,
                 controls: ControlBook, dedupe: DedupeWindow, limits: Limits | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.catalogue = catalogue
        self.attributor = attributor
        self.ledger = ledger
        self.controls = controls
        self.dedupe = dedupe
        self.limits = limits or Limits()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.metrics = Metrics()

    def parse(self, payload: Any, source: str) -> UsageEvent | DeadLetter:
        try:
            return parse_event(payload, self.limits, now=self.clock())
        except InvalidEventError as e:
            return self.dead_letter(payload, source, e.reason, e.detail)

    def dead_letter(self, payload: Any, source: str, reason: str, detail: str) -> DeadLetter:
        self.metrics.dead_lettered[reason] += 1
        return DeadLetter(self.clock(), source, reason, detail[:2000], _payload_text(payload))

    def handle(self, payload: Any, source: str = "ingest") -> Outcome:
        self.metrics.events_in += 1
        ev = payload if isinstance(payload, UsageEvent) else self.parse(payload, source)
        if isinstance(ev, DeadLetter):
            return Outcome(dead=ev)
        return self.process(ev)

    def process(self, ev: UsageEvent) -> Outcome:
        if self.dedupe.seen(ev.event_id, ev.occurred_at):
            self.metrics.duplicates += 1
            return Outcome(duplicate=True)
        price = self.catalogue.price(ev)
        if price.unpriced:
            self.metrics.unpriced[f"{ev.provider}/{ev.model}"] += 1
        attributed = self.attributor.attribute(ev)
        row = event_row(ev, price, attributed, self.clock())
        self.metrics.processed += 1
        self.metrics.cost_micros += price.cost_micros
        out = Outcome(row=row)
        dims = as_dims(ev, attributed)
        key = ev.attribution.api_key_id or ev.attribution.project_id or ""
        out.signals, out.changes = self.evaluate(dims, price.cost_micros, ev.occurred_at, key)
        return out

    def evaluate(self, dims: dict[str, Any], cost_micros: int, at: datetime,
                 key: str = "") -> tuple[list[Signal], list[ControlChange]]:
        """Charge budgets and apply the controls they ask for (also the distributed budget stage)."""
        signals: list[Signal] = []
        changes: list[ControlChange] = []
        for signal, pt, budget in self.ledger.charge(dims, cost_micros, at, key):
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
