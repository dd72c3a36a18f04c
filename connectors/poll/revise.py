"""Re-polled buckets against what is stored: emit new buckets, and revisions as deltas (pure).

A bucket's event id is stable (source, bucket start, group values), so the store already holds
whatever an earlier poll emitted for it: its first event (the id itself) plus any revision
events ("<id>~r<hash>"). For each polled bucket:

    nothing stored           -> the event as polled
    stored == polled         -> nothing (a re-poll, a restart, an overlapping window)
    polled >= stored, not == -> one revision event carrying polled - stored (every count,
                                GPU hours; provider cost as a signed difference), id
                                "<id>~r" + sha256(polled totals)[:16]
    polled < stored anywhere -> a reject ("inconsistent"): a usage event cannot be negative,
                                so a downward revision goes to the dead letters (and shows in
                                reconciliation) instead of being guessed

So the events of a bucket always add up to the provider's latest figures, exactly, and the
rollups (which sum every row) stay right: nothing is ever replaced in place.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Iterable, Mapping

from costwarden.connectors.base import Reject, fragment
from costwarden.events import Compute, ProviderCost, Tokens, UsageEvent

REV_SEP = "~r"
_TOKEN_FIELDS = ("input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning")
# usage_events column for each Totals field
COLUMNS = {"requests": "requests", "input": "input_tokens", "cache_read": "cache_read_tokens",
           "cache_write": "cache_write_tokens", "cache_write_1h": "cache_write_1h_tokens",
           "output": "output_tokens", "reasoning": "reasoning_tokens", "gpu_hours": "gpu_hours",
           "provider_cost": "provider_cost"}


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning: int = 0
    gpu_hours: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)

    @classmethod
    def of_event(cls, ev: UsageEvent) -> "Totals":
        t = ev.tokens
        return cls(ev.requests, *(getattr(t, f) for f in _TOKEN_FIELDS),
                   ev.compute.gpu_hours if ev.compute else Decimal(0),
                   ev.provider_cost.amount if ev.provider_cost else Decimal(0))

    @classmethod
    def of_row(cls, row: Mapping) -> "Totals":
        zero = {"gpu_hours": Decimal(0), "provider_cost": Decimal(0)}
        return cls(**{f: row[col] if row.get(col) is not None else zero.get(f, 0) for f, col in COLUMNS.items()})

    def _zip(self, other: "Totals", op) -> "Totals":
        return Totals(*(op(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    def __add__(self, other: "Totals") -> "Totals":
        return self._zip(other, lambda a, b: a + b)

    def __sub__(self, other: "Totals") -> "Totals":
        return self._zip(other, lambda a, b: a - b)

    def negative_counts(self) -> list[str]:
        """Names of the fields that went down (provider cost may move either way)."""
        return [f.name for f in fields(self) if f.name != "provider_cost" and getattr(self, f.name) < 0]

    def digest(self) -> str:
        blob = json.dumps([str(getattr(self, f.name)) for f in fields(self)], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_id(event_id: str) -> str:
    return event_id.split(REV_SEP, 1)[0]


def stored_totals(rows: Iterable[Mapping]) -> dict[str, Totals]:
    """Stored rows (usage_events columns + event_id) -> totals per bucket id (first event + revisions)."""
    out: dict[str, Totals] = {}
    for r in rows:
        b = base_id(r["event_id"])
        out[b] = out.get(b, Totals()) + Totals.of_row(r)
    return out


@dataclass
class Plan:
    events: list[UsageEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    new: int = 0
    revised: int = 0
    unchanged: int = 0


def plan(polled: Iterable[UsageEvent], stored: Mapping[str, Totals]) -> Plan:
    out = Plan()
    latest: dict[str, UsageEvent] = {}
    for ev in polled:  # the same bucket twice in one window: the later page wins
        latest[ev.event_id] = ev
    for eid, ev in latest.items():
        now = Totals.of_event(ev)
        before = stored.get(eid)
        if before is None:
            out.events.append(ev)
            out.new += 1
            continue
        if now == before:
            out.unchanged += 1
            continue
        delta = now - before
        down = delta.negative_counts()
        if down:
            out.rejects.append(Reject("inconsistent", f"provider revised bucket {eid[:16]}… down "
                                      f"({', '.join(down)}); stored totals kept", fragment(ev.model_dump(mode="json"))))
            continue
        try:
            out.events.append(revision_event(ev, delta, now.digest()))
            out.revised += 1
        except ValueError as e:  # e.g. reasoning grew more than output
            out.rejects.append(Reject("inconsistent", f"revision of {eid[:16]}…: {str(e)[:200]}",
                                      fragment(ev.model_dump(mode="json"))))
    return out


def revision_event(ev: UsageEvent, delta: Totals, digest: str) -> UsageEvent:
    update = {
        "event_id": f"{ev.event_id}{REV_SEP}{digest}",
        "requests": delta.requests,
        "tokens": Tokens(**{f: getattr(delta, f) for f in _TOKEN_FIELDS}),
    }
    if ev.compute is not None:
        update["compute"] = Compute(gpu_hours=delta.gpu_hours, gpu_type=ev.compute.gpu_type)
    if ev.provider_cost is not None:
        update["provider_cost"] = ProviderCost(amount=delta.provider_cost, currency=ev.provider_cost.currency)
    return UsageEvent.model_validate({**ev.model_dump(), **update})
