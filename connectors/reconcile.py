"""Reconciliation: the cost costwarden computed against the cost the provider reports, per day,
provider and project/workspace, with the drift in dollars and percent (Decimal, never float).

Bases (what "reported" means on a row):
    openai-costs    OpenAI Costs API lines (provider_cost_lines) vs every openai event, by project_id
    anthropic-cost  Anthropic cost report lines vs every anthropic event, by workspace_id
                    (null/empty workspace = the default workspace on both sides)
    <event source>  events that carry their own provider_cost (LiteLLM response_cost, OpenCost)
                    vs our price of those same events, by project/workspace
A report basis is compared only on the days it has lines for (a day never polled is not "drift").
When a report is not grouped by project/workspace on a day, our side is summed over them too.
drift = ours - reported; drift_pct = drift / reported * 100 (None when reported is 0).
A row is over the threshold when |drift_pct| > threshold, or reported is 0 while ours is not.
"""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from costwarden.money import NANOS_PER_USD, from_nanos
from costwarden.store.base import Store
from costwarden.store.queries import lit, ts

REPORT_SOURCES = {"openai-costs": "openai", "anthropic-cost": "anthropic"}
_DEFAULT_SCOPE = {"anthropic": "default"}
COLUMNS = ["day", "provider", "scope", "basis", "ours_usd", "reported_usd", "drift_usd", "drift_pct",
           "unpriced_events", "over"]


@dataclass(frozen=True)
class DriftRow:
    day: date
    provider: str
    scope: str
    basis: str
    ours_nanos: int
    reported_usd: Decimal
    unpriced_events: int
    threshold_pct: Decimal

    @property
    def ours_usd(self) -> Decimal:
        return from_nanos(self.ours_nanos)

    @property
    def drift_usd(self) -> Decimal:
        return Decimal(self.ours_nanos) / NANOS_PER_USD - self.reported_usd

    @property
    def drift_pct(self) -> Decimal | None:
        if self.reported_usd == 0:
            return None
        return (self.drift_usd * 100 / self.reported_usd).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)

    @property
    def over(self) -> bool:
        pct = self.drift_pct
        if pct is None:
            return self.ours_nanos != 0
        return abs(pct) > self.threshold_pct

    def as_row(self) -> dict:
        pct = self.drift_pct
        return {"day": self.day.isoformat(), "provider": self.provider, "scope": self.scope or "(all)",
                "basis": self.basis, "ours_usd": self.ours_usd, "reported_usd": _usd(self.reported_usd),
                "drift_usd": _usd(self.drift_usd), "drift_pct": pct if pct is not None else "n/a",
                "unpriced_events": self.unpriced_events, "over": "yes" if self.over else ""}


def _usd(d: Decimal) -> Decimal:
    return d.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_EVEN)


def _scope(provider: str, value: str | None) -> str:
    return value or _DEFAULT_SCOPE.get(provider, "")


# --- pure comparison ------------------------------------------------------------------------

def compare(ours: list[dict], reported: list[dict], event_costs: list[dict],
            threshold_pct: Decimal) -> list[DriftRow]:
    """ours: {day, provider, scope, cost_nanos, unpriced}; reported: {day, source, scope, amount};
    event_costs: {day, source, provider, scope, cost_nanos, reported, unpriced}."""
    rows: list[DriftRow] = []
    rep: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in reported:
        provider = REPORT_SOURCES[r["source"]]
        rep[(_day(r["day"]), r["source"], _scope(provider, r["scope"]))] += Decimal(r["amount"])
    days_scopes: dict[tuple, set] = defaultdict(set)
    for day, source, scope in rep:
        days_scopes[(day, source)].add(scope)
    mine: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in ours:
        mine[(_day(r["day"]), r["provider"], _scope(r["provider"], r["scope"]))][0] += int(r["cost_nanos"])
        mine[(_day(r["day"]), r["provider"], _scope(r["provider"], r["scope"]))][1] += int(r["unpriced"])
    for (day, source), scopes in days_scopes.items():
        provider = REPORT_SOURCES[source]
        null_scope = _scope(provider, "")
        ungrouped = scopes == {null_scope}
        ours_here: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (d, p, s), (c, u) in mine.items():
            if d == day and p == provider:
                k = null_scope if ungrouped else s
                ours_here[k][0] += c
                ours_here[k][1] += u
        for scope in sorted(scopes | set(ours_here)):
            c, u = ours_here.get(scope, (0, 0))
            rows.append(DriftRow(day, provider, scope, source, c, rep.get((day, source, scope), Decimal(0)), u,
                                 threshold_pct))
    for r in event_costs:
        rows.append(DriftRow(_day(r["day"]), r["provider"], _scope(r["provider"], r["scope"]), r["source"],
                             int(r["cost_nanos"]), Decimal(r["reported"]), int(r["unpriced"]), threshold_pct))
    return sorted(rows, key=lambda x: (x.day, x.provider, x.basis, x.scope))


def _day(v) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v)[:10])


# --- store queries ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OursQuery:
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        provs = ", ".join(lit(p) for p in sorted(set(REPORT_SOURCES.values())))
        return ("SELECT toDate(occurred_at) AS day, provider, if(provider = 'anthropic', workspace_id, project_id) "
                "AS scope, sum(cost_nanos) AS cost_nanos, sum(unpriced) AS unpriced FROM {db}.usage_events FINAL "
                f"WHERE occurred_at >= {ts(self.start)} AND occurred_at < {ts(self.end)} AND provider IN ({provs}) "
                "GROUP BY day, provider, scope")


