"""Usage from other sources' own formats, through the pure parsers in connectors/:

    POST /v1/traces    OTLP/HTTP JSON (ExportTraceServiceRequest) with gen_ai.* span attributes
    POST /v1/litellm   LiteLLM StandardLoggingPayload (generic API logger): one object, a JSON
                       array, or JSON lines

Both run on the embedded pipeline thread like POST /v1/events (answered after the flush, rejects
go to dead_letters). /v1/traces answers as OTLP/HTTP does: 200 `{}` when every span with usage
was taken, 200 `{"partialSuccess": {"rejectedSpans": N, "errorMessage": ...}}` otherwise; spans
without gen_ai usage (HTTP, DB ... spans) are skipped, not rejected. Only the JSON encoding of
OTLP is read: application/x-protobuf is a 415.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from costwarden.api.auth import Principal
from costwarden.api.deps import need, runtime
from costwarden.api.ingest import BodyError, Item, Parsed, decode
from costwarden.api.routes_events import read_body
from costwarden.connectors import normalize
from costwarden.connectors.base import loads
from costwarden.connectors.otlp import OtlpMapping
from costwarden.errors import ConfigError
from costwarden.money import from_micros

router = APIRouter(prefix="/v1", tags=["sources"])

JSON = "application/json"
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines")
PROTOBUF = ("application/x-protobuf", "application/protobuf")

_OTLP_BODY = {"requestBody": {"required": True, "content": {JSON: {"schema": {
    "type": "object", "description": "OTLP ExportTraceServiceRequest (JSON encoding)",
    "required": ["resourceSpans"], "properties": {"resourceSpans": {"type": "array", "items": {"type": "object"}}}}}}}}
_LITELLM_RECORD = {"type": "object", "description": "LiteLLM StandardLoggingPayload"}
_LITELLM_BODY = {"requestBody": {"required": True, "content": {
    JSON: {"schema": {"oneOf": [_LITELLM_RECORD, {"type": "array", "items": _LITELLM_RECORD}]}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "one StandardLoggingPayload per line"}}}}}


def _media_type(request: Request, allowed: tuple[str, ...], what: str) -> str:
    mt = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if not mt:
        return JSON
    if mt in PROTOBUF:
        raise BodyError(415, "unsupported_media_type",
                        f"{mt!r}: only the OTLP/HTTP JSON encoding is accepted; configure the exporter with "
                        "protocol http/json (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json)")
    if mt not in allowed:
        raise BodyError(415, "unsupported_media_type", f"{mt!r}: send {what} as {' or '.join(allowed)}")
    return mt


def _items(result, index_base: int = 0) -> list[Item]:
    """ParseResult -> the runtime's items (events first, then rejects with content-free payloads)."""
    items = [Item(index_base + n, event=e) for n, e in enumerate(result.events)]
    items += [Item(index_base + len(items) + n, raw=r.payload or None, reason=r.reason, detail=r.detail)
              for n, r in enumerate(result.rejects)]
    return items


async def _ingest(request: Request, rt, parsed: Parsed, source: str) -> dict:
    result = await rt.ingest(parsed, source)
    m = request.app.state.metrics.events
    for k in ("accepted", "duplicates", "rejected"):
        m.labels(k).inc(result[k])
    result["cost_usd"] = str(from_micros(result.pop("cost_micros")))
    return result


def otlp_mapping(settings) -> OtlpMapping:
    """The attribution mapping of OTLP spans: `connectors.sources.otlp.options.mapping` if set
    (OtlpMapping fields), else the parser's defaults."""
    src = settings.connectors.sources.get("otlp")
    opts = (src.options.get("mapping") if src is not None else None) or {}
    return OtlpMapping(**opts) if isinstance(opts, dict) else OtlpMapping()


@router.post("/traces", openapi_extra=_OTLP_BODY, summary="OTLP/HTTP JSON traces: gen_ai spans become usage",
             responses={200: {"description": "ExportTraceServiceResponse (partialSuccess when spans were rejected)"},
                        400: {"description": "unreadable body"}, 413: {"description": "too large"},
                        415: {"description": "protobuf or another media type"}})
