"""Controls: the active throttles and kill switches (the runtime's decision cache, as
GET /v1/controls), why and since when; an admin releases or extends one with a reason through the
runtime's own `release` / `extend` (audited, as POST /v1/controls/{wf}/release and /extend); the
audit trail. The page follows GET /v1/controls/stream and re-reads its table on every change."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from costwarden.api.auth import Principal
from costwarden.api.routes_status import actor
from costwarden.api.ui.auth import CONSOLE_PERMISSION, form_principal, principal, read_form
from costwarden.api.ui.data import RecentQuery
from costwarden.api.ui.views import ConsoleRoute, render
from costwarden.budgets.controls import State
from costwarden.store import tokens as token_rows

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
MANAGE = "controls:manage"  # admin, as the JSON API's release / extend
WORKFLOW = Path(min_length=1, max_length=256)
DONE = {"release": "Released", "extend": "Extended"}


def since(t: datetime | None, now: datetime) -> str:
    """How long ago, for people: `3 d 4 h`, `2 h 5 min`, `40 s`."""
    if t is None:
        return ""
    s = max(int((now - t).total_seconds()), 0)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    return f"{m} min" if m else f"{s} s"


def active_controls(cache, now: datetime) -> list[dict]:
    out = []
    for c in cache.controls():
        if c.state is State.allow or not c.active(now):
            continue
        out.append({"workflow": c.workflow, "state": c.state.value, "rate_per_min": c.rate_per_min,
                    "budget_id": c.budget_id, "reason": c.reason, "set_by": c.set_by, "set_at": c.set_at,
                    "since": since(c.set_at, now), "expires_at": c.expires_at, "kept_by_person": c.kept_by_person})
    return sorted(out, key=lambda r: (r["state"] != "block", r["workflow"]))


def audit_entries(store) -> list[dict]:
    """The newest control, budget and token changes, newest first (the entries of GET /v1/audit)."""
    controls = store.query(RecentQuery("control_audit").to_sql())
    budgets = store.query(RecentQuery("budget_audit").to_sql())
    out = [{"kind": "control", "at": r["at"], "subject": r["workflow"],
            "change": f"{r['from_state']} → {r['to_state']}",
            "budget": r["budget_id"], "who": r["actor"], "actor_kind": r["actor_kind"], "why": r["reason"]}
           for r in controls]
    for r in budgets:
        token = r["action"].startswith(token_rows.AUDIT_PREFIX)
        out.append({"kind": "token" if token else "budget", "at": r["at"],
                    "subject": r["budget_ids"], "budget": "",
                    "change": r["action"][len(token_rows.AUDIT_PREFIX):] if token else r["action"],
                    "who": r["actor"], "actor_kind": "person", "why": r["reason"]})
    out.sort(key=lambda e: e["at"], reverse=True)
    return out[:RecentQuery.limit]


def _table_ctx(request: Request, who: Principal) -> dict:
    now = datetime.now(timezone.utc)
    rt = request.app.state.runtime
    return {"who": who, "controls": active_controls(rt.cache, now), "can_manage": who.can(MANAGE), "now": now,
            "version": rt.cache.version}


@router.get("/controls")
async def controls_page(request: Request, done: str | None = Query(None, max_length=16),
                        workflow: str | None = Query(None, max_length=256)) -> Response:
    who = await principal(request, CONSOLE_PERMISSION)
    rt = request.app.state.runtime
    audit = await rt.thread.run(lambda: audit_entries(rt.store))
    done = DONE.get(done or "")
    return render(request, "controls.html", page="controls", audit=audit,
                  done=f"{done} {workflow}." if done and workflow else "", **_table_ctx(request, who))


@router.get("/controls/table")
async def controls_table(request: Request) -> Response:
    """The table alone: what the page's script swaps in when the control stream says something changed."""
    who = await principal(request, CONSOLE_PERMISSION)
    return render(request, "_controls_table.html", **_table_ctx(request, who))


async def _change(request: Request, workflow: str, what: str) -> Response:
    form = await read_form(request)
    who = await form_principal(request, MANAGE, form)
    reason = str(form.get("reason") or "").strip()[:2000]
    by = actor(who, str(form.get("by") or "").strip()[:256] or None)
    rt = request.app.state.runtime
    if not reason:
        audit = await rt.thread.run(lambda: audit_entries(rt.store))
        return render(request, "controls.html", 422, page="controls", audit=audit,
                      error=f"{what} {workflow}: a reason is required (it is kept in the audit trail)",
                      **_table_ctx(request, who))
    if what == "release":
        await rt.release(workflow, reason, by)
    else:
        await rt.extend(workflow, _until(str(form.get("until") or "")), reason, by)
    return RedirectResponse("/ui/controls?" + urlencode({"done": what, "workflow": workflow}), status_code=303)


def _until(text: str) -> datetime | None:
    """A `datetime-local` field read as UTC (the page says so); empty: until released."""
    from costwarden.errors import ControlError

    if not text.strip():
        return None
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ControlError(f"until {text[:40]!r}: not a date and time (YYYY-MM-DDTHH:MM, UTC)") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


@router.post("/controls/{workflow:path}/release")
async def release(request: Request, workflow: str = WORKFLOW) -> Response:
    return await _change(request, workflow, "release")


@router.post("/controls/{workflow:path}/extend")
async def extend(request: Request, workflow: str = WORKFLOW) -> Response:
    return await _change(request, workflow, "extend")
