"""The one writer of the pipeline's commit.

A `Commit` is every row one batch produces, for every table, formed before anything is written:
usage events, dead letters, budget events (the fired marks), alert outbox rows, controls and
their audit. `CommitWriter.commit()`:

    1. journal.write(commit)      durable before any table write (store/journal.py)
    2. one INSERT per block       usage and dead letters split by partition month; each block
                                  carries its own deduplication token, so writing it again is a
                                  no-op in the table and in every materialized rollup that has it,
                                  and fills in a rollup whose write was lost (a kill mid-INSERT)
    3. journal.done(commit)

Only after commit() returns does the caller apply its staged state (ledger, controls, dedupe).
If a write fails the commit stays in the journal and the writer is `pending`: the next commit,
or `recover()` at start, writes the pending one again, identically, before anything else.
docs/commit.md walks through what a crash at each point leaves and how start-up repairs it.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from costwarden.errors import StoreError
from costwarden.store import tables as T
from costwarden.store.base import Row, Store
from costwarden.store.journal import Journal

log = logging.getLogger(__name__)

# the month a row's table partitions it by (PARTITION BY toYYYYMM(...) in the migrations)
_PARTITION_COLUMN = {T.USAGE: "occurred_at", T.DEAD_LETTERS: "received_at"}


@dataclass
class Commit:
    id: str
    seq: int
    blocks: list[tuple[str, list[Row], str]] = field(default_factory=list)  # (table, rows, token)

    @classmethod
    def form(cls, rows_by_table: dict[str, Sequence[Row]]) -> "Commit":
        c = cls(uuid.uuid4().hex, time.time_ns())
        for table in T.COMMIT_ORDER:
            rows = list(rows_by_table.get(table) or ())
            if not rows:
                continue
            for i, part in enumerate(split_by_month(rows, _PARTITION_COLUMN.get(table))):
                c.blocks.append((table, part, f"{c.id}:{table}:{i}"))
        unknown = set(rows_by_table) - set(T.COMMIT_ORDER)
        if unknown:
            raise ValueError(f"not tables of the commit: {sorted(unknown)}")
        return c

    def rows(self, table: str) -> list[Row]:
        return [r for t, rows, _ in self.blocks if t == table for r in rows]

    def __bool__(self) -> bool:
        return bool(self.blocks)


def split_by_month(rows: list[Row], column: str | None) -> list[list[Row]]:
    """One block per partition month, so no INSERT spans more partitions than a server allows."""
    if column is None:
        return [rows]
    parts: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for r in rows:
        at: datetime = r[column]
        parts[(at.year, at.month)].append(r)
    return [parts[k] for k in sorted(parts)]


class CommitWriter:
    def __init__(self, store: Store, journal: Journal | None = None) -> None:
        self.store = _with_faults(store)
        self.journal = journal
        self.pending = False   # a commit is in the journal whose writes have not all succeeded

    def commit(self, c: Commit) -> None:
        """Write the whole commit or raise StoreError (retryable) with the commit kept pending."""
        if self.pending:
            self.recover()
        if not c:
            return
        if self.journal is not None:
            self.journal.write(c)
        try:
            self.apply(c)
        except Exception as e:
            if self.journal is not None:
                self.pending = True
            raise _retryable(e) from e
        if self.journal is not None:
            self._done(c)

    def _done(self, c: Commit) -> None:
        """Every table write succeeded: the commit stands, whatever the journal says next. If the
        entry cannot be removed, it is re-applied (a no-op, by its tokens) before the next commit."""
        try:
            self.journal.done(c)
        except Exception as e:
            log.warning("commit %s is stored but its journal entry stays (%s); it is re-applied next", c.id, e)
            self.pending = True

    def apply(self, c: Commit) -> None:
        for table, rows, token in c.blocks:
            self.store.insert(table, rows, dedup_token=token)

    def recover(self) -> list[Commit]:
        """Write every journalled commit again (same rows, same tokens), oldest first. Returns
        them, so the caller can rebuild what depends on them; raises StoreError if one fails."""
        done = []
        try:
            entries = self.journal.pending() if self.journal is not None else []
        except Exception as e:
            raise _retryable(e) from e
        self.pending = False
        for c in entries:
            _upgrade(c)
            try:
                self.apply(c)
            except Exception as e:
                self.pending = True
                raise _retryable(e) from e
            self._done(c)
            done.append(c)
        if done:
            log.warning("re-applied %d commit(s) from the journal", len(done))
        return done

    def write(self, table: str, rows: Sequence[Row]) -> None:
        """A single-table change outside a batch (a person's control change): its own commit."""
        self.commit(Commit.form({table: rows}))


def _upgrade(c: Commit) -> None:
    """A commit journalled before schema v7 names money `*_micros`: the same amounts in nanos."""
    for _, rows, _ in c.blocks:
        for r in rows:
            for k in [k for k in r if k.endswith("_micros")]:
                v = r.pop(k)
                r[k[:-len("_micros")] + "_nanos"] = v * 1000 if isinstance(v, int) else v


def _retryable(e: Exception) -> StoreError:
    if isinstance(e, StoreError):
        return e
    return StoreError(f"the store write failed: {type(e).__name__}: {str(e)[:300]}")


def _with_faults(store: Store) -> Store:
    """Fault injection for the crash tests (COSTWARDEN_FAULT, see costwarden/testing/faults.py)."""
    if not os.environ.get("COSTWARDEN_FAULT"):
        return store
    from costwarden.testing.faults import FaultyStore

    return FaultyStore.from_env(store)
