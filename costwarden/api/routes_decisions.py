"""Decisions from memory: GET /v1/decisions/{workflow}, POST /v1/decisions (batch), and the
server-sent-events stream of control changes that SDK caches follow (GET /v1/controls/stream)."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from costwarden.api.auth import Principal
from costwarden.api.decisions import decision_json, parse_cursor
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
    version: int = Field(description="controls version these decisions reflect (counted per `epoch`)")
    epoch: str = Field(description="names this server start (and its controls history); versions of "
                                   "another epoch are not comparable")
    cursor: str = Field(description="`<epoch>:<version>`: resume the stream from it (`?since=`)")
    decisions: list[DecisionOut]


@router.get("/decisions/{workflow}", response_model=DecisionOut, summary="may this workflow spend now?")
async def decide(workflow: str = WORKFLOW, _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
    return decision_json(rt.cache.decide(workflow))


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
            response_class=StreamingResponse,
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
                 _: Principal = Depends(need("decisions:read")), rt=Depends(runtime)):
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
