"""Stage 2: budget evaluation, one owner per budget, totals read from the store.

Usage for budgets arrives on `usage.by-budget`, keyed by budget id, so each budget is evaluated
by exactly one worker (the owner of its partition) even when its scope spans workflows whose raw
usage was processed by other workers. Stage 1 writes an event to ClickHouse BEFORE it sends the
event's budget record, so when a record arrives its cost is already in the store. The running
total of each (budget, period) touched by a batch is therefore re-read from the store's budget
rollups (one query per batch for every period it touches, SpendSeedsQuery): it is exact however
the records were batched, replayed, duplicated or lost in a crash, and whichever worker stored
the events.

Per partition of a batch (one commit each, through the partition's StoreJournal owner
"budget:<topic>:<partition>"): Processor.begin on the owners of the budgets touched, feed the
minute series (forecast and spike baselines) with the records' costs, drop the touched budgets'
cached totals (`BudgetLedger.forget`), charge zero at the newest event of each (budget, period,
workflow) through the core's `Processor.evaluate` (the ledger seeds the total from the store and
fires thresholds not yet fired, controls follow exactly as in the embedded loop), form the
commit (`costwarden.pipeline.form_commit`: budget events = the fired marks, alert outbox,
controls and their audit) and write it; only then Processor.commit. A failed write rolls every
owner back (ledger, controls, series, dropped totals), so the runtime's retry evaluates again
from the same state.

Taking a partition over (`take_over`, when it is assigned and before any of its records is
evaluated): re-apply its pending journal entries, reload fired marks and controls from the store
(another worker may have fired thresholds since this one started), rebuild the owners of its
budgets, and queue the current controls of those budgets for the controls topic, so a control
committed by a worker that died before its Kafka send still reaches the API replicas (the topic is
compacted: a repeat costs nothing). A moved partition never fires a threshold again.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from costwarden.alerts.outbox import Outbox
from costwarden.budgets.controls import ControlBook
from costwarden.budgets.evaluate import BudgetLedger, Seed, seed_from_rows
from costwarden.budgets.periods import period_bounds
from costwarden.components import Core
from costwarden.distributed.raw_stage import Slice
from costwarden.distributed.state import controls_and_fired, to_json
from costwarden.distributed.topics import budget_partition
from costwarden.persist import control_from_row
from costwarden.pipeline import form_commit
from costwarden.store import Store, tables as T
from costwarden.store.queries import CONTROLS_SQL, FIRED_KEYS_SQL, SpendSeedQuery, SpendSeedsQuery, lit
from costwarden.store.store_journal import StoreJournal
from costwarden.store.writer import Commit, CommitWriter
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.process import Processor


@dataclass
class BudgetResult:
    budget_events: list[tuple[bytes, bytes]] = field(default_factory=list)  # (budget id, row JSON)
    controls: list[tuple[bytes, bytes]] = field(default_factory=list)       # (workflow, control JSON)
    signals: list = field(default_factory=list)
    alerts_enqueued: int = 0

    def add(self, other: "BudgetResult") -> None:
        self.budget_events += other.budget_events
        self.controls += other.controls
        self.signals += other.signals
        self.alerts_enqueued += other.alerts_enqueued


# people's control changes newer than the last one taken (`{v}`: a version, time_ns)
PERSON_CONTROLS_SQL = ("SELECT * FROM {{db}}.controls FINAL WHERE set_by != 'rule' AND version > {v} "
                       "ORDER BY version")


def budget_owner(topic: str, partition: int) -> str:
    return f"budget:{topic}:{partition}"


class BudgetStage:
    def __init__(self, core: Core, store: Store, outbox: Outbox | None = None,
                 clock: Callable[[], datetime] | None = None, partitions: int | None = None) -> None:
        self.core = core
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        k = core.settings.kafka
        self.topic = k.topic_budget_usage
        self.partitions = partitions or k.budget_partitions
        self.outbox = outbox or Outbox(store, max_attempts=core.settings.alerts.max_attempts)
        controls, self.fired = controls_and_fired(store)
        self.controls = ControlBook(controls)
        self._person_version = max((r["version"] for r in store.query(PERSON_CONTROLS_SQL.format(v=0))),
                                   default=0)
        self.by_id = {b.id: b for b in core.budgets.budgets}
        self.tz = ZoneInfo(core.budgets.timezone)
        self.lock = threading.RLock()  # the agent's commit point and a takeover run in worker threads
        self._own: dict[str, Processor] = {}
        self._spend: dict[tuple[datetime, datetime], list[dict]] = {}
        self._writers: dict[int, CommitWriter] = {}
        self._taken: set[int] = set()       # partitions taken over since they were assigned
        self._unsent = BudgetResult()       # stored, not handed to the agent yet (drain())

    def partition_of(self, budget_id: str) -> int:
        return budget_partition(budget_id, self.partitions)

    def owner(self, budget_id: str) -> Processor:
        """The core's Processor over a ledger of this one budget: charging it can never touch a
        budget another worker owns, even when the same dimensions match both."""
        proc = self._own.get(budget_id)
        if proc is None:
            one = self.core.budgets.model_copy(update={"budgets": [self.by_id[budget_id]]})
            ledger = BudgetLedger(one, seeder=self._seed,
                                  fired=(k for k in self.fired if k.startswith(budget_id + ":")))
            proc = self._own[budget_id] = Processor(self.core.catalogue, self.core.attributor, ledger,
                                                    self.controls, DedupeWindow(),
                                                    self.core.settings.limits.limits(), self.clock)
        return proc

    def _seed(self, budget, start: datetime, end: datetime) -> Seed:
        rows = self._spend.get((start, end))
        if rows is None:
            rows = self._spend[(start, end)] = self.store.query(SpendSeedQuery(start, end).to_sql())
        return seed_from_rows(budget, rows)

    def _read_totals(self, records: list[dict]) -> None:
        """The stored spend of every calendar period the records touch, in one query (cached for
        this batch; `_seed` reads it). Rolling windows are kept by the minute series instead."""
        windows = set()
        for r in records:
            b = self.by_id.get(r["budget_id"])
            if b is not None and b.period.rolling_seconds is None:
                windows.add(period_bounds(b.period, _dt(r["at"]), self.tz))
        if not windows:
            return
        order = sorted(windows)
        spend: dict[tuple[datetime, datetime], list[dict]] = {w: [] for w in order}
        for row in self.store.query(SpendSeedsQuery(tuple(order)).to_sql()):
            spend[order[row.pop("w")]].append(row)
        self._spend.update(spend)

    def adopt_person_controls(self) -> int:
        """A person's release or extend made through the API (any replica) is written to the
        store's `controls` table before it goes on the controls topic: take the ones not seen yet,
        so a release holds here for the rest of the budget period (ControlBook.apply_rule)."""
        rows = self.store.query(PERSON_CONTROLS_SQL.format(v=self._person_version))
        for r in rows:
            self.controls.adopt(control_from_row(r))
            self._person_version = max(self._person_version, r["version"])
        return len(rows)

    # --- partitions -----------------------------------------------------------------------------
    def writer(self, partition: int) -> CommitWriter:
        w = self._writers.get(partition)
        if w is None:
            w = self._writers[partition] = CommitWriter(self.store)
            w.journal = StoreJournal(w.store, budget_owner(self.topic, partition))  # w.store: fault injection
        return w

    def take_over(self, partition: int) -> BudgetResult:
        """Make the partition ours (see the module docstring); returns everything not yet handed
        out (the re-applied commits' budget events and controls, the current controls of the
        partition's budgets). Idempotent while the partition stays assigned."""
        with self.lock:
            self._take_over(partition)
            return self.drain()

    def _take_over(self, partition: int) -> None:
        with self.lock:
            if partition not in self._taken:
                self._absorb(self.writer(partition).recover())
                rows = self.store.query(CONTROLS_SQL)
                self.fired |= {r["key"] for r in self.store.query(FIRED_KEYS_SQL)}
                for r in rows:
                    self.controls.adopt(control_from_row(r))
                for budget_id in [b for b in self._own if self.partition_of(b) == partition]:
                    del self._own[budget_id]  # rebuilt from the marks just read, totals seeded again
                self._unsent.controls += [(r["workflow"].encode(), to_json(r)) for r in rows
                                          if r["budget_id"] and self.partition_of(r["budget_id"]) == partition]
                self._taken.add(partition)

    def release(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: taken over again (journal, marks, controls) if they come back."""
        with self.lock:
            for p in partitions:
                self._taken.discard(p)
                self._writers.pop(p, None)
                for budget_id in [b for b in self._own if self.partition_of(b) == p]:
                    del self._own[budget_id]

    def drain(self) -> BudgetResult:
        with self.lock:
            out, self._unsent = self._unsent, BudgetResult()
            return out

    def current_controls(self, workflows: Iterable[str]) -> list[dict]:
        """The stored current control of each workflow (to check a re-send was not overtaken)."""
        wfs = sorted(set(workflows))
        if not wfs:
            return []
        return self.store.query(f"SELECT * FROM {{db}}.{T.CONTROLS} FINAL "
                                f"WHERE workflow IN ({', '.join(map(lit, wfs))})")

    def _absorb(self, commits: list[Commit]) -> None:
        """Commits the writer re-applied from the journal (they had been rolled back in memory, or
        were another worker's): their marks and controls into memory, their sends queued."""
        for c in commits:
            events = c.rows(T.BUDGET_EVENTS)
            keys = {r["key"] for r in events}
            self.fired |= keys
            for budget_id, proc in self._own.items():
                proc.ledger.fired.update(k for k in keys if k.startswith(budget_id + ":"))
            for r in c.rows(T.CONTROLS):
                self.controls.adopt(control_from_row(r))
            self._unsent.budget_events += [(r["budget_id"].encode(), to_json(r)) for r in events]
            self._unsent.controls += [(r["workflow"].encode(), to_json(r)) for r in c.rows(T.CONTROLS)]
            self._unsent.alerts_enqueued += len(c.rows(T.ALERT_OUTBOX))

    # --- the commit point -----------------------------------------------------------------------
    def handle(self, batch: list[Slice] | list[dict]) -> BudgetResult:
        """Evaluate the budgets the records touch and store the outcome, one commit per partition
        (the commit point). `batch`: the agent's slices of `usage.by-budget`, or decoded records
        (grouped by the partition their budget id is produced to). Raises StoreError with memory
        as before the failed partition; the caller retries the whole batch (a partition committed
        before the failure evaluates to nothing new; its sends are kept for the retry)."""
        with self.lock:
            self._spend = {}
            self.adopt_person_controls()
            groups = self._groups(batch)
            self._read_totals([r for _, records in groups for r in records])
            for partition, records in groups:
                self._take_over(partition)  # its sends stay queued: drained below
                self._unsent.add(self._one(partition, records))
            return self.drain()

    def _groups(self, batch) -> list[tuple[int, list[dict]]]:
        if batch and isinstance(batch[0], Slice):
            groups: dict[int, list[dict]] = {}
            for sl in batch:
                groups.setdefault(sl.partition, []).extend(json.loads(v) for v in sl.payloads)
            return sorted(groups.items())
        by_p: dict[int, list[dict]] = {}
        for r in batch:
            by_p.setdefault(self.partition_of(r["budget_id"]), []).append(r)
        return sorted(by_p.items())

    def _one(self, partition: int, records: list[dict]) -> BudgetResult:
        w = self.writer(partition)
        if w.pending:  # our own commit that failed: re-applied first, its sends queued
            self._absorb(w.recover())
        records = [r for r in records if r["budget_id"] in self.by_id]  # a budget removed since: skip
        if not records:
            return BudgetResult()
        touched: dict[tuple, dict] = {}
        for r in records:
            k = (r["budget_id"], r["period"], r["dims"].get("workflow"))
            if k not in touched or _dt(r["at"]) >= _dt(touched[k]["at"]):
                touched[k] = r
        procs = {budget_id: self.owner(budget_id) for budget_id in sorted({r["budget_id"] for r in records})}
        for proc in procs.values():
            proc.begin()  # all before any change: they share one ControlBook
        series_before: dict[str, tuple] = {}
        dropped = []
        try:
            for r in records:
                b = self.by_id[r["budget_id"]]
                series = procs[b.id].ledger.series(b)
                if b.id not in series_before:
                    series_before[b.id] = (series, series.snapshot())
                for at, cost in r.get("points", ()):
                    series.add(_dt(at), int(cost))
            kept_actions: dict[tuple, list] = {}
            for budget_id, proc in procs.items():
                for pt in proc.ledger.forget(budget_id):
                    dropped.append((proc, pt))
                    kept_actions[(budget_id, pt.start)] = pt.control_actions
            signals, changes = [], []
            for r in sorted(touched.values(), key=lambda r: _dt(r["at"])):
                b = self.by_id[r["budget_id"]]
                proc, at = procs[b.id], _dt(r["at"])
                pt = proc.ledger.period(b, at)  # seeded from the store now
                if not pt.control_actions:  # past a control threshold: hold every workflow to it
                    kept = kept_actions.pop((b.id, pt.start), None)
                    pt.control_actions = list(kept) if kept else _actions_of_marks(b, pt, proc.ledger.fired)
                s, c = proc.evaluate(r["dims"], 0, at, r.get("key") or "")
                signals += s
                changes += c
            commit = form_commit(None, signals, changes, self.outbox, self.clock())
            w.commit(commit)
        except BaseException:
            for proc in procs.values():
                proc.rollback()
            for series, state in series_before.values():
                series.restore(state)
            for proc, pt in dropped:  # forget() is not staged: put the running totals back
                proc.ledger.totals.setdefault((pt.budget_id, pt.start), pt)
            raise
        for proc in procs.values():
            proc.commit()
        return BudgetResult(
            budget_events=[(r["budget_id"].encode(), to_json(r)) for r in commit.rows(T.BUDGET_EVENTS)],
            controls=[(r["workflow"].encode(), to_json(r)) for r in commit.rows(T.CONTROLS)],
            signals=signals, alerts_enqueued=len(commit.rows(T.ALERT_OUTBOX)))


def _actions_of_marks(b, pt, fired: set[str]) -> list:
    """The control actions of the thresholds already fired in this period, from their marks (after
    a restart or a takeover the totals are new, the marks are the store's)."""
    if b.period.rolling_seconds is not None:
        return []
    return [(th.id, a) for th in b.thresholds if f"{b.id}:{pt.key}:{th.id}" in fired
            for a in th.actions if a.kind != "notify"]


def _dt(v) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)
