"""Fault injection at the commit's write boundaries, for the crash tests.

COSTWARDEN_FAULT names one fault at the N-th INSERT the commit writer makes in this process:
    kill-before:N     SIGKILL this process just before the N-th insert
    kill-after:N      SIGKILL just after the N-th insert returned
    kill-inside:N     SIGKILL while the N-th insert runs (after COSTWARDEN_FAULT_DELAY_MS, default 2)
    fail:N[:M]        the N-th (to M-th) insert raises StoreError and writes nothing (a store outage)
COSTWARDEN_FAULT_TABLE counts only inserts into that table. Every insert is reported on stderr
as `fault-point <n> <table>` when COSTWARDEN_FAULT_TRACE=1, so a test can count the boundaries
(`fault-point <n> <table> <owner>` for a writer with a journal in the store, below).

COSTWARDEN_FAULT_OWNER (a prefix such as `raw:` or `budget:`) counts only the inserts of writers
whose journal owner starts with it. A distributed worker gives each Kafka partition of each stage
its own CommitWriter (so its own FaultyStore and its own count), and a writer's first insert of
every commit is its journal entry (`commit_journal`, which names the owner): the owner is learnt
from that row, so every write of a matching writer's commits is counted, journal entry included.
A writer without a journal never matches an owner filter.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Sequence

from costwarden.errors import StoreError
from costwarden.store.base import Row, Store


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultyStore:
    def __init__(self, store: Store, kind: str, first: int, last: int, table: str | None = None,
                 delay_ms: float = 2.0, trace: bool = False, owner: str | None = None) -> None:
        self._store = store
        self.kind, self.first, self.last, self.table = kind, first, last, table
        self.delay_ms, self.trace = delay_ms, trace
        self.owner_prefix = owner  # COSTWARDEN_FAULT_OWNER
        self.owner: str | None = None  # the journal owner of the writer this store serves, once seen
        self.n = 0
        self.database = store.database

    @classmethod
    def from_env(cls, store: Store) -> "FaultyStore":
        spec = os.environ["COSTWARDEN_FAULT"].split(":")
        kind, first = spec[0], int(spec[1]) if len(spec) > 1 else 1
        last = int(spec[2]) if len(spec) > 2 else first
        return cls(store, kind, first, last, os.environ.get("COSTWARDEN_FAULT_TABLE") or None,
                   float(os.environ.get("COSTWARDEN_FAULT_DELAY_MS", "2")),
                   os.environ.get("COSTWARDEN_FAULT_TRACE") == "1", os.environ.get("COSTWARDEN_FAULT_OWNER") or None)

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _counts(self, table: str, rows: Sequence[Row]) -> bool:
        if self.owner is None and table == "commit_journal" and rows:
            self.owner = rows[0].get("owner")
        if self.owner_prefix is not None and not (self.owner or "").startswith(self.owner_prefix):
            return False
        return self.table is None or table == self.table

    def insert(self, table: str, rows: Sequence[Row], dedup_token: str | None = None) -> None:
        if self._counts(table, rows):
            self.n += 1
            if self.trace:
                # a distributed writer's line names its journal owner too: `fault-point <n> <table> <owner>`
                owner = f" {self.owner}" if self.owner else ""
                print(f"fault-point {self.n} {table}{owner}", file=sys.stderr, flush=True)
            if self.first <= self.n <= self.last:
                if self.kind == "kill-before":
                    _kill()
                elif self.kind == "fail":
                    raise StoreError(f"injected store failure at insert {self.n} into {table}")
                elif self.kind == "kill-inside":
                    threading.Timer(self.delay_ms / 1000, _kill).start()
                elif self.kind == "kill-after":
                    self._store.insert(table, rows, dedup_token)
                    _kill()
        self._store.insert(table, rows, dedup_token)

    def command(self, sql: str) -> None:
        self._store.command(sql)

    def query(self, sql: str):
        return self._store.query(sql)

    def close(self) -> None:
        self._store.close()
