"""State of a distributed worker: rebuilt from ClickHouse at start and when a partition is
assigned, never from Kafka.

Why the store and not Faust tables: the dedupe mark of an event IS its stored row, a fired
threshold IS its `budget_events` row and a control IS its `controls` row, each written at the
commit point before the Kafka offsets that produced it commit. So the state cannot disagree
with the data it protects, whatever order a crash, a broker restart or a rebalance happens in,
and there is no changelog topic to recover (a worker starts in seconds). Budget totals are the
store's own sums (see budget_stage.py), so they stay exact when workers share the work.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from costwarden.components import Core  # re-exported: components.py is the one place that builds them
from costwarden.config import Settings
from costwarden.persist import control_from_row, load_state_rows, recent_ids
from costwarden.store import Store
from costwarden.store.values import json_bytes
from costwarden.streams.dedupe import DedupeWindow

__all__ = ["Core", "control_from_message", "controls_and_fired", "dedupe_window", "to_json"]


def dedupe_window(store: Store, settings: Settings) -> DedupeWindow:
    """The raw stage's window: newest stored ids as a cache; with `lookup_all` every id it does not
    hold is asked of the store (another worker may have stored it, before a rebalance or on
    another partition), so dedupe is exact whatever the bounds."""
    p = settings.pipeline
    window = DedupeWindow(timedelta(hours=p.dedupe_horizon_hours), p.dedupe_max_entries, lookup_all=True)
    window.mark_seen(recent_ids(store, p.dedupe_horizon_hours, p.dedupe_max_entries)[0])
    return window


def controls_and_fired(store: Store):
    state = load_state_rows(store)
    return [control_from_row(r) for r in state.controls], state.fired


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
    return json_bytes(value, _default)


def control_from_message(value: bytes):
    """A `controls` topic value (the controls-table row as JSON) -> budgets.controls.Control."""
    row = json.loads(value)
    for k in ("period_start", "set_at", "expires_at"):
        if row.get(k):
            row[k] = datetime.fromisoformat(row[k])
    return control_from_row(row)
