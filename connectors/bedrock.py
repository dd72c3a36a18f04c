"""AWS Bedrock model invocation logs (CloudWatch Logs or S3, JSON lines).

Accepts one record, a JSON array, JSON lines, or a CloudWatch Logs subscription envelope
(`{"logEvents": [{"message": "<record JSON>"}, ...]}`, already un-gzipped).
inputBodyJson / outputBodyJson hold prompt and response content: they are deleted from every
record before anything else looks at it, and never reach an event or a reject.

    input       = input.inputTokenCount (uncached: cache counts are reported beside it)
    cache_read  = input.cacheReadInputTokenCount
    cache_write = input.cacheWriteInputTokenCount
    output      = output.outputTokenCount
A record with `errorCode` may lack counts (then 0); otherwise input and output counts are required.
modelId is kept as given (inference-profile prefixes such as `us.` included); an ARN becomes its
resource id (the part after the last "/").
"""
from __future__ import annotations

from typing import Any

from costwarden.events import Attribution, Tokens, UsageEvent

from .base import (ParseResult, add_reject, as_dict, bad, count, guard, load_records, loads, native_id, opt_str,
                   parse_time, strip_content, tag_value)

SOURCE = "bedrock-log"
PROVIDER = "aws.bedrock"


def drop_bodies(record: Any) -> Any:
    """A copy of the record without inputBodyJson / outputBodyJson (nor any other content field).
    The caller's object is left untouched; everything downstream sees only the copy."""
    return strip_content(record)


def parse(payload: Any, **_: Any) -> ParseResult:
    result = ParseResult()
    records = load_records(payload, result)
    flat: list[Any] = []
    for rec in records:
        if isinstance(rec, dict) and isinstance(rec.get("logEvents"), list):
            for le in rec["logEvents"]:
                msg = le.get("message") if isinstance(le, dict) else None
                try:
                    flat.append(loads(msg) if isinstance(msg, (str, bytes)) else msg)
                except ValueError:
                    add_reject(result, "malformed_json", "CloudWatch logEvents[].message is not JSON")
        else:
            flat.append(rec)
    for rec in flat:
        clean = drop_bodies(rec)
        guard(result, clean, lambda clean=clean: _event(clean))
    return result


def _event(rec: Any) -> UsageEvent:
    if not isinstance(rec, dict):
        raise bad("not_an_object", "invocation log record must be an object")
    if rec.get("schemaType") not in (None, "ModelInvocationLog"):
        raise bad("unsupported", f"schemaType {str(rec.get('schemaType'))[:60]!r}")
    inp = as_dict(rec.get("input"), "input")
    out = as_dict(rec.get("output"), "output")
    required = rec.get("errorCode") is None
    model = opt_str(rec, "modelId") or ""
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    tags = {}
    for k, v in as_dict(rec.get("requestMetadata"), "requestMetadata").items():
        tv = tag_value(v)
        if tv is not None:
            tags[str(k)] = tv
    for key, tag in (("accountId", "aws.account_id"), ("region", "aws.region")):
        if opt_str(rec, key):
            tags.setdefault(tag, opt_str(rec, key))
    identity = as_dict(rec.get("identity"), "identity")
    operation = "embeddings" if "embed" in model.lower() else "chat"
    return UsageEvent(
        event_id=native_id(SOURCE, rec.get("requestId")),
        occurred_at=parse_time(rec.get("timestamp"), "timestamp"), source=SOURCE, provider=PROVIDER,
        model=model, operation=operation, requests=1,
        tokens=Tokens(input=count(inp, "inputTokenCount", required=required, name="input.inputTokenCount"),
                      cache_read=count(inp, "cacheReadInputTokenCount", name="input.cacheReadInputTokenCount"),
                      cache_write=count(inp, "cacheWriteInputTokenCount", name="input.cacheWriteInputTokenCount"),
                      output=count(out, "outputTokenCount", required=required and operation == "chat",
                                   name="output.outputTokenCount")),
        attribution=Attribution(service_account=opt_str(identity, "arn", 256), tags=tags),
    )
