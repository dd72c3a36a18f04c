"""Mapping between processing results and stored rows, and state rebuilt from the store at start.

Shared by the embedded runner and the distributed workers: both persist the same rows.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from costwarden.alerts.message import BudgetAlert
from costwarden.budgets.controls import Control, ControlChange, State
from costwarden.budgets.evaluate import Seed, Seeder, Signal, seed_from_rows
from costwarden.store import Store
from costwarden.store import tables as T
from costwarden.store.queries import (CONTROLS_SQL, FIRED_KEYS_SQL, RecentIdsQuery, SpendSeedQuery,
                                      known_ids_queries)

_SEQ = itertools.count()


@dataclass
class StateRows:
    controls: list[dict]
    fired: set[str]


def recent_ids(store: Store, horizon_hours: int, max_entries: int) -> tuple[list[tuple[str, datetime]], datetime | None]:
    """The dedupe window's ids and its floor (stored ids at or before it may be missing)."""
    ids = [(r["event_id"], r["occurred_at"]) for r in store.query(RecentIdsQuery(horizon_hours, max_entries).to_sql())]
    floor = None
    if ids:
        floor = min(at for _, at in ids) if len(ids) >= max_entries else \
            max(at for _, at in ids) - timedelta(hours=horizon_hours)
    return ids, floor


def load_state_rows(store: Store) -> StateRows:
    """The controls and fired marks a runner rebuilds at start (after the writer re-applied its
    journal); the dedupe window's ids are `recent_ids`, read when the runner needs them."""
    return StateRows(store.query(CONTROLS_SQL), {r["key"] for r in store.query(FIRED_KEYS_SQL)})


def stored_ids(store: Store, ids: list[str]) -> set[str]:
    """The ids among `ids` that the raw table holds (one query per 5,000 ids)."""
    found: set[str] = set()
    for q in known_ids_queries(ids):
        found.update(r["event_id"] for r in store.query(q.to_sql()))
    return found


def absorb(processor, commits) -> None:
    """Take re-applied commits into memory: their ids, fired marks and controls; running totals
    are dropped and seeded again from the store (which now holds the commits)."""
    for c in commits:
        processor.dedupe.mark_seen((r["event_id"], r["occurred_at"]) for r in c.rows(T.USAGE))
        processor.ledger.fired.update(r["key"] for r in c.rows(T.BUDGET_EVENTS))
        for r in c.rows(T.CONTROLS):
            processor.controls.adopt(control_from_row(r))
    processor.ledger.reset()


def scope_text(budget) -> str:
    parts = []
    for k, v in budget.scope.model_dump(exclude_none=True).items():
        if v in (None, [], ""):
            continue
        parts.append(f"{k}={','.join(v) if isinstance(v, list) else v}")
    return ", ".join(parts) or "everything"


def _action_text(signal: Signal, changes: list[ControlChange]) -> tuple[str, str]:
    mine = [c for c in changes if c.after.budget_id == signal.budget.id and c.at == signal.at]
    if not mine:
        return "notify only", ""
    texts, hints = [], []
    for c in mine:
        a = c.after
        if a.state is State.block:
            texts.append(f"blocked {a.workflow}")
        else:
            texts.append(f"throttled {a.workflow} to {a.rate_per_min} req/min")
        hints.append(f"costwarden controls release {a.workflow} --reason '...' --by you@example.com")
    return "; ".join(texts), " / ".join(hints)


def alert_for(signal: Signal, changes: list[ControlChange]) -> BudgetAlert:
    channels: list[str] = []
    for a in signal.actions:
        for ch in getattr(a, "notify", None) or []:
            if ch not in channels:
                channels.append(ch)
    action, hint = _action_text(signal, changes)
    kind = signal.kind if signal.kind in ("actual", "forecast", "spike") else "actual"
    return BudgetAlert(signal.key, signal.budget.id, signal.budget.name, scope_text(signal.budget),
                       signal.period_label, signal.period_end, kind, signal.threshold, signal.spend_nanos,
                       signal.amount_nanos, signal.forecast_nanos, list(signal.top), action, hint, channels)


def unpriced_alert(n, changes: list[ControlChange]) -> BudgetAlert:
    """The alert of an unpriced notice (streams/unpriced.py)."""
    blocked = [c for c in changes if c.after.budget_id == f"unpriced:{n.provider}/{n.model}" and c.at == n.at]
    action = f"workflow {n.workflow} blocked" if blocked else "notify only"
    hint = f"costwarden controls release {n.workflow} --reason \"...\"" if blocked else ""
    how = n.policy + (f" ({n.detail})" if n.detail else "")
    return BudgetAlert(n.key, "", "unpriced usage", f"{n.provider}/{n.model}", f"{n.day:%Y-%m-%d}",
                       n.day + timedelta(days=1), "unpriced", f"policy {how}", n.cost_nanos, 0, None, [],
                       action, hint, list(n.channels))


def budget_event_row(s: Signal) -> dict:
    return {"key": s.key, "at": s.at, "budget_id": s.budget.id, "period_start": s.period_start.replace(microsecond=0),
            "kind": s.kind, "threshold": s.threshold, "spend_nanos": s.spend_nanos,
            "amount_nanos": s.amount_nanos, "forecast_nanos": s.forecast_nanos, "workflow": s.workflow,
            "detail": ", ".join(f"{d}={v}" for d, v, _ in s.top)}


def _version() -> int:
    return time.time_ns() // 1000 * 1000 + next(_SEQ) % 1000


def change_rows(changes: list[ControlChange]) -> tuple[list[dict], list[dict]]:
    current: dict[str, dict] = {}
    audit = []
    for c in changes:
        a = c.after
        v = _version()
        current[a.workflow] = {
            "workflow": a.workflow, "version": v, "state": a.state.value, "rate_per_min": a.rate_per_min,
            "reason": a.reason, "budget_id": a.budget_id,
            "period_start": a.period_start.replace(microsecond=0) if a.period_start else None,
            "set_at": a.set_at or c.at, "expires_at": a.expires_at, "set_by": a.set_by,
            "kept_by_person": int(a.kept_by_person)}
        audit.append({"at": c.at, "seq": v, "workflow": a.workflow,
                      "from_state": c.before.state.value if c.before else "allow", "to_state": a.state.value,
                      "rate_per_min": a.rate_per_min, "reason": c.reason, "budget_id": a.budget_id,
                      "actor": c.actor, "actor_kind": c.actor_kind})
    return list(current.values()), audit


def control_from_row(r: dict) -> Control:
    rate = r.get("rate_per_min")
    return Control(r["workflow"], State(r["state"]), Decimal(rate) if rate is not None else None, r["reason"],
                   r["budget_id"], r.get("period_start"), r.get("set_at"), r.get("expires_at"), r["set_by"],
                   bool(r.get("kept_by_person")))


def store_seeder(store: Store) -> Seeder:
    """A ledger seeder reading each period's spend from the store once (cached for this seeder's life)."""
    cache: dict = {}

    def seed(budget, start: datetime, end: datetime) -> Seed:
        rows = cache.get((start, end))
        if rows is None:
            rows = cache[(start, end)] = store.query(SpendSeedQuery(start, end).to_sql())
        return seed_from_rows(budget, rows)
    return seed