@dataclass(frozen=True)
class ReportedQuery:
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT day, source, if(source = 'anthropic-cost', workspace_id, project_id) AS scope, "
                "sum(amount) AS amount FROM {db}.provider_cost_lines FINAL "
                f"WHERE day >= toDate({ts(self.start)}) AND day < toDate({ts(self.end)}) AND currency = 'USD' "
                "GROUP BY day, source, scope")


@dataclass(frozen=True)
class EventCostQuery:
    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT toDate(occurred_at) AS day, source, provider, if(project_id != '', project_id, workspace_id) "
                "AS scope, sum(cost_nanos) AS cost_nanos, sum(provider_cost) AS reported, sum(unpriced) AS unpriced "
                "FROM {db}.usage_events FINAL WHERE provider_cost IS NOT NULL AND provider_cost_currency = 'USD' "
                f"AND occurred_at >= {ts(self.start)} AND occurred_at < {ts(self.end)} "
                "GROUP BY day, source, provider, scope")


def _whole_days(start: datetime, end: datetime) -> str:
    for d in (start, end):
        if d.hour or d.minute or d.second or d.microsecond:
            raise ValueError(f"{d.isoformat()}: a reconciliation period is whole UTC days")
    return f"bucket >= toDate({ts(start)}) AND bucket < toDate({ts(end)})"


@dataclass(frozen=True)
class OursDailyQuery:
    """Our cost per day, provider and project (workspace for Anthropic) from the source rollup
    (migration 009): the rows OursQuery reads from raw events."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        provs = ", ".join(lit(p) for p in sorted(set(REPORT_SOURCES.values())))
        return ("SELECT bucket AS day, provider, if(provider = 'anthropic', workspace_id, project_id) AS scope, "
                "sum(cost_nanos) AS cost_nanos, sum(unpriced) AS unpriced FROM {db}.source_rollup_day "
                f"WHERE {_whole_days(self.start, self.end)} AND provider IN ({provs}) GROUP BY day, provider, scope")


@dataclass(frozen=True)
class EventCostDailyQuery:
    """Events that carry the cost their source reported (LiteLLM, OpenCost) against our price of
    them, per day, source, provider and project, from the source rollup: EventCostQuery without
    the raw events."""

    start: datetime
    end: datetime

    def to_sql(self) -> str:
        return ("SELECT bucket AS day, source, provider, if(project_id != '', project_id, workspace_id) AS scope, "
                "sum(cost_nanos) AS cost_nanos, sum(reported_cost) AS reported, sum(unpriced) AS unpriced "
                "FROM {db}.source_rollup_day WHERE with_provider_cost = 1 AND provider_cost_currency = 'USD' "
                f"AND {_whole_days(self.start, self.end)} GROUP BY day, source, provider, scope")


def reconcile(store: Store, start: datetime, end: datetime, threshold_pct: Decimal,
              raw: bool = False) -> list[DriftRow]:
    """Our side from the source rollup (day buckets; its cost does not grow with stored events)
    when [start, end) is whole UTC days, else, or with `raw`, from `usage_events FINAL`."""
    whole = not any(d.hour or d.minute or d.second or d.microsecond for d in (start, end))
    ours, events = (OursDailyQuery, EventCostDailyQuery) if whole and not raw else (OursQuery, EventCostQuery)
    return compare(store.query(ours(start, end).to_sql()), store.query(ReportedQuery(start, end).to_sql()),
                   store.query(events(start, end).to_sql()), threshold_pct)


# --- the alert to the price-catalogue owner --------------------------------------------------

def drift_message(rows: list[DriftRow], period: str, threshold_pct: Decimal) -> tuple[str, str]:
    over = [r for r in rows if r.over]
    title = f"[costwarden] Reconciliation {period}: {len(over)} row(s) drift more than {threshold_pct}%"
    lines = [f"Computed cost vs provider-reported cost, {period}, threshold {threshold_pct}%:"]
    for r in over[:50]:
        d = r.as_row()
        lines.append(f"  {d['day']} {r.provider} {d['scope']} [{r.basis}]: ours ${d['ours_usd']} vs reported "
                     f"${d['reported_usd']} (drift ${d['drift_usd']}, {d['drift_pct']}%)"
                     + (f", {r.unpriced_events} unpriced event(s)" if r.unpriced_events else ""))
    if len(over) > 50:
        lines.append(f"  ... and {len(over) - 50} more")
    lines.append("Likely causes: a wrong or outdated price, a model missing from the catalogue (unpriced), "
                 "or usage the gateway never saw. Check: costwarden reconcile --period " + period)
    return title, "\n".join(lines)


def enqueue_drift_alert(store: Store, rows: list[DriftRow], period: str, threshold_pct: Decimal,
                        channel: str, now: datetime) -> str | None:
    """One outbox row for the rows over the threshold (none if none are). The key covers the set of
    drifting rows, so re-running reconcile does not alert again until the drift changes."""
    from costwarden.alerts.outbox import Outbox
    from costwarden.store import outbox as outbox_table

    over = [r for r in rows if r.over]
    if not over:
        return None
    ident = "\n".join(f"{r.day}|{r.provider}|{r.scope}|{r.basis}" for r in over)
    key = f"reconcile:{period}:{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    outbox = Outbox(store)
    if key in outbox.already_enqueued([key]):
        return None
    title, body = drift_message(rows, period, threshold_pct)
    outbox_table.write(store, [{"key": key, "version": time.time_ns() // 1000, "created_at": now,
                                   "budget_id": "reconcile", "channel": channel, "title": title, "body": body,
                                   "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": ""}])
    return key
