"""Stage 1: raw usage -> validate+dedupe, price, attribute (part 1's Processor) -> ClickHouse.

Input is one slice per Kafka partition (topic, partition, first..last offset, payloads). The
commit point is `handle()`: it stores the slice's rows in ONE insert whose dedup token is derived
from (topic, partition, offset range, the event ids stored), so a retried or replayed identical
slice is stored once in the raw table AND the rollups fed by it. Before processing, every id the
dedupe window does not hold is looked up in the store (one query per slice), so an event stored
by an earlier run, by another worker before a rebalance, or in a different batch shape after a
crash is stored and counted once. Such an event is still sent on (its earlier sends were aborted
with the transaction that did not commit its offsets), so the processed topic is at least once:
its consumers dedupe by event_id. Only after `handle()` returns do the agents send and commit.

What goes on: processed rows (keyed by workflow), dead letters (keyed by source) and, per
(budget, period, workflow) touched, one usage record keyed by budget id for stage 2. Replayed
events already stored still produce a (zero-cost) budget record, so a crash between the store
write and the send cannot leave a budget unevaluated (any duplicate does; a zero-cost
record only makes stage 2 re-read a total).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from costwarden.budgets.controls import ControlBook
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.budgets.model import BudgetFile
from costwarden.budgets.periods import period_bounds
from costwarden.distributed.state import Core, dedupe_window, to_json
from costwarden.events import UsageEvent
from costwarden.store import Store
from costwarden.store.queries import known_ids_queries
from costwarden.streams.attribution import as_dims
from costwarden.streams.process import DeadLetter, Processor
from costwarden.streams.rollup import event_row


@dataclass(frozen=True)
class Slice:
    """Consecutive records of one partition, in offset order."""

    topic: str
    partition: int
    first: int
    last: int
    payloads: list[bytes]

    def token(self, event_ids: list[str]) -> str:
        h = hashlib.sha256(f"{self.topic}:{self.partition}:{self.first}-{self.last}\n".encode())
        h.update("\n".join(event_ids).encode())
        return h.hexdigest()


@dataclass
class Result:
    processed: list[tuple[bytes, bytes]] = field(default_factory=list)     # (workflow, row JSON)
    dead: list[tuple[bytes, bytes]] = field(default_factory=list)          # (source, dead letter JSON)
    budget_usage: list[tuple[bytes, bytes]] = field(default_factory=list)  # (budget id, usage JSON)
    events_in: int = 0
    accepted: int = 0
    duplicates: int = 0
    replayed: int = 0  # already stored by an earlier attempt: sent on again, not stored or counted
    dead_reasons: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)
    cost_micros: int = 0
    rows: list[dict] = field(default_factory=list, repr=False)       # to store (one insert, one token)
    dead_rows: list[dict] = field(default_factory=list, repr=False)
    token: str = ""
    written: bool = False


class RawStage:
    def __init__(self, core: Core, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.core = core
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        s = core.settings
        empty = BudgetLedger(BudgetFile(version=1, timezone=core.budgets.timezone, budgets=[]))
        self.processor = Processor(core.catalogue, core.attributor, empty, ControlBook(), dedupe_window(store, s),
                                   s.limits.limits(), self.clock)
        self.budgets = BudgetLedger(core.budgets)  # only for matching scopes; stage 2 evaluates
        self._pending: dict[tuple, Result] = {}   # formed slices whose write has not succeeded yet

    def handle(self, slices: list[Slice]) -> Result:
        """Process and store every slice (the commit point). Raises if ClickHouse cannot be
        written; the caller retries the same slices, and a slice whose write failed is written
        again exactly as formed the first time (same rows, same token): if the server stored the
        raw block but not every rollup before it failed, the retry fills in the rollups only."""
        result = Result()
        keys = [(sl.topic, sl.partition, sl.first, sl.last) for sl in slices]
        for key, sl in zip(keys, slices):
            part = self._pending.get(key)
            if part is None:
                part = self._pending[key] = self._form(sl)
            if not part.written:
                self._write(part)
                part.written = True
        for key in keys:
            _merge(result, self._pending.pop(key))
        return result

    def _write(self, part: "Result") -> None:
        if part.rows:
            self.store.insert("usage_events", part.rows, dedup_token=part.token)
        if part.dead_rows:
            self.store.insert("dead_letters", part.dead_rows, dedup_token=part.token + "-dead")

    def _form(self, sl: Slice) -> "Result":
        proc = self.processor
        dd = proc.dedupe
        source = f"kafka:{sl.topic}"
        parsed = [proc.parse(p, source) for p in sl.payloads]
        events = [e for e in parsed if isinstance(e, UsageEvent)]
        known = self._stored_ids([e for e in events if e.event_id not in dd])
        rows, resent, dead, ticks, in_slice = [], [], [], {}, set()
        part = Result()
        for item in parsed:
            part.events_in += 1
            if isinstance(item, DeadLetter):
                dead.append(item.row())
                part.dead_reasons[item.reason] += 1
                continue
            out = proc.process(item)
            if out.duplicate:
                # Maybe a replay whose sends were lost in a crash (after the store write, before
                # the sends): send the row on again (the processed topic is at least once) and
                # have stage 2 look at the budgets again with a zero-cost record.
                part.duplicates += 1
                if item.event_id not in in_slice:
                    attributed = proc.attributor.attribute(item)
                    resent.append(event_row(item, proc.catalogue.price(item), attributed, self.clock()))
                    self._tick(ticks, item, as_dims(item, attributed), 0)
                continue
            in_slice.add(item.event_id)
            row = out.row
            if row["event_id"] in known:  # stored by an earlier attempt: send on, store and count once
                resent.append(row)
                self._tick(ticks, item, _dims(row, item), 0)
                continue
            rows.append(row)
            part.cost_micros += row["cost_micros"]
            if row["unpriced"]:
                part.unpriced[f"{row['provider']}/{row['model']}"] += 1
            self._tick(ticks, item, _dims(row, item), row["cost_micros"])
        dd.end_batch()
        part.rows, part.dead_rows = rows, dead
        part.token = sl.token([r["event_id"] for r in rows])
        part.accepted = len(rows)
        part.replayed = len(resent)
        part.processed = [(r["workflow"].encode(), to_json(r)) for r in rows + resent]
        part.dead = [(d["source"].encode(), to_json(d)) for d in dead]
        part.budget_usage = [(t["budget_id"].encode(), to_json(t)) for t in ticks.values()]
        return part

    def _stored_ids(self, events: list[UsageEvent]) -> set[str]:
        ids = sorted({e.event_id for e in events})
        found: set[str] = set()
        for q in known_ids_queries(ids):
            found.update(r["event_id"] for r in self.store.query(q.to_sql()))
        return found

    def _tick(self, ticks: dict, ev: UsageEvent, dims: dict, cost: int) -> None:
        key = ev.attribution.api_key_id or ev.attribution.project_id or ""
        at = ev.occurred_at
        for b in self.budgets.matching(dims):
            if b.period.rolling_seconds is None:
                period = period_bounds(b.period, at, self.budgets.tz)[0].isoformat()
            else:
                period = "rolling"
            t = ticks.get((b.id, period, dims.get("workflow")))
            if t is None:
                t = ticks[(b.id, period, dims.get("workflow"))] = {
                    "budget_id": b.id, "period": period, "dims": dims, "at": at, "key": key, "points": []}
            if at >= t["at"]:
                t["at"], t["dims"], t["key"] = at, dims, key
            if cost:
                t["points"].append([at, cost])


def _dims(row: dict, ev: UsageEvent) -> dict:
    return {"team": row["team"], "workflow": row["workflow"], "cost_center": row["cost_center"],
            "env": row["env"], "provider": ev.provider, "model": ev.model, "org": ev.attribution.tags.get("org")}


def _merge(res: Result, part: Result) -> None:
    res.processed += part.processed
    res.dead += part.dead
    res.budget_usage += part.budget_usage
    res.events_in += part.events_in
    res.accepted += part.accepted
    res.duplicates += part.duplicates
    res.replayed += part.replayed
    res.dead_reasons.update(part.dead_reasons)
    res.unpriced.update(part.unpriced)
    res.cost_micros += part.cost_micros
