"""Spend reports from the rollups (exact integers; a TOTAL row equals the sum of the events), budget
status as of an instant, and the one-line reasons an empty answer is empty."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from costwarden.money import from_nanos
from costwarden.store import Store
from costwarden.store.queries import ReportQuery, SpendSeedQuery

MODALITY_COLS = ["input_audio_tokens", "output_audio_tokens", "input_image_tokens", "output_image_tokens"]
TOKEN_COLS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
              "reasoning_tokens", *MODALITY_COLS]


def spend_report(store: Store, by: list[str], start: datetime, end: datetime) -> tuple[list[dict], list[str]]:
    """Rows by `by` and a TOTAL row. Unit costs count only rows that have requests: the TOTAL's
    cost per request is the spend of the rows with requests over their requests (a GPU fleet's
    hours are not spread over the model calls)."""
    rows = store.query(ReportQuery(by, start, end).to_sql())
    total = {d: "TOTAL" for d in by}
    for m in ["events", "requests", *TOKEN_COLS, "cost_nanos", "unpriced_events"]:
        total[m] = sum(r[m] for r in rows)
    total["request_cost_nanos"] = sum(r["cost_nanos"] for r in rows if r["requests"])
    rows = rows + [total] if rows else rows
    for r in rows:
        r["cost_usd"] = from_nanos(r["cost_nanos"])
        per = r.get("request_cost_nanos", r["cost_nanos"])
        r["cost_per_request_usd"] = (from_nanos(per) / r["requests"]).quantize(from_nanos(1)) \
            if r["requests"] else None
    seen = [c for c in MODALITY_COLS if any(r[c] for r in rows)]  # audio / image columns when used
    columns = [*by, "requests", "input_tokens", "cache_read_tokens", "output_tokens", *seen, "cost_usd",
               "cost_per_request_usd", "cost_nanos", "unpriced_events"]
    return rows, columns


def stored_days(store: Store) -> tuple[date, date] | None:
    """The first and last UTC day with stored usage, or None when nothing is stored."""
    try:
        r = store.query("SELECT count() AS n, min(bucket) AS lo, max(bucket) AS hi FROM {db}.usage_rollup_day")[0]
    except Exception:  # noqa: BLE001 - a store without the table yet: nothing stored
        return None
    if not r["n"]:
        return None
    return r["lo"].date(), r["hi"].date()


def month_label(d: date) -> str:
    return f"{d:%Y-%m}"


def nothing_for(store: Store, data_dir: Path | str, what: str) -> str:
    """Why a report for `what` (a period label) is empty, in one line."""
    span = stored_days(store)
    if span is None:
        return f"no usage stored in {data_dir}; run `costwarden demo` or ingest events first"
    lo, hi = span
    hint = month_label(hi) if month_label(lo) == month_label(hi) else f"{lo}..{hi}"
    return (f"no usage stored in {data_dir} for {what} (stored usage runs from {lo} to {hi}); "
            f"try --period {hint}")


def budget_status_as_of(store: Store, budgets, at: datetime) -> list[dict]:
    """Every budget as of the instant `at`: the period containing `at` (in the budgets file's time
    zone), its spend up to `at` (nothing after), % used, the forecast to period end from the daily
    history before `at` (as `costwarden budgets forecast`), and the state."""
    from costwarden.budgets.periods import period_bounds, period_key
    from costwarden.finance.burn import _dims, budget_forecasts
    from costwarden.money import to_nanos

    at = as_utc(at)  # the same instant whatever its offset (shown with it, computed in UTC)
    tz = ZoneInfo(budgets.timezone)
    fc = {r["budget"]: r for r in budget_forecasts(store, budgets, at)}
    rows = []
    seeds: dict[datetime, list[dict]] = {}
    for b in budgets.budgets:
        amount = to_nanos(b.amount)
        if b.id in fc:
            f = fc[b.id]
            spend, forecast, start, end, key = (f["spend_nanos"], f["forecast_nanos"], f["period_start"],
                                                f["period_end"], f["period"])
        else:  # a rolling window: the spend in [at - window, at) is all there is
            start, end = period_bounds(b.period, at, tz)
            if start not in seeds:
                seeds[start] = store.query(SpendSeedQuery(start, end).to_sql())
            spend = sum(r["cost_nanos"] for r in seeds[start] if b.scope.matches(_dims(r)))
            forecast, key = spend, period_key(b.period, start, tz)
        pct = (Decimal(spend) * 100 / Decimal(amount)).quantize(Decimal("0.1")) if amount else None
        state = "over" if spend >= amount else ("at-risk" if forecast >= amount else "ok")
        rows.append({"budget": b.id, "name": b.name, "period": key, "spend_nanos": spend, "amount_nanos": amount,
                     "pct_used": pct, "forecast_nanos": forecast, "state": state, "period_end": end})
    return rows


def as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def just_before(t: datetime) -> datetime:
    return t - timedelta(microseconds=1)
