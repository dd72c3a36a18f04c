"""Usage from other sources' own formats, through the pure parsers in connectors/:

    POST /v1/traces    OTLP/HTTP traces (ExportTraceServiceRequest) with gen_ai.* span attributes:
                       binary protobuf (application/x-protobuf, the SDK exporters' default) or
                       OTLP/JSON (application/json), each plain or Content-Encoding gzip / deflate
    POST /v1/litellm   LiteLLM StandardLoggingPayload (generic API logger): one object, a JSON
                       array, or JSON lines

Both run on the embedded pipeline thread like POST /v1/events (answered after the flush, rejects
go to dead_letters). /v1/traces answers as OTLP/HTTP does (costwarden/api/otlp_http.py), in the
request's encoding: 200 with an empty ExportTraceServiceResponse (`{}` in JSON) when every span
with usage was taken, with partial_success {rejected_spans: N, error_message} otherwise; errors as
a google.rpc.Status. Spans without gen_ai usage (HTTP, DB ... spans) are skipped, not rejected.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from costwarden.api import otlp_http
from costwarden.api.auth import Principal
from costwarden.api.deps import need, runtime
from costwarden.api.ingest import BodyError, Item, Parsed, decode
from costwarden.api.routes_events import read_body
from costwarden.connectors import normalize, otlp_proto
from costwarden.connectors.base import loads
from costwarden.connectors.otlp import OtlpMapping
from costwarden.errors import ConfigError
from costwarden.money import from_nanos

router = APIRouter(prefix="/v1", tags=["sources"])

JSON = "application/json"
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines")

_OTLP_BODY = {"requestBody": {"required": True, "content": {
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                          "description": "OTLP ExportTraceServiceRequest (binary protobuf)"}},
    JSON: {"schema": {"type": "object", "description": "OTLP ExportTraceServiceRequest (OTLP/JSON encoding)",
                      "required": ["resourceSpans"],
                      "properties": {"resourceSpans": {"type": "array", "items": {"type": "object"}}}}}}},
    "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                    "schema": {"type": "string", "enum": ["gzip", "deflate", "identity"]}}]}
# bodies larger than this are decoded off the event loop (decompression, protobuf, JSON)
_INLINE_DECODE_BYTES = 64 * 1024
_LITELLM_RECORD = {"type": "object", "description": "LiteLLM StandardLoggingPayload"}
_LITELLM_BODY = {"requestBody": {"required": True, "content": {
    JSON: {"schema": {"oneOf": [_LITELLM_RECORD, {"type": "array", "items": _LITELLM_RECORD}]}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "one StandardLoggingPayload per line"}}}}}


def _media_type(request: Request, allowed: tuple[str, ...], what: str) -> str:
    mt = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if not mt:
        return JSON
    if mt not in allowed:
        raise BodyError(415, "unsupported_media_type", f"{mt!r}: send {what} as {' or '.join(allowed)}")
    return mt


def _items(result, index_base: int = 0) -> list[Item]:
    """ParseResult -> the runtime's items (events first, then rejects with content-free payloads).
    An event's raw form is the canonical event: what the distributed runtime produces to the raw
    topic for the workers to parse (the embedded one takes the event itself)."""
    items = [Item(index_base + n, event=e, raw=e.model_dump(mode="json", exclude_none=True))
             for n, e in enumerate(result.events)]
    items += [Item(index_base + len(items) + n, raw=r.payload or None, reason=r.reason, detail=r.detail)
              for n, r in enumerate(result.rejects)]
    return items


async def _ingest(request: Request, rt, parsed: Parsed, source: str) -> dict:
    result = await rt.ingest(parsed, source)
    m = request.app.state.metrics.events
    for k in ("accepted", "duplicates", "rejected"):
        m.labels(k).inc(result[k])
    cost = result.pop("cost_nanos")  # None in distributed mode: the workers price the events
    result["cost_usd"] = str(from_nanos(cost)) if cost is not None else None
    return result


def otlp_mapping(settings) -> OtlpMapping:
    """The attribution mapping of OTLP spans: `connectors.sources.otlp.options.mapping` if set
    (OtlpMapping fields), else the parser's defaults."""
    src = settings.connectors.sources.get("otlp")
    opts = (src.options.get("mapping") if src is not None else None) or {}
    return OtlpMapping(**opts) if isinstance(opts, dict) else OtlpMapping()


@router.post("/traces", openapi_extra=_OTLP_BODY,
             summary="OTLP/HTTP traces (protobuf or JSON, gzip / deflate): gen_ai spans become usage",
             responses={200: {"description": "ExportTraceServiceResponse in the request's encoding "
                                             "(partialSuccess when spans were rejected)",
                              "content": {"application/x-protobuf": {"schema": {"type": "string",
                                                                                "format": "binary"}}}},
                        400: {"description": "unreadable body (google.rpc.Status)"},
                        413: {"description": "too large, also once inflated"},
                        415: {"description": "a media type or Content-Encoding other than those listed"}})
async def post_traces(request: Request, who: Principal = Depends(need("usage:write")), rt=Depends(runtime)):
    settings = rt.settings
    enc = otlp_http.Encoding.of(request)  # 415 for another type: answered in our JSON (theirs is unknown)
    try:
        codings = otlp_http.content_codings(request)
        body = await read_body(request, settings.api.max_body_bytes)
        try:
            mapping = otlp_mapping(settings)
        except TypeError as e:
            raise ConfigError(f"connectors.sources.otlp.options.mapping: {e}") from None
        args = (body, codings, enc, settings.api.max_body_bytes, mapping)
        result = await run_in_threadpool(_traces, *args) if len(body) > _INLINE_DECODE_BYTES else _traces(*args)
        if len(result.events) + len(result.rejects) > settings.api.max_events_per_request:
            raise BodyError(413, "too_many_events", f"{len(result.events)} gen_ai spans in one request; "
                                                    f"the limit is {settings.api.max_events_per_request}")
    except BodyError as e:
        return enc.error(e)
    parsed = Parsed(_items(result))
    if parsed.items:
        await _ingest(request, rt, parsed, f"otlp:{who.name}")
    if not result.rejects:
        return enc.success()
    reasons = "; ".join(f"{r.reason}: {r.detail}" for r in result.rejects[:5])
    more = f" (and {len(result.rejects) - 5} more)" if len(result.rejects) > 5 else ""
    return enc.success(len(result.rejects), f"{reasons}{more}"[:2000])


def _traces(body: bytes, codings: list[str], enc: otlp_http.Encoding, limit: int, mapping: OtlpMapping):
    """The request body -> the parsed spans of its ExportTraceServiceRequest (BodyError if unreadable).
    Both encodings are parsed in the OTLP/JSON form (connectors/otlp_proto.py)."""
    body = otlp_http.decompress(body, codings, limit)
    if enc.protobuf:
        try:
            doc = otlp_proto.decode(body)  # empty bytes: an empty request, a success (OTLP)
        except ValueError as e:
            raise BodyError(400, "malformed_protobuf", str(e)) from None
    else:
        doc = decode(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            raise BodyError(400, "not_an_object", "expected an ExportTraceServiceRequest: an object with a "
                                                  "resourceSpans array")
    return normalize("otlp", doc, mapping=mapping)


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
