"""OpenTelemetry GenAI spans in OTLP/HTTP JSON (resourceSpans[].scopeSpans[].spans[]); binary OTLP
(protobuf) is turned into this form by connectors/otlp_proto.py.

gen_ai.usage.input_tokens INCLUDES cache reads and cache creation (semconv SHOULD), so
    input       = gen_ai.usage.input_tokens - cache_read.input_tokens - cache_creation.input_tokens
    cache_read  = gen_ai.usage.cache_read.input_tokens
    cache_write = gen_ai.usage.cache_creation.input_tokens
    output      = gen_ai.usage.output_tokens; reasoning = gen_ai.usage.reasoning.output_tokens
    input_audio = llm.token_count.prompt_details.audio (OpenInference; inside input_tokens, taken out)
    output_audio = llm.token_count.completion_details.audio (inside output_tokens, taken out)
For instrumentations that report input without cache, set OtlpMapping(input_includes_cache=False).
Spans without gen_ai usage attributes are skipped (not rejected): most spans of a trace are not
model calls. Event id: "otlp:<traceId>:<spanId>" with the ids in lowercase (OTLP/JSON ids are
case-insensitive hex; protobuf ids are bytes, written as lowercase hex), so a span counts once
whichever encoding or case carried it. Attribution attributes are looked up in the
span first, then its resource, by the names configured in OtlpMapping.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from costwarden.events import Attribution, Tokens, UsageEvent

from .base import FAILED, ParseResult, add_reject, bad, guard, load_into, parse_time, tag_value, tier, to_count

SOURCE = "otlp"
_USAGE_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
# Older gen_ai.system values -> gen_ai.provider.name values.
_OLD_SYSTEMS = {"az.ai.openai": "azure.ai.openai", "az.ai.inference": "azure.ai.inference",
                "vertex_ai": "gcp.vertex_ai", "gemini": "gcp.gemini", "mistralai": "mistral_ai",
                "bedrock": "aws.bedrock"}
_TIER_KEYS = ("openai.response.service_tier", "gen_ai.openai.response.service_tier",
              "openai.request.service_tier", "gen_ai.openai.request.service_tier")


@dataclass
class OtlpMapping:
    """Attribute names (first found wins; span before resource) for each attribution field."""

    team: list[str] = field(default_factory=lambda: ["app.team", "team"])
    workflow: list[str] = field(default_factory=lambda: ["gen_ai.workflow.name", "gen_ai.agent.name"])
    cost_center: list[str] = field(default_factory=lambda: ["app.cost_center", "cost_center"])
    api_key_id: list[str] = field(default_factory=lambda: ["app.api_key_id"])
    project_id: list[str] = field(default_factory=lambda: ["app.project_id"])
    workspace_id: list[str] = field(default_factory=list)
    user_id: list[str] = field(default_factory=lambda: ["enduser.id", "user.id"])
    service_account: list[str] = field(default_factory=lambda: ["service.name"])
    extra_tags: dict[str, list[str]] = field(default_factory=dict)
    input_includes_cache: bool = True


def attr_value(v: Any) -> Any:
    """Decode an OTLP AnyValue (intValue is a decimal string in JSON)."""
    if not isinstance(v, dict):
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return v["intValue"]
    if "doubleValue" in v:
        return v["doubleValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v and isinstance(v["arrayValue"], dict):
        return [attr_value(x) for x in v["arrayValue"].get("values") or []]
    return None


def attrs(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    items = obj.get("attributes") if isinstance(obj, dict) else None
    for a in items if isinstance(items, list) else []:
        if isinstance(a, dict) and isinstance(a.get("key"), str):
            out[a["key"]] = attr_value(a.get("value"))
    return out


def parse(payload: Any, *, mapping: OtlpMapping | None = None, **_: Any) -> ParseResult:
    result = ParseResult()
    mapping = mapping or OtlpMapping()
    data = load_into(payload, result)
    if data is FAILED:
        return result
    if not isinstance(data, dict) or not isinstance(data.get("resourceSpans"), list):
        add_reject(result, "not_an_object", "expected an object with a resourceSpans list", data)
        return result
    for rs in data["resourceSpans"]:
        if not isinstance(rs, dict):
            add_reject(result, "not_an_object", "resourceSpans[] must be an object", rs)
            continue
        res_attrs = attrs(rs.get("resource"))
        for ss in rs.get("scopeSpans") or []:
            spans = ss.get("spans") if isinstance(ss, dict) else None
            if not isinstance(spans, list):
                add_reject(result, "not_an_object", "scopeSpans[].spans must be a list", ss)
                continue
            for span in spans:
                span_attrs = attrs(span)
                if not any(k in span_attrs for k in _USAGE_KEYS):
                    continue
                guard(result, _span_fragment(span),
                      lambda span=span, a=span_attrs: _event(span, a, res_attrs, mapping))
    return result


_FRAGMENT_ATTRS = ("gen_ai.provider.name", "gen_ai.system", "gen_ai.operation.name", "gen_ai.request.model",
                   "gen_ai.response.model", "gen_ai.response.id")


def _span_fragment(span: Any) -> Any:
    """What a reject may show of a span: ids, time and the usage attributes (an allow-list:
    gen_ai.input.messages, system instructions and the like never appear)."""
    if not isinstance(span, dict):
        return span
    frag = {k: span.get(k) for k in ("traceId", "spanId", "name", "startTimeUnixNano") if k in span}
    frag["attributes"] = {k: v for k, v in attrs(span).items()
                          if k in _FRAGMENT_ATTRS or k.startswith("gen_ai.usage.")}
    return frag


def _event(span: Any, a: dict[str, Any], res: dict[str, Any], m: OtlpMapping) -> UsageEvent:
    if not isinstance(span, dict):
        raise bad("not_an_object", "span must be an object")
    trace_id, span_id = span.get("traceId"), span.get("spanId")
    if not (isinstance(trace_id, str) and trace_id and isinstance(span_id, str) and span_id):
        raise bad("missing_field", "traceId and spanId are required")
    if len(trace_id) > 64 or len(span_id) > 32:
        raise bad("invalid_field", "traceId/spanId too long")
    trace_id, span_id = _id_case(trace_id), _id_case(span_id)
    provider = a.get("gen_ai.provider.name") or a.get("gen_ai.system") or res.get("gen_ai.provider.name")
    if not isinstance(provider, str) or not provider:
        raise bad("missing_field", "gen_ai.provider.name (or gen_ai.system) is required")
    provider = _OLD_SYSTEMS.get(provider.lower(), provider.lower())
    total_in = _attr_count(a, "gen_ai.usage.input_tokens")
    cache_read = _attr_count(a, "gen_ai.usage.cache_read.input_tokens")
    cache_write = _attr_count(a, "gen_ai.usage.cache_creation.input_tokens")
    audio_in = _attr_count(a, "llm.token_count.prompt_details.audio")
    audio_out = _attr_count(a, "llm.token_count.completion_details.audio")
    uncached = (total_in - cache_read - cache_write if m.input_includes_cache else total_in) - audio_in
    if uncached < 0:
        raise bad("inconsistent", f"cache_read {cache_read} + cache_creation {cache_write} + audio {audio_in} exceed "
                                  f"gen_ai.usage.input_tokens {total_in}")
    output = _attr_count(a, "gen_ai.usage.output_tokens")
    reasoning = _attr_count(a, "gen_ai.usage.reasoning.output_tokens")
    if reasoning + audio_out > output:
        raise bad("inconsistent", f"reasoning {reasoning} + audio {audio_out} exceed gen_ai.usage.output_tokens {output}")
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or ""
    operation = a.get("gen_ai.operation.name") or "chat"
    service_tier = next((a[k] for k in _TIER_KEYS if a.get(k) is not None), None)
    return UsageEvent(
        event_id=f"{SOURCE}:{trace_id}:{span_id}",
        occurred_at=parse_time(span.get("startTimeUnixNano"), "startTimeUnixNano"),
        source=SOURCE, provider=provider, model=str(model), operation=str(operation), requests=1,
        service_tier=tier(service_tier), attribution=_attribution(a, res, m, trace_id),
        tokens=Tokens(input=uncached, cache_read=cache_read, cache_write=cache_write, output=output - audio_out,
                      reasoning=reasoning, input_audio=audio_in, output_audio=audio_out),
    )


def _id_case(v: str) -> str:
    """Hex ids are case-insensitive: one case, so JSON and protobuf senders give one event id."""
    return v.lower() if v.isascii() else v


def _attr_count(a: dict[str, Any], key: str) -> int:
    return to_count(a.get(key), key)  # keys contain dots: no path lookup


def _lookup(names: list[str], a: dict[str, Any], res: dict[str, Any]) -> str | None:
    for scope in (a, res):
        for n in names:
            v = tag_value(scope.get(n))
            if v:
                return v[:256]
    return None


def _attribution(a: dict[str, Any], res: dict[str, Any], m: OtlpMapping, trace_id: str) -> Attribution:
    tags = {}
    for tag, names in {"team": m.team, "workflow": m.workflow, "cost_center": m.cost_center, **m.extra_tags}.items():
        v = _lookup(names, a, res)
        if v:
            tags[tag] = v
    return Attribution(api_key_id=_lookup(m.api_key_id, a, res), project_id=_lookup(m.project_id, a, res),
                       workspace_id=_lookup(m.workspace_id, a, res), user_id=_lookup(m.user_id, a, res),
                       service_account=_lookup(m.service_account, a, res), trace_id=trace_id, tags=tags)
