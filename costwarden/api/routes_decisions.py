"""Decisions from memory: GET /v1/decisions/{workflow}, POST /v1/decisions (batch), and the
server-sent-events stream of control changes that SDK caches follow (GET /v1/controls/stream).

GET /v1/decisions/{workflow} is answered by `fast_decision` before FastAPI's routing and
dependency machinery (app.py calls it first): the token's sha256 looked up in the TokenBook's
dict, the workflow's pre-encoded answer from the DecisionCache, two ASGI messages. Nothing on
that path awaits, takes the pipeline thread or its queue, or touches the store. Any request it
does not answer with a 200 (no or unknown token, a role that may not, a malformed path) goes
through the FastAPI route below, which gives the same answers as before (401 / 403 / 404 / 422)."""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from costwarden.api.auth import Principal, bearer_token
from costwarden.api.decisions import decision_json, parse_cursor
from costwarden.api.deps import need, runtime
from costwarden.api.owner import route
from costwarden.api.throttle import LEASE_VALID_S, MAX_WANT
from costwarden.api.ui.auth import bearer_or_console
from costwarden.budgets.controls import State

router = APIRouter(prefix="/v1", tags=["decisions"])
WORKFLOW = Path(min_length=1, max_length=256, description="workflow name")


class DecisionOut(BaseModel):
    workflow: str
    action: str = Field(description="allow | throttle | block")
    rate_per_min: str | None = Field(None, description="requests per minute while throttled (decimal string)")
    reason: str
    budget_id: str
    expires_at: str | None


class DecisionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflows: list[str] = Field(default_factory=list, max_length=10_000,
                                 description="workflows to decide; empty: every workflow with a control")


class DecisionsOut(BaseModel):
    version: int = Field(description="controls version these decisions reflect (counted per `epoch`)")
    epoch: str = Field(description="names this server start (and its controls history); versions of "
                                   "another epoch are not comparable")
    cursor: str = Field(description="`<epoch>:<version>`: resume the stream from it (`?since=`)")
    decisions: list[DecisionOut]


DECISION_PREFIX = "/v1/decisions/"
_JSON = b"application/json"


def fast_decision(app, scope) -> bytes | None:
    """The body of a 200 answer to GET /v1/decisions/{workflow}, or None when FastAPI's route must
    answer (an error, or not this endpoint). Called on the event loop; never awaits."""
    if scope["method"] != "GET":
        return None
    wf = scope["path"][len(DECISION_PREFIX):]
    if not wf or len(wf) > 256:  # a "/" is part of the name, as on the route
        return None
    token = bearer_token(scope["headers"])
    if token is None:
        return None
    who = app.state.tokens.lookup(token)
    if who is None or not who.can("decisions:read"):
        return None
    return app.state.runtime.cache.decision_bytes(wf)


