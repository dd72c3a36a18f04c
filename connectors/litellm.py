"""LiteLLM proxy StandardLoggingPayload (custom callback / generic API logger: one object,
a JSON array, or JSON lines).

prompt_tokens is OpenAI-style (cached and cache-written tokens inside, Anthropic too):
    cache_read     = usage_object.cache_read_input_tokens, else prompt_tokens_details.cached_tokens
    cache_write    = usage_object.cache_creation_input_tokens (5-minute part when
                     cache_creation_token_details splits it), cache_write_1h = its 1-hour part
    input          = prompt_tokens - cache_read - cache_write - cache_write_1h
    output         = completion_tokens; reasoning = completion_tokens_details.reasoning_tokens
    input_audio / input_image = prompt_tokens_details.audio_tokens / .image_tokens (out of input)
    output_audio / output_image = completion_tokens_details.audio_tokens / .image_tokens (out of output)
response_cost -> provider_cost (exact Decimal of the JSON number text, USD): LiteLLM's claim,
kept beside our own pricing. A LiteLLM cache hit (cache_hit: true) never reached the provider:
its tokens are zeroed and it carries tag "litellm.cache_hit". A failed call is still an event
(requests 1, usually zero tokens), tagged "litellm.status": "failure".
Attribution: request_tags "k:v" -> tag k=v (a bare "x" -> x="true"), spend_logs_metadata -> tags,
user_api_key_team_alias -> tag team (if not already set), user_api_key_hash -> api_key_id,
user_api_key_user_id -> user_id, end_user -> tag end_user, trace_id -> trace_id.
messages / response are content and are never read.
"""
from __future__ import annotations

from typing import Any

from costwarden.events import CONTENT_FIELDS, Attribution, ProviderCost, Tokens, UsageEvent

from .base import ParseResult, as_dict, bad, count, guard, load_records, money, native_id, opt_str, parse_time, tag_value
from .fields import COST_CAP

SOURCE = "litellm"
PROVIDER_NAMES = {
    "openai": "openai", "text-completion-openai": "openai", "anthropic": "anthropic",
    "bedrock": "aws.bedrock", "bedrock_converse": "aws.bedrock", "sagemaker": "aws.sagemaker",
    "vertex_ai": "gcp.vertex_ai", "vertex_ai_beta": "gcp.vertex_ai", "gemini": "gcp.gemini",
    "azure": "azure.ai.openai", "azure_text": "azure.ai.openai", "azure_ai": "azure.ai.inference",
    "mistral": "mistral_ai", "cohere": "cohere", "cohere_chat": "cohere", "groq": "groq",
    "deepseek": "deepseek", "perplexity": "perplexity", "xai": "x_ai", "watsonx": "ibm.watsonx.ai",
}
_OPERATIONS = {"embedding": "embeddings", "aembedding": "embeddings", "text_completion": "text_completion",
               "atext_completion": "text_completion", "image_generation": "image_generation",
               "aimage_generation": "image_generation"}


def provider_name(custom_llm_provider: Any) -> str:
    if not isinstance(custom_llm_provider, str) or not custom_llm_provider.strip():
        raise bad("missing_field", "custom_llm_provider is required")
    p = custom_llm_provider.strip().lower()
    return PROVIDER_NAMES.get(p, p)


def parse(payload: Any, **_: Any) -> ParseResult:
    result = ParseResult()
    for rec in load_records(payload, result):
        guard(result, rec, lambda rec=rec: _event(rec))
    return result


