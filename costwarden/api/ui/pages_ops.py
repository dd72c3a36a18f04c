"""Alerts (budget signals from `budget_events`, each with its deliveries from `alert_outbox`:
channel name, status, attempts; never a channel's URL) and Sources (connector cursors, and the
reconciliation drift table of GET /v1/reconcile for finance and admin)."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from costwarden.api.ingest import BodyError
from costwarden.api.routes_reports import period_range
from costwarden.api.ui.auth import CONSOLE_PERMISSION, principal
from costwarden.api.ui.data import CURSORS_SQL, DeliveriesQuery, reconcile_rows, signals_query, without_urls
from costwarden.api.ui.pages_spend import suggestions, this_month
from costwarden.api.ui.views import ConsoleRoute, render

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
RECONCILE = "finance:read"  # as GET /v1/reconcile


def _delivery(r: dict) -> dict:
    return {"key": r["key"], "channel": r["channel"], "title": r["title"], "status": r["status"],
            "attempts": r["attempts"], "created_at": r["created_at"],
            "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
            "last_error": without_urls(r["last_error"])[:300]}


def alerts_data(store) -> tuple[list[dict], list[dict]]:
    """Signals newest first with their deliveries, and notifications that are not budget signals
    (a reconciliation drift alert)."""
    signals = store.query(signals_query().to_sql())
    keys = tuple(s["key"] for s in signals)
    by_key: dict[str, list[dict]] = {}
    if keys:
        for r in store.query(DeliveriesQuery(keys, limit=20 * len(keys)).to_sql()):
            by_key.setdefault(r["key"], []).append(_delivery(r))
    for s in signals:
        s["deliveries"] = sorted(by_key.get(s["key"], []), key=lambda d: d["channel"])
    signal_keys = set(keys)
    others = [_delivery(r) for r in store.query(DeliveriesQuery().to_sql()) if r["key"] not in signal_keys]
    return signals, others


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    who = await principal(request, CONSOLE_PERMISSION)
    rt = request.app.state.runtime
    signals, others = await rt.thread.run(lambda: alerts_data(rt.store))
    return render(request, "alerts.html", who=who, page="alerts", signals=signals, others=others)


@router.get("/sources")
async def sources_page(request: Request, period: str | None = Query(None, max_length=64)) -> Response:
    who = await principal(request, CONSOLE_PERMISSION)
    rt = request.app.state.runtime
    now = datetime.now(timezone.utc)
    period = (period or "").strip() or this_month(now)
    may_reconcile = who.can(RECONCILE)
    pct = rt.settings.connectors.reconcile_threshold_pct
    error = None
    span = None
    if may_reconcile:
        try:
            span = period_range(period)
        except BodyError as e:
            error = e.detail

    def read():
        cursors = rt.store.query(CURSORS_SQL)
        drift = reconcile_rows(rt.store, *span, pct) if span else None
        return cursors, drift
    cursors, drift = await rt.thread.run(read)
    return render(request, "sources.html", 422 if error else 200, who=who, page="sources", cursors=cursors,
                  drift=drift, may_reconcile=may_reconcile, period=period, threshold=pct, error=error,
                  suggestions=suggestions(now), over=sum(1 for r in drift or [] if r["over"]), now=now)
