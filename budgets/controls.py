"""Controls: per-workflow allow / throttle(rate) / block, and the decision the gateway asks for.

State only, no I/O: the runner persists every `ControlChange` (current state + audit row).
Rules:
- The strictest control wins: block > throttle (lower rate is stricter) > allow.
- A control set by a budget expires at that budget's period end, unless a person keeps it
  (`extend`), and a person's release holds for the rest of that budget period: the same
  budget does not re-trip the workflow until the next period.
A batch is staged like the ledger: `begin()`, then `commit()` once the batch's control rows are
stored, or `rollback()` to put every control back as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Iterable

from costwarden.errors import ControlError


class State(str, Enum):
    allow = "allow"
    throttle = "throttle"
    block = "block"


@dataclass(frozen=True)
class Control:
    workflow: str
    state: State
    rate_per_min: Decimal | None = None
    reason: str = ""
    budget_id: str = ""
    period_start: datetime | None = None
    set_at: datetime | None = None
    expires_at: datetime | None = None
    set_by: str = "rule"
    kept_by_person: bool = False

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def strictness(self) -> tuple[int, Decimal]:
        if self.state is State.block:
            return (2, Decimal(0))
        if self.state is State.throttle:
            return (1, -(self.rate_per_min or Decimal(0)))
        return (0, Decimal(0))


@dataclass(frozen=True)
class Decision:
    workflow: str
    action: State
    rate_per_min: Decimal | None
    reason: str
    budget_id: str
    expires_at: datetime | None

    @property
    def allowed(self) -> bool:
        return self.action is not State.block


@dataclass(frozen=True)
class ControlChange:
    before: Control | None
    after: Control
    actor: str
    actor_kind: str  # "rule" | "person"
    reason: str
    at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ControlBook:
    def __init__(self, controls: Iterable[Control] = ()) -> None:
        self._by_wf: dict[str, Control] = {c.workflow: c for c in controls}
        self._undo: dict[str, Control | None] | None = None

    def begin(self) -> None:
        self._undo = {}

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        undo, self._undo = self._undo, None
        for wf, before in (undo or {}).items():
            if before is None:
                self._by_wf.pop(wf, None)
            else:
                self._by_wf[wf] = before

    def get(self, workflow: str) -> Control | None:
        return self._by_wf.get(workflow)

    def all(self) -> list[Control]:
        return sorted(self._by_wf.values(), key=lambda c: c.workflow)

    def check(self, workflow: str, now: datetime | None = None) -> Decision:
        """Answered from memory. An expired control reads as allow."""
        c = self._by_wf.get(workflow)
        now = now or _now()
        if c is None or not c.active(now) or c.state is State.allow:
            return Decision(workflow, State.allow, None, c.reason if c and c.active(now) else "", 
                            c.budget_id if c and c.active(now) else "", None)
        return Decision(workflow, c.state, c.rate_per_min, c.reason, c.budget_id, c.expires_at)

    def apply_rule(self, workflow: str, state: State, *, rate_per_min: Decimal | None, budget_id: str,
                   period_start: datetime, expires_at: datetime | None, reason: str,
                   at: datetime) -> ControlChange | None:
        """A budget asks for a control. Returns the change, or None when nothing changes."""
        cur = self._by_wf.get(workflow)
        new = Control(workflow, state, rate_per_min, reason, budget_id, period_start, at, expires_at, "rule")
        if cur is not None and cur.active(at):
            if (cur.state is State.allow and cur.set_by != "rule" and cur.budget_id == budget_id
                    and cur.period_start == period_start):
                return None  # a person released this budget's control for this period
            if cur.strictness() >= new.strictness():
                return None
        return self._set(new, cur, "rule", "rule", reason, at)

    def release(self, workflow: str, *, reason: str, by: str, at: datetime | None = None) -> ControlChange:
        _need_reason(reason, by)
        at = at or _now()
        cur = self._by_wf.get(workflow)
        if cur is None or cur.state is State.allow or not cur.active(at):
            raise ControlError(f"workflow {workflow!r} has no active throttle or block to release")
        new = Control(workflow, State.allow, None, reason, cur.budget_id, cur.period_start, at,
                      cur.expires_at, by)
        return self._set(new, cur, by, "person", reason, at)

    def extend(self, workflow: str, *, until: datetime | None, reason: str, by: str,
               at: datetime | None = None) -> ControlChange:
        """Keep a throttle/block past its period end (until=None: until released)."""
        _need_reason(reason, by)
        at = at or _now()
        cur = self._by_wf.get(workflow)
        if cur is None or cur.state is State.allow or not cur.active(at):
            raise ControlError(f"workflow {workflow!r} has no active throttle or block to extend")
        if until is not None and until <= at:
            raise ControlError("--until must be in the future")
        new = replace(cur, expires_at=until, kept_by_person=True, set_by=by, set_at=at)
        return self._set(new, cur, by, "person", reason, at)

    def set_manual(self, workflow: str, state: State, *, rate_per_min: Decimal | None, reason: str, by: str,
                   until: datetime | None = None, at: datetime | None = None) -> ControlChange:
        """A person throttles or blocks a workflow by hand (kill switch without a budget)."""
        _need_reason(reason, by)
        at = at or _now()
        if state is State.throttle and (rate_per_min is None or rate_per_min <= 0):
            raise ControlError("a throttle needs a positive rate")
        new = Control(workflow, state, rate_per_min, reason, "", None, at, until, by, True)
        return self._set(new, self._by_wf.get(workflow), by, "person", reason, at)

    def adopt(self, control: Control) -> None:
        """Take a control decided elsewhere (a person's release/extend made through another
        process, read from the store or the controls topic) as this workflow's current one."""
        self._remember(control.workflow)
        self._by_wf[control.workflow] = control

    def _remember(self, workflow: str) -> None:
        if self._undo is not None and workflow not in self._undo:
            self._undo[workflow] = self._by_wf.get(workflow)

    def _set(self, new: Control, cur: Control | None, actor: str, kind: str, reason: str,
             at: datetime) -> ControlChange:
        self._remember(new.workflow)
        self._by_wf[new.workflow] = new
        return ControlChange(cur, new, actor, kind, reason, at)


def _need_reason(reason: str, by: str) -> None:
    if not reason or not reason.strip():
        raise ControlError("a reason is required")
    if not by or not by.strip():
        raise ControlError("--by (who is making the change) is required")
