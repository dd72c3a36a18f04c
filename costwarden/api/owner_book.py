"""Reservations on the owner replica (distributed mode): `ReservationBook` against the store.

Every method runs on the runtime's one store thread: that thread is the lock, so reading spend,
reading holds and adding a hold never interleave for the workflows this replica owns.

    spent    = the store's sums for the budget's period (SpendSeedQuery, as GET /v1/budgets)
    held     = open holds + settled amounts the store does not show yet
    admitted when spent + held + estimate <= the hard limit of every hard budget of the workflow

A settled call's usage goes to the raw topic; until a worker stored it, the owner keeps counting
its priced cost ("settled" entries). Before each admission the owner asks the store which settled
event ids it has (KnownIdsQuery) and drops those, THEN reads spend: an event stored in between is
then counted by both (never by neither). A settled entry not stored within `api.settled_max_s`
(workers stopped, event rejected downstream) is dropped then.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from costwarden.api.reservations import Hold, ReservationBook, _hard_limit
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.events import UsageEvent
from costwarden.persist import store_seeder
from costwarden.store.queries import known_ids_queries
from costwarden.streams.attribution import as_dims


@dataclass
class Settled:
    event_id: str
    nanos: int
    budgets: list[tuple[str, datetime]]
    until: datetime


class _CacheControls:
    """`pipeline.controls` for ReservationBook: the decision cache fed by the controls topic."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def check(self, workflow: str, now: datetime):
        return self.cache.decide(workflow, now)


class OwnerBook(ReservationBook):
    def __init__(self, core, cache, store, ttl_s: float, settled_max_s: float, id_prefix: str) -> None:
        view = SimpleNamespace(processor=SimpleNamespace(catalogue=core.catalogue, attributor=core.attributor,
                                                         ledger=None),
                               controls=_CacheControls(cache))
        super().__init__(view, ttl_s)
        self.core = core
        self.store = store
        self.settled_max = timedelta(seconds=settled_max_s)
        self.settled: dict[str, Settled] = {}
        self.id_prefix = id_prefix

    # --- spend: the store's, fresh for every admission -------------------------------------------
    def _seeder(self):
        return store_seeder(self.store)

    def refresh(self, now: datetime) -> None:
        """Drop settled entries the store shows (or too old), then a ledger seeded from the store."""
        for eid in [k for k, s in self.settled.items() if s.until <= now]:
            del self.settled[eid]
        if self.settled:
            for q in known_ids_queries(self.settled):
                for row in self.store.query(q.to_sql()):
                    self.settled.pop(row["event_id"], None)
        self.pipeline.processor.ledger = BudgetLedger(self.core.budgets, seeder=self._seeder())

    def held(self, budget_id: str, period_start: datetime) -> int:
        key = (budget_id, period_start)
        return super().held(budget_id, period_start) + sum(
            s.nanos for s in self.settled.values() if key in s.budgets)

    def reserve(self, *args, **kw) -> Hold:
        self.refresh(self._now())
        return super().reserve(*args, **kw)

    # --- settle: counted as settled (priced here) until a worker stored it --------------------
    def settle(self, hold_id: str, event: UsageEvent) -> tuple[Hold | None, int | None]:
        """Runs after the event was acked by the broker: the hold becomes a settled entry."""
        now = self._now()
        hold = self.holds.pop(hold_id, None)
        price = self.core.catalogue.price(event)
        cost = None if price.unpriced else price.cost_nanos
        counted = cost if cost is not None else (hold.nanos if hold else 0)
        ledger = BudgetLedger(self.core.budgets)  # no seeder: only the period bounds are needed
        dims = as_dims(event, self.core.attributor.attribute(event))
        keys = [(b.id, ledger.period(b, event.occurred_at).start) for b in ledger.matching(dims)
                if _hard_limit(b) is not None]
        prior = self.settled.get(event.event_id)
        if counted and (prior is None or prior.nanos < counted):  # a retried settle counts once
            self.settled[event.event_id] = Settled(event.event_id, counted, keys, now + self.settled_max)
        return hold, cost
