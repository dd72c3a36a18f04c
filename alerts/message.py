"""A budget alert as data, and its text for people (pure: no I/O).

`budgets/` decides that a budget crossed a threshold and builds a `BudgetAlert`;
`format_alert` turns it into the title and body every channel receives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from costwarden.money import fmt_usd

KINDS = ("actual", "forecast", "spike", "unpriced")


@dataclass(frozen=True)
class BudgetAlert:
    key: str                      # dedupe key: budget:period:threshold
    budget_id: str
    budget_name: str
    scope: str                    # human readable, e.g. "team=search, provider=openai"
    period_label: str             # e.g. "2026-11"
    period_end: datetime          # tz-aware; the (exclusive) end of the period
    kind: str                     # "actual" | "forecast" | "spike"
    threshold: str                # e.g. "80%"
    spend_nanos: int
    amount_nanos: int
    forecast_nanos: int | None
    top_contributors: list[tuple[str, str, int]] = field(default_factory=list)  # (dimension, value, nanos)
    action: str = "notify only"
    release_hint: str = ""
    channels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if not self.key:
            raise ValueError("an alert needs a dedupe key")
        if self.period_end.tzinfo is None:
            raise ValueError("period_end must be timezone-aware")
        for name in ("spend_nanos", "amount_nanos", "forecast_nanos"):
            if isinstance(getattr(self, name), float):
                raise TypeError(f"{name} must be int nano-dollars, not float")


def percent(part_nanos: int, whole_nanos: int) -> str:
    """`part` as a percentage of `whole`, exact from integers, one decimal (half-even)."""
    if whole_nanos <= 0:
        return "n/a"
    pct = (Decimal(part_nanos) * 100 / Decimal(whole_nanos)).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return f"{pct}%"


def _title(a: BudgetAlert) -> str:
    used = percent(a.spend_nanos, a.amount_nanos)
    if a.kind == "forecast":
        fc = percent(a.forecast_nanos or 0, a.amount_nanos)
        what = f"forecast to reach {fc} by period end (threshold {a.threshold})"
    elif a.kind == "spike":
        what = f"spend spike, {used} used (threshold {a.threshold})"
    else:
        what = f"{used} used (threshold {a.threshold})"
    return f"[costwarden] Budget {a.budget_name} {a.period_label}: {what}"


def _end(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_alert(a: BudgetAlert) -> tuple[str, str]:
    """Return (title, body): budget, scope, period, spend, % used, forecast, top three
    contributors, the action taken and how to release it."""
    if a.kind == "unpriced":
        return _unpriced(a)
    lines = [
        f"Budget: {a.budget_name} ({a.budget_id})",
        f"Scope: {a.scope or 'everything'}",
        f"Period: {a.period_label} (ends {_end(a.period_end)})",
        f"Alert: {a.kind} spend crossed {a.threshold}",
        f"Spend: {fmt_usd(a.spend_nanos)} of {fmt_usd(a.amount_nanos)} "
        f"({percent(a.spend_nanos, a.amount_nanos)} of budget)",
    ]
    if a.forecast_nanos is None:
        lines.append("Forecast at period end: not available")
    else:
        lines.append(f"Forecast at period end: {fmt_usd(a.forecast_nanos)} "
                     f"({percent(a.forecast_nanos, a.amount_nanos)} of budget)")
    top = sorted(a.top_contributors, key=lambda c: (-c[2], c[0], c[1]))[:3]
    if top:
        lines.append("Top contributors:")
        for i, (dim, value, nanos) in enumerate(top, 1):
            lines.append(f"  {i}. {dim}={value}: {fmt_usd(nanos)} ({percent(nanos, a.spend_nanos)} of spend)")
    else:
        lines.append("Top contributors: none recorded")
    lines.append(f"Action taken: {a.action}")
    if a.release_hint:
        lines.append(f"To release: {a.release_hint}")
    lines.append(f"Alert key: {a.key}")
    return _title(a), "\n".join(lines)


def _unpriced(a: BudgetAlert) -> tuple[str, str]:
    """A model the catalogue cannot price is in use (once per model and UTC day)."""
    lines = [
        f"Model: {a.scope} (not in the price catalogue)",
        f"Day: {a.period_label} (UTC)",
        f"Charged to budgets: {a.threshold}; the first call {fmt_usd(a.spend_nanos, 9)}",
        "Reports show this usage as unpriced until the catalogue prices it.",
        f"Action taken: {a.action}",
        "To price it: `costwarden catalogue lookup MODEL`, then add it to an overrides file and run "
        "`costwarden catalogue update --overrides FILE --write` (and `costwarden reprice` for the day)",
    ]
    if a.release_hint:
        lines.append(f"To release: {a.release_hint}")
    lines.append(f"Alert key: {a.key}")
    return f"[costwarden] Unpriced model in use: {a.scope} on {a.period_label}", "\n".join(lines)
