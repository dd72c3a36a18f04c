"""Finance over HTTP (read-only; the store is read on the pipeline thread):

    GET /v1/reports/spend?by=team,workflow&period=2026-11&format=json|csv   viewer, finance, admin
    GET /v1/exports/focus?period=2026-11&format=csv|parquet                 finance, admin
    GET /v1/reconcile?period=2026-11[&threshold_pct=5]                      finance, admin

The spend report is costwarden.finance.reports.finance_report (unit costs, the `unallocated` row,
the TOTAL row whose `cost_nanos` is the exact sum of the events'); money is exact decimal text.
"""
from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal

import click
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from costwarden.api.auth import Principal
from costwarden.api.deps import need, runtime
from costwarden.api.ingest import BodyError
from costwarden.store.queries import REPORT_DIMS

router = APIRouter(prefix="/v1", tags=["finance"])

PERIOD_HELP = "2026-11, 2026-Q4, 2026-W47, 2026-11-21 or FROM..TO (UTC)"
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
CSV = "text/csv; charset=utf-8"
PARQUET = "application/vnd.apache.parquet"


def period_range(text: str) -> tuple[datetime, datetime]:
    """A period -> UTC [start, end); anything unreadable or out of range is a 422."""
    from costwarden.cli.common import parse_period

    try:
        start, end = parse_period(text)
    except (click.BadParameter, ValueError, OverflowError) as e:
        msg = e.format_message() if isinstance(e, click.BadParameter) else str(e)
        raise BodyError(422, "invalid_period", f"period {text[:64]!r}: {msg}; use {PERIOD_HELP}") from None
    if not (_EARLIEST <= start < end <= _LATEST):
        raise BodyError(422, "invalid_period", f"period {text[:64]!r} must be a non-empty range between "
                                               f"1970 and 2200")
    return start, end


def dims(by: str) -> list[str]:
    out = [d.strip() for d in by.split(",") if d.strip()]
    bad = [d for d in out if d not in REPORT_DIMS]
    if not out or bad:
        raise BodyError(422, "invalid_dimension", f"by={by[:64]!r}: choose one or more of {', '.join(REPORT_DIMS)}")
    if len(set(out)) != len(out):
        raise BodyError(422, "invalid_dimension", f"by={by[:64]!r} names a dimension twice")
    return out


def _jsonable(v):
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def _filename(kind: str, period: str, ext: str) -> dict:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in period)[:40]
    return {"Content-Disposition": f'attachment; filename="{kind}-{safe}.{ext}"'}


@router.get("/reports/spend", summary="showback: spend with unit costs per dimension, unallocated and TOTAL rows",
            responses={200: {"content": {"application/json": {}, CSV: {}}}, 422: {"description": "bad parameter"}})
async def spend(period: str = Query(..., max_length=64, description=PERIOD_HELP, examples=["2026-11"]),
                by: str = Query("team", max_length=128, examples=["team,workflow"], description=f"comma separated: {', '.join(REPORT_DIMS)}"),
                format: Literal["json", "csv"] = Query("json"), compare: bool = Query(True, description=
                "include the previous period's cost and the change"),
                _: Principal = Depends(need("status:read")), rt=Depends(runtime)):
    from costwarden.finance.export import to_csv
    from costwarden.finance.reports import finance_report

    start, end = period_range(period)
    group = dims(by)
    rows, cols = await rt.thread.run(lambda: finance_report(rt.store, group, start, end, compare=compare))
    if format == "csv":
        return Response(to_csv(rows, cols), media_type=CSV, headers=_filename("spend", period, "csv"))
    body = {"period": period, "start": start.isoformat(), "end": end.isoformat(), "by": group, "columns": cols,
            "rows": [{c: _jsonable(r.get(c)) for c in cols} for r in rows]}
    return Response(json.dumps(body), media_type="application/json")


@router.get("/exports/focus", summary="FinOps FOCUS 1.2 rows of stored usage",
            responses={200: {"content": {CSV: {}, PARQUET: {}}}, 422: {"description": "bad parameter"}})
async def focus(period: str = Query(..., max_length=64, description=PERIOD_HELP, examples=["2026-11"]),
                format: Literal["csv", "parquet"] = Query("csv"),
                account_id: str = Query("costwarden", min_length=1, max_length=128),
                account_name: str = Query("costwarden", min_length=1, max_length=256),
                _: Principal = Depends(need("finance:read")), rt=Depends(runtime)):
    from costwarden.finance.export import to_arrow, to_csv
    from costwarden.finance.focus import COLUMNS, arrow_schema, focus_rows

    start, end = period_range(period)
    rows = await rt.thread.run(lambda: focus_rows(rt.store, start, end, account_id, account_name))
    if format == "csv":
        return Response(to_csv(rows, list(COLUMNS)), media_type=CSV, headers=_filename("focus", period, "csv"))
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(to_arrow(rows, list(COLUMNS), arrow_schema()), buf)
    return Response(buf.getvalue(), media_type=PARQUET, headers=_filename("focus", period, "parquet"))


@router.get("/reconcile", summary="our cost vs the providers' cost reports, per day, provider and project",
            responses={422: {"description": "bad parameter"}})
async def reconcile(period: str = Query(..., max_length=64, description=PERIOD_HELP, examples=["2026-11"]),
                    threshold_pct: Decimal | None = Query(None, ge=0, le=1_000_000, description=
                    "drift (percent) above which a row is `over`; default connectors.reconcile_threshold_pct"),
                    _: Principal = Depends(need("finance:read")), rt=Depends(runtime)):
    from costwarden.connectors.reconcile import COLUMNS, reconcile as run

    start, end = period_range(period)
    if threshold_pct is not None and not threshold_pct.is_finite():
        raise BodyError(422, "invalid_threshold", "threshold_pct must be a finite number")
    pct = threshold_pct if threshold_pct is not None else rt.settings.connectors.reconcile_threshold_pct
    rows = await rt.thread.run(lambda: [r.as_row() for r in run(rt.store, start, end, pct)])
    body = {"period": period, "threshold_pct": str(pct), "columns": COLUMNS,
            "over": sum(1 for r in rows if r["over"]), "rows": [{c: _jsonable(r[c]) for c in COLUMNS} for r in rows]}
    return Response(json.dumps(body), media_type="application/json")
