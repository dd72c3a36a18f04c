"""Budget status, controls (list, release, extend: audited), budget reloads (audited), audit, tokens."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from costwarden.api.auth import ROLES, Principal, create_token
from costwarden.api.deps import need, runtime
from costwarden.money import from_micros
from costwarden.store.queries import AUDIT_SQL

router = APIRouter(prefix="/v1")
BUDGET_AUDIT_SQL = "SELECT * FROM {db}.budget_audit ORDER BY at, seq"


def _status_json(r: dict) -> dict:
    return {"budget": r["budget"], "name": r["name"], "period": r["period"],
            "spend_usd": str(from_micros(r["spend_micros"])), "amount_usd": str(from_micros(r["amount_micros"])),
            "pct_used": str(r["pct_used"]), "forecast_usd": str(from_micros(r["forecast_micros"])),
            "state": r["state"], "period_end": r["period_end"].isoformat(),
            "spend_micros": r["spend_micros"], "amount_micros": r["amount_micros"]}


@router.get("/budgets", tags=["budgets"], summary="every budget: spend, % used, forecast, state")
async def budgets(_: Principal = Depends(need("status:read")), rt=Depends(runtime)):
    rows = await rt.budget_status()
    return {"budgets": [_status_json(r) for r in rows]}


@router.get("/budgets/{budget_id}", tags=["budgets"], summary="one budget's current period")
async def budget(budget_id: str = Path(max_length=64), _: Principal = Depends(need("status:read")),
                 rt=Depends(runtime)):
    rows = await rt.budget_status()
    for r in rows:
        if r["budget"] == budget_id:
            return _status_json(r)
    raise HTTPException(404, f"no budget {budget_id!r}")


class Why(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="why: kept in the audit trail")


class ExtendIn(Why):
    until: AwareDatetime | None = Field(None, description="keep until this time; omit: until released")


def _control_json(c, now: datetime) -> dict:
    return {"workflow": c.workflow, "state": c.state.value,
            "rate_per_min": str(c.rate_per_min) if c.rate_per_min is not None else None,
            "budget_id": c.budget_id, "reason": c.reason, "set_by": c.set_by,
            "set_at": c.set_at.isoformat() if c.set_at else None,
            "expires_at": c.expires_at.isoformat() if c.expires_at else None,
            "active": c.active(now) and c.state.value != "allow"}


@router.get("/controls", tags=["controls"], summary="current throttles and blocks")
async def controls(include_inactive: bool = False, _: Principal = Depends(need("status:read")),
                   rt=Depends(runtime)):
    now = datetime.now(timezone.utc)
    rows = [_control_json(c, now) for c in rt.cache.controls()]
    return {"version": rt.cache.version, "controls": [r for r in rows if include_inactive or r["active"]]}


@router.post("/controls/{workflow}/release", tags=["controls"], summary="release a throttle or block (audited)",
             responses={409: {"description": "no active control to release"}})
async def release(body: Why, workflow: str = Path(min_length=1, max_length=256),
                  who: Principal = Depends(need("controls:manage")), rt=Depends(runtime)):
    change = await rt.release(workflow, body.reason, who.name)
    return {"workflow": workflow, "from": change.before.state.value, "to": change.after.state.value,
            "by": who.name, "reason": body.reason, "at": change.at.isoformat()}


@router.post("/controls/{workflow}/extend", tags=["controls"], summary="keep a throttle or block (audited)",
             responses={409: {"description": "no active control to extend"}})
async def extend(body: ExtendIn, workflow: str = Path(min_length=1, max_length=256),
                 who: Principal = Depends(need("controls:manage")), rt=Depends(runtime)):
    change = await rt.extend(workflow, body.until, body.reason, who.name)
    a = change.after
    return {"workflow": workflow, "state": a.state.value, "by": who.name, "reason": body.reason,
            "expires_at": a.expires_at.isoformat() if a.expires_at else None, "at": change.at.isoformat()}


@router.post("/budgets/reload", tags=["budgets"], summary="re-read the budgets file (audited)")
async def reload_budgets(body: Why, who: Principal = Depends(need("budgets:manage")), rt=Depends(runtime)):
    return await rt.reload_budgets(body.reason, who.name)


@router.get("/audit", tags=["audit"], summary="every control and budget change: who, when, why")
async def audit(workflow: str | None = Query(None, max_length=256), _: Principal = Depends(need("status:read")),
                rt=Depends(runtime)):
    def now():
        return rt.store.query(AUDIT_SQL), rt.store.query(BUDGET_AUDIT_SQL)
    controls_rows, budget_rows = await rt.thread.run(now)
    out = []
    for r in controls_rows:
        if workflow is None or r["workflow"] == workflow:
            out.append({"kind": "control", "at": r["at"].isoformat(), "workflow": r["workflow"],
                        "from": r["from_state"], "to": r["to_state"], "budget_id": r["budget_id"],
                        "who": r["actor"], "actor_kind": r["actor_kind"], "why": r["reason"]})
    if workflow is None:
        for r in budget_rows:
            out.append({"kind": "budget", "at": r["at"].isoformat(), "action": r["action"],
                        "budgets": r["budget_ids"], "detail": r["detail"], "who": r["actor"], "why": r["reason"]})
    out.sort(key=lambda r: r["at"])
    return {"entries": out}


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="who: shown in the audit trail")
    role: str = Field(description="one of " + ", ".join(ROLES), pattern="^(" + "|".join(ROLES) + ")$")


@router.post("/tokens", tags=["tokens"], status_code=201, summary="create a token (shown once; stored hashed)")
async def new_token(body: TokenIn, request: Request, _: Principal = Depends(need("tokens:manage")),
                    rt=Depends(runtime)):
    token = await rt.thread.run(lambda: create_token(rt.store, body.name, body.role))
    request.app.state.tokens.add(token, body.name, body.role)
    return {"name": body.name, "role": body.role, "token": token}
