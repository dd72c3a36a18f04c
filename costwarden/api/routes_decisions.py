"""Decisions from memory: GET /v1/decisions/{workflow}, POST /v1/decisions (batch), and the
server-sent-events stream of control changes that SDK caches follow (GET /v1/controls/stream)."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from costwarden.api.auth import Principal
from costwarden.api.decisions import decision_json
from costwarden.api.deps import need, runtime

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
    version: int = Field(description="controls version these decisions reflect (resume the stream from it)")
    decisions: list[DecisionOut]


@router.get("/decisions/{workflow}", response_model=DecisionOut, summary="may this workflow spend now?")
async def decide(workflow: str = WORKFLOW, _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    return decision_json(rt.cache.decide(workflow))


@router.post("/decisions", response_model=DecisionsOut, summary="decisions for many workflows at once")
async def decide_many(body: DecisionsIn, _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    cache = rt.cache
    version = cache.version
    if body.workflows:
        ds = [cache.decide(w) for w in body.workflows]
    else:
        ds = [cache.decide(c.workflow) for c in cache.controls()]
    return {"version": version, "decisions": [decision_json(d) for d in ds]}


def _sse(event: str, data: dict, ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/controls/stream", summary="server-sent events: every control change (SDK caches follow it)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`snapshot` first (unless resuming), then `control` events; "
                                            "`id` is the controls version"}})
async def stream(request: Request, since: int | None = Query(None, ge=0, description="resume after this version"),
                 last_event_id: str | None = Header(None, max_length=32),
                 _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    cache = rt.cache
    heartbeat = rt.settings.api.stream_heartbeat_s
    if since is None and last_event_id and last_event_id.strip().isdigit():
        since = int(last_event_id.strip())
    q = cache.subscribe()

    async def events():
        try:
            yield b"retry: 1000\n\n"
            backlog = cache.since(since) if since is not None else None
            if backlog is None:
                v = cache.version
                snap = [decision_json(cache.decide(c.workflow)) for c in cache.controls()]
                yield _sse("snapshot", {"version": v, "decisions": snap}, v)
                last = v
            else:
                last = since
                for up in backlog:
                    yield _sse("control", decision_json(cache.decide(up.control.workflow)), up.version)
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
                if up.version <= last:
                    continue
                last = up.version
                yield _sse("control", decision_json(cache.decide(up.control.workflow)), up.version)
        finally:
            cache.unsubscribe(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