def _event(rec: Any) -> UsageEvent:
    if not isinstance(rec, dict):
        raise bad("not_an_object", "StandardLoggingPayload must be an object")
    meta = as_dict(rec.get("metadata"), "metadata")
    usage = as_dict(meta.get("usage_object"), "metadata.usage_object")
    prompt = count(rec, "prompt_tokens")
    completion = count(rec, "completion_tokens")
    if usage.get("cache_read_input_tokens") is not None:
        cache_read = count(usage, "cache_read_input_tokens", name="usage_object.cache_read_input_tokens")
    else:
        cache_read = count(usage, "prompt_tokens_details.cached_tokens",
                           name="usage_object.prompt_tokens_details.cached_tokens")
    written = count(usage, "cache_creation_input_tokens", name="usage_object.cache_creation_input_tokens")
    split = as_dict(usage.get("cache_creation_token_details"), "usage_object.cache_creation_token_details")
    w1h = count(split, "ephemeral_1h_input_tokens", name="cache_creation_token_details.ephemeral_1h_input_tokens")
    w5 = written - w1h
    if w5 < 0:
        raise bad("inconsistent", f"1-hour cache writes {w1h} exceed cache_creation_input_tokens {written}")
    audio_in, image_in, audio_out, image_out = (
        count(usage, f"{side}_tokens_details.{m}_tokens", name=f"usage_object.{side}_tokens_details.{m}_tokens")
        for side, m in (("prompt", "audio"), ("prompt", "image"), ("completion", "audio"), ("completion", "image")))
    uncached = prompt - cache_read - written - audio_in - image_in
    if uncached < 0:
        raise bad("inconsistent", f"cache_read {cache_read} + cache_creation {written} + audio {audio_in} + image {image_in} "
                                  f"exceed prompt_tokens {prompt}")
    reasoning = count(usage, "completion_tokens_details.reasoning_tokens",
                      name="usage_object.completion_tokens_details.reasoning_tokens")
    if reasoning + audio_out + image_out > completion:
        raise bad("inconsistent", f"reasoning {reasoning} + audio {audio_out} + image {image_out} tokens exceed "
                                  f"completion_tokens {completion}")
    tags = _tags(rec, meta)
    tokens = Tokens(input=uncached, cache_read=cache_read, cache_write=w5, cache_write_1h=w1h,
                    output=completion - audio_out - image_out, reasoning=reasoning, input_audio=audio_in,
                    input_image=image_in, output_audio=audio_out, output_image=image_out)
    if rec.get("cache_hit") is True:
        tags["litellm.cache_hit"] = "true"
        tokens = Tokens()
    cost = rec.get("response_cost")
    provider = provider_name(rec.get("custom_llm_provider"))
    model = opt_str(rec, "model") or ""
    prefix = f"{str(rec.get('custom_llm_provider')).lower()}/"
    if model.lower().startswith(prefix):
        model = model[len(prefix):]
    return UsageEvent(
        event_id=native_id(SOURCE, rec.get("id") or rec.get("litellm_call_id")),
        occurred_at=parse_time(rec.get("startTime"), "startTime"), source=SOURCE, provider=provider,
        model=model, operation=_OPERATIONS.get(str(rec.get("call_type") or ""), "chat"), requests=1,
        tokens=tokens,
        attribution=Attribution(api_key_id=opt_str(meta, "user_api_key_hash"),
                                user_id=opt_str(meta, "user_api_key_user_id"),
                                trace_id=opt_str(rec, "trace_id", 128), tags=tags),
        provider_cost=None if cost is None else ProviderCost(amount=money(cost, "response_cost", cap=COST_CAP),
                                                             currency="USD"),
    )


def _tags(rec: dict, meta: dict) -> dict[str, str]:
    tags: dict[str, str] = {}
    req_tags = rec.get("request_tags") or []
    if not isinstance(req_tags, list):
        raise bad("invalid_field", "request_tags must be a list")
    for t in req_tags:
        if isinstance(t, str) and t.strip():
            k, sep, v = t.partition(":")
            if k.strip().lower() not in CONTENT_FIELDS:
                tags[k.strip()] = v.strip() if sep else "true"
    for k, v in as_dict(meta.get("spend_logs_metadata"), "metadata.spend_logs_metadata").items():
        tv = tag_value(v)
        if tv is not None and str(k).lower() not in CONTENT_FIELDS:
            tags[str(k)] = tv
    alias = opt_str(meta, "user_api_key_team_alias")
    if alias:
        tags.setdefault("team", alias)
    end_user = tag_value(rec.get("end_user"))
    if end_user:
        tags.setdefault("end_user", end_user)
    if rec.get("status") == "failure":
        tags["litellm.status"] = "failure"
    return tags
