"""Budget status, controls (list, release, extend: audited), budget reloads (audited), audit, tokens
(create, list, revoke: audited)."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from costwarden.api.auth import ROLES, Principal, create_token, token_hash
from costwarden.api.deps import need, runtime
from costwarden.money import from_nanos
from costwarden.store import tokens as token_rows
from costwarden.store.queries import AUDIT_SQL

router = APIRouter(prefix="/v1")
BUDGET_AUDIT_SQL = "SELECT * FROM {db}.budget_audit ORDER BY at, seq"


def _status_json(r: dict) -> dict:
    return {"budget": r["budget"], "name": r["name"], "period": r["period"],
            "spend_usd": str(from_nanos(r["spend_nanos"])), "amount_usd": str(from_nanos(r["amount_nanos"])),
            "pct_used": str(r["pct_used"]), "forecast_usd": str(from_nanos(r["forecast_nanos"])),
            "state": r["state"], "period_end": r["period_end"].isoformat(),
            "spend_nanos": r["spend_nanos"], "amount_nanos": r["amount_nanos"]}


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
    by: str | None = Field(None, min_length=1, max_length=256, description=
                           "the person acting when the token is shared (the CLI's `--by`): recorded as "
                           "'BY via TOKEN-NAME'; omitted: the token's name")


def actor(who: Principal, by: str | None) -> str:
    """Who, for the audit trail: the token's name, or the named person and the token used."""
    return who.name if not by or by == who.name else f"{by} via {who.name}"


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


@router.post("/controls/{workflow:path}/release", tags=["controls"], summary="release a throttle or block (audited)",
             responses={409: {"description": "no active control to release"}})
async def release(body: Why, workflow: str = Path(min_length=1, max_length=256),
                  who: Principal = Depends(need("controls:manage")), rt=Depends(runtime)):
    by = actor(who, body.by)
    change = await rt.release(workflow, body.reason, by)
    return {"workflow": workflow, "from": change.before.state.value, "to": change.after.state.value,
            "by": by, "reason": body.reason, "at": change.at.isoformat()}


@router.post("/controls/{workflow:path}/extend", tags=["controls"], summary="keep a throttle or block (audited)",
             responses={409: {"description": "no active control to extend"}})
async def extend(body: ExtendIn, workflow: str = Path(min_length=1, max_length=256),
                 who: Principal = Depends(need("controls:manage")), rt=Depends(runtime)):
    by = actor(who, body.by)
    change = await rt.extend(workflow, body.until, body.reason, by)
    a = change.after
    return {"workflow": workflow, "state": a.state.value, "by": by, "reason": body.reason,
            "expires_at": a.expires_at.isoformat() if a.expires_at else None, "at": change.at.isoformat()}


@router.post("/budgets/reload", tags=["budgets"], summary="re-read the budgets file (audited)")
async def reload_budgets(body: Why, who: Principal = Depends(need("budgets:manage")), rt=Depends(runtime)):
    return await rt.reload_budgets(body.reason, actor(who, body.by))


@router.get("/audit", tags=["audit"], summary="every control, budget and token change: who, when, why")
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
                        "rate_per_min": str(r["rate_per_min"]) if r.get("rate_per_min") is not None else None,
                        "who": r["actor"], "actor_kind": r["actor_kind"], "why": r["reason"]})
    if workflow is None:
        for r in budget_rows:
            if r["action"].startswith(token_rows.AUDIT_PREFIX):  # a person's token change (store/tokens.py)
                out.append({"kind": "token", "at": r["at"].isoformat(),
                            "action": r["action"][len(token_rows.AUDIT_PREFIX):], "token": r["budget_ids"],
                            "detail": r["detail"], "who": r["actor"], "why": r["reason"]})
                continue
            out.append({"kind": "budget", "at": r["at"].isoformat(), "action": r["action"],
                        "budgets": r["budget_ids"], "detail": r["detail"], "who": r["actor"], "why": r["reason"]})
    out.sort(key=lambda r: r["at"])
    return {"entries": out}


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="who: shown in the audit trail")
    role: str = Field(description="one of " + ", ".join(ROLES), pattern="^(" + "|".join(ROLES) + ")$")
    reason: str = Field("", max_length=2000, description="why: kept in the audit trail")
    by: str | None = Field(None, min_length=1, max_length=256, description="the person acting (see release)")


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000, description="why: kept in the audit trail")
    by: str | None = Field(None, min_length=1, max_length=256, description="the person acting (see release)")


@router.post("/tokens", tags=["tokens"], status_code=201, summary="create a token (shown once; stored hashed; audited)")
async def new_token(body: TokenIn, request: Request, who: Principal = Depends(need("tokens:manage")),
                    rt=Depends(runtime)):
    def now():
        token = create_token(rt.store, body.name, body.role)
        row = {"token_sha256": token_hash(token), "name": body.name, "role": body.role}
        token_rows.audit(rt.store, "create", row, actor(who, body.by), body.reason)
        return token
    token = await rt.thread.run(now)
    request.app.state.tokens.add(token, body.name, body.role)
    return {"name": body.name, "role": body.role, "token": token,
            "sha256_prefix": token_hash(token)[:token_rows.PREFIX_LEN]}


@router.get("/tokens", tags=["tokens"], summary="token names, roles and sha256 prefixes (never the tokens)")
async def list_tokens(_: Principal = Depends(need("tokens:manage")), rt=Depends(runtime)):
    rows = await rt.thread.run(lambda: token_rows.listing(rt.store))
    return {"tokens": [{"name": r["name"], "role": r["role"], "sha256_prefix": r["token_sha256"][:token_rows.PREFIX_LEN],
                        "created_at": r["created_at"].isoformat(), "revoked": bool(r["revoked"])} for r in rows]}


@router.post("/tokens/{sha256_prefix}/revoke", tags=["tokens"], summary="revoke a token (audited; every replica "
             "refuses it within api.token_refresh_s)",
             responses={404: {"description": "no active token has this prefix"},
                        409: {"description": "several active tokens have this prefix: give a longer one"}})
async def revoke_token(request: Request, body: RevokeIn | None = None,
                       sha256_prefix: str = Path(pattern="^[0-9a-f]{4,64}$", description=
                                                 "the start of the token's sha256 (`GET /v1/tokens`)"),
                       who: Principal = Depends(need("tokens:manage")), rt=Depends(runtime)):
    body = body or RevokeIn()
    by = actor(who, body.by)

    def now():
        rows = token_rows.matching(rt.store, sha256_prefix)
        if len(rows) != 1:
            return rows, None
        row = token_rows.revoke(rt.store, rows[0])
        token_rows.audit(rt.store, "revoke", row, by, body.reason)
        return rows, row
    rows, row = await rt.thread.run(now)
    if not rows:
        raise HTTPException(404, f"no active token's sha256 starts with {sha256_prefix!r}")
    if row is None:
        raise HTTPException(409, f"{len(rows)} active tokens match {sha256_prefix!r}; give a longer prefix")
    request.app.state.tokens.remove(row["token_sha256"])  # here at once; other replicas at their next load
    return {"name": row["name"], "role": row["role"], "sha256_prefix": row["token_sha256"][:token_rows.PREFIX_LEN],
            "revoked": True, "by": by, "reason": body.reason}