async def post_traces(request: Request, who: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    settings = rt.settings
    _media_type(request, (JSON,), "ExportTraceServiceRequest JSON")
    doc = decode(await read_body(request, settings.api.max_body_bytes))
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise BodyError(400, "not_an_object", "expected an ExportTraceServiceRequest: an object with a "
                                              "resourceSpans array")
    try:
        mapping = otlp_mapping(settings)
    except TypeError as e:
        raise ConfigError(f"connectors.sources.otlp.options.mapping: {e}") from None
    result = normalize("otlp", doc, mapping=mapping)
    if len(result.events) + len(result.rejects) > settings.api.max_events_per_request:
        raise BodyError(413, "too_many_events", f"{len(result.events)} gen_ai spans in one request; "
                                                f"the limit is {settings.api.max_events_per_request}")
    parsed = Parsed(_items(result))
    if parsed.items:
        await _ingest(request, rt, parsed, f"otlp:{who.name}")
    if not result.rejects:
        return JSONResponse({})
    reasons = "; ".join(f"{r.reason}: {r.detail}" for r in result.rejects[:5])
    more = f" (and {len(result.rejects) - 5} more)" if len(result.rejects) > 5 else ""
    return JSONResponse({"partialSuccess": {"rejectedSpans": len(result.rejects),
                                            "errorMessage": f"{reasons}{more}"[:2000]}})


def _records(body: bytes, ndjson: bool) -> list[tuple[Any, str | None]]:
    """(record, None) or (None, why it is malformed) per record of a LiteLLM body."""
    if not body.strip():
        raise BodyError(400, "empty_body", "the body is empty; send StandardLoggingPayload objects")
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if ndjson or len(lines) > 1:
        try:  # a pretty-printed JSON document is not JSON lines
            doc = None if ndjson else decode(body)
        except BodyError:
            doc = None
        if doc is None:
            out: list[tuple[Any, str | None]] = []
            for n, ln in enumerate(lines, 1):
                try:
                    out.append((loads(ln), None))
                except (ValueError, RecursionError) as e:
                    out.append((None, f"line {n}: {getattr(e, 'msg', type(e).__name__)}"))
            return out
    else:
        doc = decode(body)
    if isinstance(doc, list):
        if not doc:
            raise BodyError(400, "empty_batch", "the array holds no records")
        return [(d, None) for d in doc]
    if isinstance(doc, dict):
        return [(doc, None)]
    raise BodyError(400, "not_an_object", "send one StandardLoggingPayload object, a JSON array or JSON lines")


def litellm_items(records: list[tuple[Any, str | None]]) -> tuple[Parsed, list[int]]:
    """Parse record by record so each answer keeps its position; also the skipped positions."""
    parsed, skipped = Parsed(), []
    for i, (rec, malformed) in enumerate(records):
        if malformed is not None:
            parsed.items.append(Item(i, reason="malformed_json", detail=malformed))
            continue
        if not isinstance(rec, dict):
            parsed.items.append(Item(i, raw=rec if isinstance(rec, (str, int, float)) else None,
                                     reason="not_an_object", detail="a record must be a JSON object"))
            continue
        r = normalize("litellm", rec)
        if r.events:
            parsed.items.append(Item(i, event=r.events[0], raw=rec))
        elif r.rejects:
            parsed.items.append(Item(i, raw=r.rejects[0].payload or None, reason=r.rejects[0].reason,
                                     detail=r.rejects[0].detail))
        else:
            skipped.append(i)
    return parsed, skipped


@router.post("/litellm", openapi_extra=_LITELLM_BODY,
             summary="LiteLLM generic API logger: StandardLoggingPayload object, array or JSON lines",
             responses={200: {"description": "per-record result"}, 400: {"description": "unreadable body"},
                        413: {"description": "too large"}, 415: {"description": "unsupported media type"},
                        422: {"description": "every record was rejected"}})
async def post_litellm(request: Request, who: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    settings = rt.settings
    mt = _media_type(request, (JSON, *NDJSON), "StandardLoggingPayload JSON")
    records = _records(await read_body(request, settings.api.max_body_bytes), mt in NDJSON)
    if len(records) > settings.api.max_events_per_request:
        raise BodyError(413, "too_many_events", f"{len(records)} records in one request; "
                                                f"the limit is {settings.api.max_events_per_request}")
    parsed, skipped = litellm_items(records)
    result = await _ingest(request, rt, parsed, f"litellm:{who.name}")
    result["results"] += [{"index": i, "status": "skipped"} for i in skipped]
    result["results"].sort(key=lambda r: r["index"])
    status = 422 if parsed.items and result["rejected"] == len(parsed.items) else 200
    return JSONResponse(result, status_code=status)