async def send_json(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@router.get("/decisions/{workflow:path}", response_model=DecisionOut, summary="may this workflow spend now?")
async def decide(workflow: str = WORKFLOW, _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    # (a 200 is normally answered by fast_decision before this route; the same bytes)
    return Response(rt.cache.decision_bytes(workflow), media_type="application/json")


@router.post("/decisions", response_model=DecisionsOut, summary="decisions for many workflows at once")
async def decide_many(body: DecisionsIn, _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    cache = rt.cache
    epoch, version, controls = cache.snapshot()
    if body.workflows:
        ds = [cache.decide(w) for w in body.workflows]
    else:
        ds = [cache.decide(c.workflow) for c in controls]
    return {"version": version, "epoch": epoch, "cursor": f"{epoch}:{version}",
            "decisions": [decision_json(d) for d in ds]}


def _sse(event: str, data: dict, ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _snapshot(cache) -> tuple[str, int, bytes]:
    epoch, version, controls = cache.snapshot()
    decisions = [decision_json(cache.decide(c.workflow)) for c in controls]
    cursor = f"{epoch}:{version}"
    body = {"epoch": epoch, "version": version, "cursor": cursor, "decisions": decisions}
    return epoch, version, _sse("snapshot", body, cursor)


def _control(cache, up) -> bytes:
    return _sse("control", {**decision_json(cache.decide(up.control.workflow)), "epoch": up.epoch,
                            "version": up.version}, up.cursor)


@router.get("/controls/stream", summary="server-sent events: every control change (SDK caches follow it)",
            response_class=StreamingResponse, description="A bearer token with the gateway, finance or admin "
            "role; or, without an Authorization header, the web console's session cookie (viewer, finance or "
            "admin: EventSource cannot send a header).",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`snapshot` first (unless resuming), then `control` events; "
                                            "`id` is the cursor `<epoch>:<version>`; a new `snapshot` "
                                            "whenever the server's controls start a new epoch"}})
async def stream(request: Request,
                 since: str | None = Query(None, max_length=64, description=(
                     "resume after this cursor (`<epoch>:<version>`, the last event's `id`). A cursor of "
                     "another server start, one ahead of the server, a bare number or an unknown one: a "
                     "full snapshot is sent first")),
                 last_event_id: str | None = Header(None, max_length=64),
                 _: Principal = Depends(bearer_or_console("decisions:read")), rt=Depends(runtime)):
    cache = rt.cache
    heartbeat = rt.settings.api.stream_heartbeat_s
    if since is None and last_event_id:
        since = last_event_id.strip()
    q = cache.subscribe()

    async def events():
        try:
            yield b"retry: 1000\n\n"
            backlog = cache.resume(since)
            if backlog is None:
                epoch, last, snap = _snapshot(cache)
                yield snap
            else:
                epoch, last = parse_cursor(since)
                for up in backlog:
                    yield _control(cache, up)
                    last = up.version
            idle = 0.0
            while not request.app.state.stopping:
                try:
                    up = await asyncio.wait_for(q.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    idle += 0.5
                    if idle >= heartbeat:
                        idle = 0.0
                        yield b": ping\n\n"
                    continue
                if up is None:  # end_streams(): the server is stopping
                    break
                if up.epoch != epoch or up.control is None:  # the cache was replaced: resync
                    epoch, last, snap = _snapshot(cache)
                    yield snap
                    continue
                if up.version <= last:
                    continue
                last = up.version
                yield _control(cache, up)
        finally:
            cache.unsubscribe(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class LeaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    want: int = Field(1, ge=1, le=MAX_WANT, description="tokens wanted (calls this guard expects to admit soon)")
    guard: str = Field("", max_length=64, description="the asking guard's id (random per SDK instance): the API "
                                                      "counts the guards of a workflow")


class LeaseOut(BaseModel):
    workflow: str
    action: str = Field(description="allow | throttle | block: the workflow's decision now")
    rate_per_min: str | None = None
    granted: int = Field(description="calls this guard may admit within `valid_s` (allow: all it asked for)")
    retry_after_s: float | None = Field(None, description="none granted: when the next token is due (block: null)")
    valid_s: float = Field(description="spend the grant within this many seconds, then drop the rest")
    guards: int = Field(description="guards of this workflow that leased in the last 10 s (>= 1)")
    expires_at: str | None = None


@router.post("/throttle/{workflow:path}/lease", response_model=LeaseOut, tags=["decisions"],
             summary="lease tokens of a throttled workflow's shared bucket (every guard of it together: the rate)",
             responses={501: {"description": "distributed mode without `api.replicas` (no owner for the bucket)"},
                        503: {"description": "distributed mode: the workflow's owner replica did not answer"}})
async def lease(body: LeaseIn, request: Request, response: Response, workflow: str = WORKFLOW,
                _: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    if rt.mode == "distributed":  # the owner replica of the workflow holds its bucket (api/owner.py)
        if rt.router is None:
            raise HTTPException(501, "throttle leases are not offered in distributed mode without api.replicas "
                                     "and api.self_url (one owner replica per workflow holds its bucket); guards "
                                     "use their local bucket")
        forwarded = await route(request, response, rt, rt.router.owner(workflow), body.model_dump_json().encode())
        if forwarded is not None:
            return forwarded
    d = rt.cache.decide(workflow)
    book = request.app.state.throttles
    out = {"workflow": workflow, "action": d.action.value,
           "rate_per_min": str(d.rate_per_min) if d.rate_per_min is not None else None,
           "expires_at": d.expires_at.isoformat() if d.expires_at else None}
    if d.action is State.throttle:
        rate = d.rate_per_min if d.rate_per_min is not None else Decimal(0)
        out.update(book.lease(workflow, rate, body.want, body.guard))
    elif d.action is State.allow:
        book.drop(workflow)
        out.update(granted=body.want, retry_after_s=None, valid_s=LEASE_VALID_S, guards=1)
    else:
        out.update(granted=0, retry_after_s=None, valid_s=LEASE_VALID_S, guards=1)
    return out
