"""POST /v1/events (usage in) and /v1/reservations (reserve-then-settle admission)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from costwarden.api.auth import Principal
from costwarden.api.deps import need, runtime
from costwarden.api.ingest import CE, CE_BATCH, JSON, BodyError, parse_body
from costwarden.api.owner import route
from costwarden.api.reservations import Refused
from costwarden.errors import InvalidEventError
from costwarden.events import UsageEvent
from costwarden.money import from_nanos, to_nanos

router = APIRouter(prefix="/v1", tags=["usage"])

_EVENT = {"$ref": "#/components/schemas/UsageEvent"}
_CLOUDEVENT = {"type": "object", "required": ["specversion", "id", "source", "type", "data"],
               "properties": {"specversion": {"const": "1.0"}, "id": {"type": "string"},
                              "source": {"type": "string"}, "type": {"type": "string"},
                              "time": {"type": "string"}, "datacontenttype": {"type": "string"}, "data": _EVENT}}
_EVENTS_BODY = {"requestBody": {"required": True, "content": {
    JSON: {"schema": {"oneOf": [_EVENT, {"type": "array", "items": _EVENT, "maxItems": 10000}]}},
    CE: {"schema": _CLOUDEVENT},
    CE_BATCH: {"schema": {"type": "array", "items": _CLOUDEVENT}}}}}


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, "body_too_large", f"{declared} bytes > the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/events", openapi_extra=_EVENTS_BODY, summary="report usage: one event, a batch or CloudEvents",
             responses={200: {"description": "per-event result"}, 400: {"description": "unreadable body"},
                        413: {"description": "too large"}, 415: {"description": "unsupported media type"},
                        422: {"description": "every event was rejected"}})
async def post_events(request: Request, who: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    settings = rt.settings
    body = await read_body(request, settings.api.max_body_bytes)
    parsed = parse_body(body, request.headers.get("content-type"), settings.limits.limits(),
                        settings.api.max_events_per_request)
    result = await rt.ingest(parsed, f"api:{who.name}")
    m = request.app.state.metrics.events
    for k in ("accepted", "duplicates", "rejected"):
        m.labels(k).inc(result[k])
    cost = result.pop("cost_nanos")  # None in distributed mode: the workers price the events
    result["cost_usd"] = str(from_nanos(cost)) if cost is not None else None
    status = 422 if result["rejected"] == len(parsed.items) else 200
    return JSONResponse(result, status_code=status)


class ReserveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=256)
    provider: str = Field(min_length=1, max_length=64)
    max_input_tokens: int = Field(ge=0, le=10_000_000)
    max_output_tokens: int = Field(ge=0, le=10_000_000)
    tags: dict[str, str] = Field(default_factory=dict, max_length=64,
                                 description="attribution tags (team, env, org ...) used to match budgets")
    ttl_s: float | None = Field(None, gt=0, le=86_400)
    sizing: Literal["quantile", "worst"] = Field(
        "quantile", description="quantile: the smaller of the worst case and the workflow's recent p99 cost per "
                                "call (never below the input alone); worst: max input + max output tokens")


@router.post("/reservations", tags=["reservations"], status_code=201,
             summary="hold what a call may cost against the workflow's hard budgets",
             responses={409: {"description": "refused. `error`: `budget_exceeded` (the workflow is blocked, or the "
                                             "budget cannot pay this call in this period; `x-should-retry: false`) "
                                             "or `budget_reserved` (holds of calls in flight are in the way; "
                                             "`Retry-After`, `x-should-retry: true`)"},
                        422: {"description": "model not in the price catalogue"},
                        501: {"description": "distributed mode without `api.replicas`"},
                        503: {"description": "distributed mode: the workflow's owner replica did not answer"}})
async def reserve(body: ReserveIn, request: Request, response: Response,
                  _: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    m = request.app.state.metrics.reservations
    book = reservations_of(rt)
    owner = rt.router.owner(body.workflow) if rt.router is not None else None
    forwarded = await route(request, response, rt, owner, body.model_dump_json().encode())
    if forwarded is not None:
        return forwarded
    try:
        hold = await rt.thread.run(lambda: book.reserve(
            body.workflow, body.model, body.provider.strip().lower(), body.max_input_tokens,
            body.max_output_tokens, body.tags, body.ttl_s, body.sizing))
    except Refused:
        m.labels("refused").inc()
        raise
    m.labels("admitted").inc()
    return hold.as_json()


def reservations_of(rt):
    """The runtime's ReservationBook; 501 where there is none (distributed mode, see README)."""
    if rt.reservations is None:
        raise HTTPException(501, "reservations are not offered in distributed mode without api.replicas and "
                                 "api.self_url (one owner replica per workflow; see costwarden/api/README.md, "
                                 "'Reserve-then-settle'); use GET /v1/decisions and report usage")
    return rt.reservations


@router.post("/reservations/{hold_id}/settle", tags=["reservations"],
             summary="record the call's actual usage and drop the hold",
             openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": _EVENT}}}})
async def settle(hold_id: str, request: Request, response: Response,
                 who: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    reservations_of(rt)
    body = await read_body(request, rt.settings.limits.max_payload_bytes)
    owner = rt.router.owner_of_hold(hold_id) if rt.router is not None else None
    forwarded = await route(request, response, rt, owner, body)
    if forwarded is not None:
        return forwarded
    parsed = parse_body(body, request.headers.get("content-type"), rt.settings.limits.limits(), 1)
    item = parsed.items[0]
    if item.event is None:
        raise InvalidEventError(item.reason, item.detail)
    book = rt.reservations
    hold = book.holds.get(hold_id)  # a read: the hold's workflow, for the recent-cost sample
    out = await rt.settle(hold_id, item.event, item.raw, f"api:{who.name}")
    if hold is not None and out.get("cost_usd") is not None and out.get("accepted"):
        cost = to_nanos(out["cost_usd"])
        rt.thread.submit(lambda: book.observe(hold.workflow, cost))  # no need to wait for it
    return out


@router.post("/reservations/{hold_id}/release", tags=["reservations"],
             summary="drop a hold without usage (the call failed or was not made)")
async def release(hold_id: str, request: Request, response: Response,
                  _: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    book = reservations_of(rt)
    owner = rt.router.owner_of_hold(hold_id) if rt.router is not None else None
    forwarded = await route(request, response, rt, owner, b"")
    if forwarded is not None:
        return forwarded
    hold = await rt.thread.run(lambda: book.release(hold_id))
    if hold is None:
        raise HTTPException(404, f"no open reservation {hold_id!r} (settled, released or expired)")
    return {"id": hold_id, "hold": "released"}


@router.get("/reservations", tags=["reservations"], summary="open holds (distributed: those this replica owns)")
async def holds(_: Principal = Depends(need("status:read")), rt=Depends(runtime)):
    book = reservations_of(rt)

    def now():
        book.expire()
        return [h.as_json() for h in book.holds.values()]
    return {"holds": await rt.thread.run(now)}


def event_schema_components() -> dict[str, Any]:
    """UsageEvent and its parts as OpenAPI components (the bodies above refer to them)."""
    s = UsageEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = s.pop("$defs", {})
    return {"UsageEvent": s, **defs}
