"""Google Gemini API and Vertex AI: `usageMetadata` of generateContent responses.

    input       = promptTokenCount - cachedContentTokenCount + toolUsePromptTokenCount
    cache_read  = cachedContentTokenCount
    output      = candidatesTokenCount + thoughtsTokenCount (thoughts are NOT inside candidates)
    reasoning   = thoughtsTokenCount
    input_audio / input_image = the AUDIO / IMAGE entries of promptTokensDetails less those of
                  cacheTokensDetails (taken out of input; cached tokens stay cache_read)
    output_audio / output_image = the AUDIO / IMAGE entries of candidatesTokensDetails (out of output)
Zero fields are omitted by the API, so an absent count is 0 here; a response without
usageMetadata is rejected. When totalTokenCount is present it must equal
prompt + candidates + toolUsePrompt + thoughts, else the record is rejected ("inconsistent"):
a mismatch means we would mis-price it.
trafficType: ON_DEMAND_FLEX -> flex, ON_DEMAND_PRIORITY -> priority, others standard;
PROVISIONED_THROUGHPUT additionally gets tag "gcp.traffic_type" (paid by reservation, not per token).

Accepts a response, a bare usageMetadata, a list / JSON lines of responses, Vertex batch
prediction lines ({"response": {...}}), and snake_case keys (python-genai model_dump).
With stream=True a list is the chunks of ONE streamed response: the last usageMetadata wins.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from costwarden.events import Attribution, ServiceTier, Tokens, UsageEvent

from .base import ParseResult, Reject, bad, count, guard, load_records, native_id, opt_str, parse_time, tier

SOURCE = "gemini"
PROVIDERS = ("gcp.gemini", "gcp.vertex_ai")
_TRAFFIC = {"ON_DEMAND_FLEX": ServiceTier.flex, "ON_DEMAND_PRIORITY": ServiceTier.priority}
_SNAKE = re.compile(r"_([a-z])")


def _camel(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(_SNAKE.sub(lambda m: m.group(1).upper(), k) if isinstance(k, str) else k): _camel(v)
                for k, v in obj.items() if k not in ("candidates", "contents", "request")}
    if isinstance(obj, list):
        return [_camel(v) for v in obj]
    return obj


def parse(payload: Any, *, provider: str = "gcp.gemini", stream: bool = False, event_id: str | None = None,
          occurred_at: Any = None, model: str | None = None, attribution: Attribution | None = None,
          service_tier: str | None = None, source: str = SOURCE, **_: Any) -> ParseResult:
    result = ParseResult()
    if provider not in PROVIDERS:
        result.rejects.append(Reject("invalid_field", f"provider must be one of {PROVIDERS}, got {str(provider)[:40]!r}"))
        return result
    records = [_camel(r) for r in load_records(payload, result)]
    if stream and records:
        with_usage = [r for r in records if isinstance(r, dict) and isinstance(r.get("usageMetadata"), dict)]
        merged = dict(records[0]) if isinstance(records[0], dict) else {}
        if with_usage:
            merged.update(with_usage[-1])
        records = [merged]
    for rec in records:
        if isinstance(rec, dict) and isinstance(rec.get("response"), dict):
            rec = rec["response"]
        guard(result, rec, lambda rec=rec: _event(rec, provider, event_id if len(records) == 1 else None,
                                                  occurred_at, model, attribution, service_tier, source))
    return result


def _event(rec: Any, provider: str, event_id: str | None, occurred_at: Any, model: str | None,
           attribution: Attribution | None, service_tier: str | None, source: str) -> UsageEvent:
    if not isinstance(rec, dict):
        raise bad("not_an_object", "response must be an object")
    um = rec.get("usageMetadata") if "usageMetadata" in rec else (rec if "promptTokenCount" in rec else None)
    if not isinstance(um, dict):
        raise bad("missing_field", "usageMetadata is required")
    prompt = count(um, "promptTokenCount")
    cached = count(um, "cachedContentTokenCount")
    tool = count(um, "toolUsePromptTokenCount")
    cand = count(um, "candidatesTokenCount")
    thoughts = count(um, "thoughtsTokenCount")
    if cached > prompt:
        raise bad("inconsistent", f"cachedContentTokenCount {cached} exceeds promptTokenCount {prompt}")
    audio_in = _modality(um, "promptTokensDetails", "AUDIO") - _modality(um, "cacheTokensDetails", "AUDIO")
    image_in = _modality(um, "promptTokensDetails", "IMAGE") - _modality(um, "cacheTokensDetails", "IMAGE")
    audio_out, image_out = (_modality(um, "candidatesTokensDetails", m) for m in ("AUDIO", "IMAGE"))
    if audio_in < 0 or image_in < 0 or cached + audio_in + image_in > prompt:
        raise bad("inconsistent", "promptTokensDetails / cacheTokensDetails do not add up to promptTokenCount")
    if audio_out + image_out > cand:
        raise bad("inconsistent", f"candidatesTokensDetails audio {audio_out} + image {image_out} exceed "
                                  f"candidatesTokenCount {cand}")
    if um.get("totalTokenCount") is not None:
        total = count(um, "totalTokenCount")
        if total != prompt + cand + tool + thoughts:
            raise bad("inconsistent", f"totalTokenCount {total} != prompt {prompt} + candidates {cand} + "
                                      f"toolUsePrompt {tool} + thoughts {thoughts}")
    traffic = um.get("trafficType")
    tags = dict(attribution.tags) if attribution else {}
    if traffic == "PROVISIONED_THROUGHPUT":
        tags["gcp.traffic_type"] = traffic
    if service_tier is not None:
        st = tier(service_tier)
    elif traffic is None or isinstance(traffic, str):
        st = _TRAFFIC.get(traffic or "", ServiceTier.standard)
    else:
        raise bad("invalid_field", "trafficType must be a string")
    when = occurred_at if occurred_at is not None else rec.get("createTime")
    if when is None:
        raise bad("missing_field", "occurred_at is required (createTime absent)")
    base_attr = attribution or Attribution()
    return UsageEvent(
        event_id=event_id or native_id(source, rec.get("responseId")),
        occurred_at=when if isinstance(when, datetime) else parse_time(when, "createTime"),
        source=source, provider=provider, model=model or opt_str(rec, "modelVersion") or "", operation="chat",
        requests=1, service_tier=st,
        tokens=Tokens(input=prompt - cached - audio_in - image_in + tool, cache_read=cached,
                      output=cand - audio_out - image_out + thoughts, reasoning=thoughts, input_audio=audio_in,
                      input_image=image_in, output_audio=audio_out, output_image=image_out),
        attribution=base_attr.model_copy(update={"tags": tags}),
    )


def _modality(um: dict, key: str, modality: str) -> int:
    """The tokenCount of `modality` in a ModalityTokenCount list (0 when absent)."""
    items = um.get(key)
    if items is None:
        return 0
    if not isinstance(items, list):
        raise bad("invalid_field", f"{key} must be a list")
    n = 0
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad("invalid_field", f"{key}[{i}] must be an object")
        if item.get("modality") == modality:
            n += count(item, "tokenCount", name=f"{key}[{i}].tokenCount")
    return n
