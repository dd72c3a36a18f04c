"""OpenTelemetry GenAI spans in binary OTLP (ExportTraceServiceRequest, `application/x-protobuf`):
what the OpenTelemetry SDKs' default exporter (http/protobuf) and the Collector's otlphttp exporter send.

The request is decoded with the `opentelemetry-proto` package and turned into the OTLP/JSON form
that connectors/otlp.py reads (the OTLP specification's JSON mapping: lowerCamelCase keys, trace
and span ids as lowercase hex, int64 as decimal strings), so both encodings go through one parser
and a span gives the same event, and the same event id `otlp:<traceId>:<spanId>`, whichever
encoding carried it: an exporter that switches encoding, or a span sent both ways, counts once.

Only what the parser reads is carried over (ids, name, start time, attributes), and only for
spans with a gen_ai.usage.* attribute: the others are skipped by the parser anyway. A double
attribute becomes a Decimal, as the JSON path reads it. A body that is not an
ExportTraceServiceRequest (truncated, bad wire types, invalid UTF-8 in a string, nested past the
decoder's depth limit) is one `malformed_protobuf` reject; an empty body is an empty request.
"""
from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .base import MAX_PAYLOAD_BYTES, ParseResult, Reject
from .otlp import _USAGE_KEYS, OtlpMapping
from .otlp import parse as parse_json_form

_USAGE = frozenset(_USAGE_KEYS)


def decode(body: bytes) -> dict[str, Any]:
    """Binary ExportTraceServiceRequest -> its OTLP/JSON form (the spans with gen_ai usage).
    Raises ValueError with a readable message when the bytes are not one."""
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RecursionError) as e:
        raise ValueError(f"not an ExportTraceServiceRequest: {str(e)[:200] or type(e).__name__}") from None
    return to_json_form(req)


def to_json_form(req: ExportTraceServiceRequest) -> dict[str, Any]:
    out = []
    for rs in req.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = [_span(s) for s in ss.spans if any(kv.key in _USAGE for kv in s.attributes)]
            if spans:
                scopes.append({"spans": spans})
        if scopes:
            out.append({"resource": {"attributes": _attributes(rs.resource.attributes)}, "scopeSpans": scopes})
    return {"resourceSpans": out}


def _span(s) -> dict[str, Any]:
    d: dict[str, Any] = {"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "name": s.name,
                         "attributes": _attributes(s.attributes)}
    if s.start_time_unix_nano:  # proto3 JSON leaves a zero (unset) time out: a missing_field reject
        d["startTimeUnixNano"] = str(s.start_time_unix_nano)
    return d


def _attributes(kvs) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _any_value(kv.value)} for kv in kvs]


def _any_value(v) -> dict[str, Any]:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": v.string_value}
    if kind == "int_value":
        return {"intValue": str(v.int_value)}
    if kind == "double_value":
        return {"doubleValue": Decimal(repr(v.double_value))}
    if kind == "bool_value":
        return {"boolValue": v.bool_value}
    if kind == "array_value":
        return {"arrayValue": {"values": [_any_value(x) for x in v.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(v.kvlist_value.values)}}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode()}
    return {}


def parse(payload: Any, *, mapping: OtlpMapping | None = None, **_: Any) -> ParseResult:
    """Binary OTLP traces -> events, exactly as connectors/otlp.py parses their JSON form."""
    if isinstance(payload, ExportTraceServiceRequest):
        return parse_json_form(to_json_form(payload), mapping=mapping)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return ParseResult(rejects=[Reject("not_an_object", f"expected protobuf bytes, got {type(payload).__name__}")])
    if len(payload) > MAX_PAYLOAD_BYTES:
        return ParseResult(rejects=[Reject("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")])
    try:
        doc = decode(bytes(payload))
    except ValueError as e:
        return ParseResult(rejects=[Reject("malformed_protobuf", str(e))])
    return parse_json_form(doc, mapping=mapping)
