"""State of a distributed worker: rebuilt from ClickHouse at start, never from Kafka.

Why the store and not Faust tables: the dedupe mark of an event IS its stored row, a fired
threshold IS its `budget_events` row and a control IS its `controls` row, each written at the
commit point before the Kafka offsets that produced it commit. So the state cannot disagree
with the data it protects, whatever order a crash, a broker restart or a rebalance happens in,
and there is no changelog topic to recover (a worker starts in seconds). Budget totals are the
store's own sums (see budget_stage.py), so they stay exact when workers share the work.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from costwarden.budgets.model import BudgetFile
from costwarden.config import Settings
from costwarden.persist import control_from_row
from costwarden.store import Store, migrate, open_store
from costwarden.store.queries import CONTROLS_SQL, FIRED_KEYS_SQL, RecentIdsQuery
from costwarden.streams.attribution import Attributor, default_rules, load_rules
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.dedupe import DedupeWindow


@dataclass
class Core:
    """What both stages share: the settings, budgets, catalogue and attribution rules."""

    settings: Settings
    budgets: BudgetFile
    catalogue: PriceCatalogue
    attributor: Attributor

    @classmethod
    def load(cls, settings: Settings, budgets: BudgetFile | None = None) -> "Core":
        from costwarden.embedded import load_budget_file

        b = settings.budgets
        catalogue = PriceCatalogue.from_yaml(b.catalogue_file) if b.catalogue_file else PriceCatalogue.default()
        rules = load_rules(b.rules_file) if b.rules_file else default_rules()
        return cls(settings, budgets if budgets is not None else load_budget_file(settings), catalogue,
                   Attributor(rules))

    def open_store(self, migrate_schema: bool = False) -> Store:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(s.store.url.get_secret_value(), str(s.data_dir), s.store.database)
        if migrate_schema:
            migrate(store)
        return store


def dedupe_window(store: Store, settings: Settings) -> DedupeWindow:
    p = settings.pipeline
    window = DedupeWindow(timedelta(hours=p.dedupe_horizon_hours), p.dedupe_max_entries)
    window.mark_seen((r["event_id"], r["occurred_at"])
                     for r in store.query(RecentIdsQuery(p.dedupe_horizon_hours, p.dedupe_max_entries).to_sql()))
    return window


def controls_and_fired(store: Store):
    controls = [control_from_row(r) for r in store.query(CONTROLS_SQL)]
    fired = {r["key"] for r in store.query(FIRED_KEYS_SQL)}
    return controls, fired


# --- message values: JSON with exact money (Decimal as text, integers as integers) --------------
def _default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Enum):
        return v.value
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def to_json(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def control_from_message(value: bytes):
    """A `controls` topic value (the controls-table row as JSON) -> budgets.controls.Control."""
    row = json.loads(value)
    for k in ("period_start", "set_at", "expires_at"):
        if row.get(k):
            row[k] = datetime.fromisoformat(row[k])
    return control_from_row(row)
