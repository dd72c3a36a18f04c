"""Unpriced usage, made visible (no I/O): one notice per (provider, model, UTC day), and the block
the `block` policy asks for.

An event the catalogue cannot price is charged by the unpriced policy (streams/pricing.py). The
first such event of a (provider, model) on a UTC day raises a notice: the runner stores it as a
budget event of kind "unpriced" (its key is the once-only mark, restored at start like a fired
threshold) and queues an alert to `pricing.unpriced.notify`. With the policy's `block`, the
event's workflow is blocked until a person releases it (budget id "unpriced:<provider>/<model>",
so a release holds for that model and day).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from costwarden.budgets.controls import ControlBook, ControlChange, State
from costwarden.events import UsageEvent

KIND = "unpriced"


@dataclass(frozen=True)
class UnpricedNotice:
    key: str            # "unpriced:<provider>/<model>:<YYYY-MM-DD>": fires once
    provider: str
    model: str
    day: datetime       # 00:00 UTC of the event's day
    at: datetime        # the first event's time
    workflow: str
    policy: str         # how it was charged: provider_cost | fallback | block | none
    detail: str         # e.g. "provider_max:openai"
    cost_nanos: int     # what the first event was charged
    channels: tuple[str, ...] = ()

    def row(self) -> dict:
        """Its budget_events row (the once-only mark)."""
        return {"key": self.key, "at": self.at, "budget_id": "", "period_start": self.day, "kind": KIND,
                "threshold": "", "spend_nanos": self.cost_nanos, "amount_nanos": 0, "forecast_nanos": 0,
                "workflow": self.workflow,
                "detail": f"model={self.provider}/{self.model}, policy={self.policy}"
                          + (f" ({self.detail})" if self.detail else "")}


def day_of(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _names(ev: UsageEvent) -> tuple[str, str]:
    return ev.provider.strip().lower(), ev.model.strip().lower()


def notice_key(ev: UsageEvent) -> str:
    provider, model = _names(ev)
    return f"{KIND}:{provider}/{model}:{day_of(ev.occurred_at):%Y-%m-%d}"


def notice(ev: UsageEvent, price, workflow: str, channels: tuple[str, ...]) -> UnpricedNotice:
    provider, model = _names(ev)
    return UnpricedNotice(notice_key(ev), provider, model, day_of(ev.occurred_at),
                          ev.occurred_at, workflow, price.policy, price.policy_detail, price.cost_nanos, channels)


def block(controls: ControlBook, ev: UsageEvent, workflow: str) -> ControlChange | None:
    """The block the `block` policy asks for (None when the workflow is blocked already, or a
    person released this model's block for the day)."""
    provider, model = _names(ev)
    reason = (f"unpriced model {provider}/{model}: the catalogue has no price and pricing.unpriced.block "
              f"is set (add the model to the catalogue or an overrides file, then release)")
    return controls.apply_rule(workflow, State.block, rate_per_min=None, budget_id=f"{KIND}:{provider}/{model}",
                               period_start=day_of(ev.occurred_at), expires_at=None, reason=reason,
                               at=ev.occurred_at)


def recent(at: datetime, now: datetime) -> bool:
    """A notice is only raised for usage of the last 48 hours (a back-fill of old months is not news)."""
    return now - at <= timedelta(hours=48)
