"""Stage 1: raw usage -> validate+dedupe, price, attribute (the core's enrich step) -> ClickHouse.

Input is one slice per Kafka partition (topic, partition, first..last offset, payloads). The
commit point is `handle()`, per slice, the same steps as the embedded batch loop
(costwarden/pipeline.py):

    1. the partition taken over? (else: re-apply its pending journal entries first, see below)
    2. parse; ask the store about every id the dedupe window does not hold (`lookup_all`: another
       worker may have stored it, on this partition before a rebalance or a crash)
    3. Processor.begin -> enrich -> form ONE Commit (usage rows, dead letters; split by month,
       a deduplication token per block) -> CommitWriter.commit through the partition's
       StoreJournal ("raw:<topic>:<partition>", costwarden/store/store_journal.py)
    4. Processor.commit (the slice's ids enter the window) or, if the write failed, rollback

So an event stored by an earlier run, by another worker before a rebalance, or in a different
batch shape after a crash is stored and counted once, in the raw table and in every rollup. A
commit whose writes were cut short (a crash, a failed insert) stays in the journal and is
re-applied, identically, before anything else of its partition: by this worker when it retries,
or by whichever worker is assigned the partition next. Events such a replay stores are this
partition's own unsent events (the Kafka offsets did not commit): the slice that carries them
again sends them on as accepted, with their cost.

What goes on: processed rows (keyed by workflow), dead letters (keyed by source) and, per
(budget, period, workflow) touched, one usage record keyed by budget id for stage 2. An event
found already stored is still sent on (the processed topic is at least once: its consumers
dedupe by event_id) with a zero-cost budget record, so a crash between the store write and the
sends cannot leave a budget unevaluated (a zero-cost record only makes stage 2 re-read a total).
Only after `handle()` returns do the agents send and commit offsets.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from costwarden.alerts.outbox import Outbox
from costwarden.budgets.controls import ControlBook
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.budgets.model import BudgetFile
from costwarden.budgets.periods import period_bounds
from costwarden.components import Core
from costwarden.distributed.state import dedupe_window, to_json
from costwarden.distributed.topics import key_partition
from costwarden.events import UsageEvent
from costwarden.persist import absorb, stored_ids
from costwarden.pipeline import form_commit
from costwarden.store import Store, tables as T
from costwarden.store.queries import UNPRICED_MARKS_SQL
from costwarden.store.store_journal import StoreJournal
from costwarden.store.writer import Commit, CommitWriter
from costwarden.streams.attribution import as_dims
from costwarden.streams.process import Enriched, Processor
from costwarden.streams.rollup import event_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slice:
    """Consecutive records of one partition, in offset order."""

    topic: str
    partition: int
    first: int
    last: int
    payloads: list[bytes]

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.topic, self.partition, self.first, self.last)


@dataclass
class Result:
    processed: list[tuple[bytes, bytes]] = field(default_factory=list)     # (workflow, row JSON)
    dead: list[tuple[bytes, bytes]] = field(default_factory=list)          # (source, dead letter JSON)
    budget_usage: list[tuple[bytes, bytes]] = field(default_factory=list)  # (budget id, usage JSON)
    # events that arrived on another partition than their event id's: sent back to usage.raw, keyed
    # by the id, so every copy of an id is processed by the one owner of its partition, in order
    forward: list[tuple[bytes, bytes]] = field(default_factory=list)       # (event id, payload)
    events_in: int = 0
    accepted: int = 0
    duplicates: int = 0  # every event found already stored or repeated (replayed ones included)
    replayed: int = 0    # of those, sent on again (not stored or counted again)
    dead_reasons: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)
    cost_nanos: int = 0


def raw_owner(topic: str, partition: int) -> str:
    return f"raw:{topic}:{partition}"


class RawStage:
    def __init__(self, core: Core, store: Store, clock: Callable[[], datetime] | None = None,
                 route_by_id: bool = False) -> None:
        """`route_by_id` (the worker's setting): an event on another partition than its id's is
        forwarded there, not processed here (slices handed in by tests may come from anywhere)."""
        self.core = core
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        s = core.settings
        # no budgets here: the ledger only keeps the once-only marks of unpriced notices
        marks = BudgetLedger(BudgetFile(version=1, timezone=core.budgets.timezone, budgets=[]),
                             fired=(r["key"] for r in store.query(UNPRICED_MARKS_SQL)))
        self.processor = Processor(core.catalogue, core.attributor, marks, ControlBook(), dedupe_window(store, s),
                                   s.limits.limits(), self.clock, s.pricing.unpriced.notify)
        self.outbox = Outbox(store, max_attempts=s.alerts.max_attempts)  # unpriced notices' alerts
        if s.pricing.unpriced.block:
            log.warning("pricing.unpriced.block is applied by the embedded pipeline and `costwarden serve`; "
                        "distributed workers charge unpriced usage by the other policies and alert, but do not "
                        "block (docs/distributed.md)")
        self.budgets = BudgetLedger(core.budgets)  # only for matching scopes; stage 2 evaluates
        self.partitions = s.kafka.partitions if route_by_id else 0  # of the raw topic: an id's home
        self.lock = threading.RLock()  # the agent's commit point and a takeover run in worker threads
        self._writers: dict[tuple[str, int], CommitWriter] = {}
        self._taken: set[tuple[str, int]] = set()  # partitions whose journal was replayed since assigned
        # stored by a journal replay of the partition, not sent on yet: event id -> stored row
        self._replayed: dict[tuple[str, int], dict[str, dict]] = {}
        # slices committed by a call that failed on a later slice: handed out when it is retried
        self._committed: dict[tuple, Result] = {}

    # --- partitions -----------------------------------------------------------------------------
    def writer(self, topic: str, partition: int) -> CommitWriter:
        w = self._writers.get((topic, partition))
        if w is None:
            w = self._writers[(topic, partition)] = CommitWriter(self.store)
            w.journal = StoreJournal(w.store, raw_owner(topic, partition))  # w.store: with fault injection
        return w

    def take_over(self, topic: str, partition: int) -> int:
        """Re-apply the partition's pending journal entries (a previous owner's, or ours); then the
        partition is ours to process. Returns how many commits were re-applied."""
        with self.lock:
            if (topic, partition) in self._taken:
                return 0
            done = self.writer(topic, partition).recover()
            self._absorb((topic, partition), done)
            self._taken.add((topic, partition))
            return len(done)

    def release(self, tps: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked: taken over again (journal replayed) if they come back."""
        with self.lock:
            for tp in tps:
                self._taken.discard(tp)
                self._writers.pop(tp, None)
                self._replayed.pop(tp, None)

    def _absorb(self, tp: tuple[str, int], commits: list[Commit]) -> None:
        if not commits:
            return
        absorb(self.processor, commits)
        mine = self._replayed.setdefault(tp, {})
        for c in commits:
            for r in c.rows(T.USAGE):
                mine[r["event_id"]] = r

    # --- the commit point -----------------------------------------------------------------------
    def handle(self, slices: list[Slice]) -> Result:
        """Process and store every slice, one commit each. Raises StoreError if the store cannot
        be written, with memory as before the failed slice; the caller retries the same slices
        (a slice committed before the failure is not processed again, its result is kept)."""
        with self.lock:
            for sl in slices:
                if sl.key not in self._committed:
                    self._committed[sl.key] = self._one(sl)
            result = Result()
            for sl in slices:
                _merge(result, self._committed.pop(sl.key))
            return result

    def _one(self, sl: Slice) -> Result:
        tp = (sl.topic, sl.partition)
        if tp not in self._taken:
            self.take_over(*tp)
        w = self.writer(*tp)
        if w.pending:  # our own commit of this partition that failed: re-applied first
            self._absorb(tp, w.recover())
        proc = self.processor
        source = f"kafka:{sl.topic}"
        items, forward = [], []
        for payload in sl.payloads:
            item = proc.parse(payload, source)
            key = item.event_id.encode() if isinstance(item, UsageEvent) else b""
            if key and self.partitions and key_partition(key, self.partitions) != sl.partition:
                forward.append((key, payload))  # two partitions' owners must never store one id at once
            else:
                items.append(item)
        known = stored_ids(self.store, proc.lookups(items))
        proc.begin()
        try:
            enriched = proc.enrich(items, known)
            w.commit(form_commit(enriched, [], [], self.outbox, self.clock()))
        except BaseException:
            proc.rollback()
            raise
        proc.commit()
        res = self._result(tp, len(items), enriched)
        res.forward = forward
        res.events_in += len(forward)
        return res

    def _result(self, tp: tuple[str, int], n: int, e: Enriched) -> Result:
        part = Result(events_in=n)
        ticks: dict[tuple, dict] = {}
        rows = list(e.rows)
        for row, c in zip(e.rows, e.charges):
            self._tick(ticks, c.dims, c.at, c.key, c.cost_nanos)
        replayed = self._replayed.get(tp) or {}
        accepted = {r["event_id"] for r in rows}
        resent: list[dict] = []
        now = self.clock()
        for ev in e.duplicates:
            if ev.event_id in accepted:  # a repeat inside the slice
                continue
            accepted.add(ev.event_id)
            row = replayed.pop(ev.event_id, None)
            if row is not None:  # stored by this partition's journal replay, never sent: ours
                rows.append(row)
                self._tick(ticks, _row_dims(row), row["occurred_at"], row["api_key_id"] or row["project_id"],
                           row["cost_nanos"])
                continue
            # Stored before (maybe by a run whose sends were lost in a crash): send the row on
            # again and have stage 2 look at the budgets again with a zero-cost record.
            attributed = self.core.attributor.attribute(ev)
            resent.append(event_row(ev, self.core.catalogue.price(ev), attributed, now))
            at = ev.attribution
            self._tick(ticks, as_dims(ev, attributed), ev.occurred_at, at.api_key_id or at.project_id or "", 0)
        for r in rows:
            part.cost_nanos += r["cost_nanos"]
            if r["unpriced"]:
                part.unpriced[f"{r['provider']}/{r['model']}"] += 1
        dead = [d.row() for d in e.dead]
        part.dead_reasons.update(d["reason"] for d in dead)
        part.accepted = len(rows)
        part.duplicates = len(e.duplicates) - (len(rows) - len(e.rows))
        part.replayed = len(resent)
        part.processed = [(r["workflow"].encode(), to_json(r)) for r in rows + resent]
        part.dead = [(d["source"].encode(), to_json(d)) for d in dead]
        part.budget_usage = [(t["budget_id"].encode(), to_json(t)) for t in ticks.values()]
        return part

    def _tick(self, ticks: dict, dims: dict, at: datetime, key: str, cost: int) -> None:
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


def _row_dims(row: dict) -> dict:
    """The dimensions budgets match on, from a stored row (as streams.attribution.as_dims)."""
    return {"team": row["team"], "workflow": row["workflow"], "cost_center": row["cost_center"],
            "env": row["env"], "provider": row["provider"], "model": row["model"],
            "org": (row.get("tags") or {}).get("org")}


def _merge(res: Result, part: Result) -> None:
    res.processed += part.processed
    res.forward += part.forward
    res.dead += part.dead
    res.budget_usage += part.budget_usage
    res.events_in += part.events_in
    res.accepted += part.accepted
    res.duplicates += part.duplicates
    res.replayed += part.replayed
    res.dead_reasons.update(part.dead_reasons)
    res.unpriced.update(part.unpriced)
    res.cost_nanos += part.cost_nanos
