"""OpenAI: organisation Usage API pages, Costs API pages, and per-request `usage` objects.

Token accounting (OpenAI counts cached and cache-written tokens inside input_tokens):
    input       = input_uncached_tokens, or input_tokens - input_cached_tokens - input_cache_write_tokens
    cache_read  = input_cached_tokens
    cache_write = input_cache_write_tokens (newest schema; absent in older pages)
    output      = output_tokens (reasoning is inside; the Usage API does not split it out)
    input_audio = input_audio_tokens, output_audio = output_audio_tokens (the Usage API counts
                  them apart from the text input_tokens / output_tokens)
Per-request usage counts every modality inside prompt/completion (or input/output) tokens:
    input_audio / input_image = *_tokens_details.audio_tokens / .image_tokens, taken out of input;
    output_audio / output_image likewise out of output; an Images API response (gpt-image-1:
    `data` + usage.input_tokens_details.text_tokens) bills all its output tokens as image tokens.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from costwarden.errors import InvalidEventError
from costwarden.events import Attribution, ServiceTier, Tokens, UsageEvent

from .base import (FAILED, ParseResult, ProviderCostLine, add_reject, as_dict, bad, count, guard, load_into,
                   money, native_id, need_list, opt_str, parse_time, stable_id, tier)

PROVIDER = "openai"
USAGE_SOURCE = "openai-usage"
RESPONSE_SOURCE = "openai-response"
# Usage result object -> (operation, output_tokens required)
_RESULT_KINDS = {
    "organization.usage.completions.result": ("chat", True),
    "organization.usage.embeddings.result": ("embeddings", False),
}
GROUP_FIELDS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")


def _pages(payload: Any, result: ParseResult) -> list[Mapping[str, Any]]:
    data = load_into(payload, result)
    if data is FAILED:
        return []
    pages = data if isinstance(data, list) else [data]
    out = []
    for p in pages:
        if isinstance(p, dict) and isinstance(p.get("data"), list):
            out.append(p)
        else:
            add_reject(result, "not_an_object", "expected a page with a data list", p)
    return out


def _rows(payload: Any, result: ParseResult):
    """(row, raw start_time, start datetime) for every result of every valid bucket."""
    for page in _pages(payload, result):
        for bucket in page["data"]:
            if not isinstance(bucket, dict):
                add_reject(result, "not_an_object", "bucket must be an object", bucket)
                continue
            try:
                start = parse_time(bucket.get("start_time"), "start_time")
                rows = need_list(bucket, "results")
            except InvalidEventError as e:
                add_reject(result, e.reason, e.detail, {k: v for k, v in bucket.items() if k != "results"})
                continue
            for row in rows:
                yield row, bucket["start_time"], start


def parse_usage(payload: Any, **_: Any) -> ParseResult:
    """A Usage API page (or a list of pages) -> one event per bucket result; empty buckets -> nothing."""
    result = ParseResult()
    for row, raw_start, start in _rows(payload, result):
        guard(result, row, lambda row=row, s=start, raw=raw_start: _usage_event(row, s, raw))
    return result


def _usage_event(row: Any, start: datetime, raw_start: Any) -> UsageEvent:
    if not isinstance(row, dict):
        raise bad("not_an_object", "usage result must be an object")
    kind = row.get("object")
    if kind not in _RESULT_KINDS:
        raise bad("unsupported", f"usage result object {str(kind)[:80]!r} is not turned into events")
    operation, output_required = _RESULT_KINDS[kind]
    total_in = count(row, "input_tokens", required=True)
    cached = count(row, "input_cached_tokens")
    written = count(row, "input_cache_write_tokens")
    if row.get("input_uncached_tokens") is not None:
        uncached = count(row, "input_uncached_tokens")
        if uncached + cached + written != total_in:
            raise bad("inconsistent", f"input_uncached_tokens {uncached} + input_cached_tokens {cached} + "
                                      f"input_cache_write_tokens {written} != input_tokens {total_in}")
    else:
        uncached = total_in - cached - written
        if uncached < 0:
            raise bad("inconsistent", f"cached {cached} + cache writes {written} exceed input_tokens {total_in}")
    batch = row.get("batch")
    if batch is not None and not isinstance(batch, bool):
        raise bad("invalid_field", "batch must be a boolean")
    service_tier = ServiceTier.batch if batch else tier(row.get("service_tier"))
    model = opt_str(row, "model") or ""
    attribution = Attribution(project_id=opt_str(row, "project_id"), api_key_id=opt_str(row, "api_key_id"),
                              user_id=opt_str(row, "user_id"))
    groups = [kind] + [row.get(f) for f in GROUP_FIELDS]
    return UsageEvent(
        event_id=stable_id(USAGE_SOURCE, raw_start, *groups), occurred_at=start, source=USAGE_SOURCE,
        provider=PROVIDER, model=model, operation=operation,
        requests=count(row, "num_model_requests", required=True), service_tier=service_tier,
        tokens=Tokens(input=uncached, cache_read=cached, cache_write=written,
                      output=count(row, "output_tokens", required=output_required),
                      input_audio=count(row, "input_audio_tokens"), output_audio=count(row, "output_audio_tokens")),
        attribution=attribution,
    )


def parse_costs_result(payload: Any, **_: Any) -> ParseResult:
    """A Costs API page -> ParseResult with cost_lines (amount.value is dollars) and rejects."""
    result = ParseResult()
    for row, _raw, start in _rows(payload, result):
        lines: list[ProviderCostLine] = []
        guard(result, row, lambda row=row, s=start: lines.append(_cost_line(row, s)))
        result.cost_lines += lines
    return result


def parse_costs(payload: Any, **kw: Any) -> list[ProviderCostLine]:
    """Cost lines only; use parse_costs_result (or normalize('openai-costs')) to see rejects too."""
    return parse_costs_result(payload, **kw).cost_lines


def _cost_line(row: Any, start: datetime) -> ProviderCostLine:
    if not isinstance(row, dict):
        raise bad("not_an_object", "cost result must be an object")
    amount = as_dict(row.get("amount"), "amount")
    currency = amount.get("currency") or "usd"
    if not isinstance(currency, str) or len(currency) != 3:
        raise bad("invalid_field", "amount.currency must be a 3-letter code")
    quantity = row.get("quantity")
    return ProviderCostLine(
        day=start.date(), project_id=opt_str(row, "project_id"),
        api_key_id=opt_str(row, "api_key_id"), line_item=opt_str(row, "line_item", 512) or "",
        amount=money(amount.get("value"), "amount.value", allow_negative=True), currency=currency.upper(),
        source="openai-costs", quantity=None if quantity is None else money(quantity, "quantity"),
    )


def parse_response_usage(obj: Any, *, event_id: str | None = None, occurred_at: Any = None,
                         model: str | None = None, attribution: Attribution | None = None,
                         service_tier: str | None = None, source: str = RESPONSE_SOURCE,
                         provider: str = PROVIDER, **_: Any) -> ParseResult:
    """One Chat Completions / Responses / Embeddings response (or its bare `usage`) -> one event.

    Missing event_id / occurred_at / model are taken from the response's id / created(_at) / model.
    """
    result = ParseResult()
    data = load_into(obj, result)
    if data is FAILED:
        return result
    guard(result, data, lambda: _response_event(data, event_id, occurred_at, model, attribution,
                                                service_tier, source, provider))
    return result


def _response_event(data: Any, event_id: str | None, occurred_at: Any, model: str | None,
                    attribution: Attribution | None, service_tier: str | None, source: str,
                    provider: str) -> UsageEvent:
    if not isinstance(data, dict):
        raise bad("not_an_object", "response must be an object")
    usage = data.get("usage") if "usage" in data else data
    if not isinstance(usage, dict):
        raise bad("missing_field", "usage is required")
    if "prompt_tokens" in usage:  # Chat Completions / Embeddings
        pre_in, pre_out = "prompt_tokens", "completion_tokens"
        prompt = count(usage, "prompt_tokens", required=True)
        output = count(usage, "completion_tokens")
        operation = "chat" if "completion_tokens" in usage else "embeddings"
    else:  # Responses API, Images API
        pre_in, pre_out = "input_tokens", "output_tokens"
        prompt = count(usage, "input_tokens", required=True)
        output = count(usage, "output_tokens", required=True)
        operation = "chat"
    cached = count(usage, f"{pre_in}_details.cached_tokens")
    reasoning = count(usage, f"{pre_out}_details.reasoning_tokens")
    audio_in, image_in = count(usage, f"{pre_in}_details.audio_tokens"), count(usage, f"{pre_in}_details.image_tokens")
    audio_out, image_out = (count(usage, f"{pre_out}_details.audio_tokens"),
                            count(usage, f"{pre_out}_details.image_tokens"))
    if isinstance(data.get("data"), list) and isinstance(usage.get("input_tokens_details"), dict) \
            and "text_tokens" in usage["input_tokens_details"] and not audio_out and not image_out:
        image_out, operation = output, "image_generation"  # an Images API response: its output is images
    if cached + audio_in + image_in > prompt:
        raise bad("inconsistent", f"cached {cached} + audio {audio_in} + image {image_in} tokens exceed "
                                  f"prompt tokens {prompt}")
    if reasoning + audio_out + image_out > output:
        raise bad("inconsistent", f"reasoning {reasoning} + audio {audio_out} + image {image_out} tokens exceed "
                                  f"output tokens {output}")
    when = occurred_at if occurred_at is not None else data.get("created", data.get("created_at"))
    if not event_id:
        event_id = native_id(source, data.get("id"))
    return UsageEvent(
        event_id=event_id,
        occurred_at=when if isinstance(when, datetime) else parse_time(when, "created"),
        source=source, provider=provider, model=model or opt_str(data, "model") or "", operation=operation,
        requests=1, service_tier=tier(service_tier if service_tier is not None else data.get("service_tier")),
        tokens=Tokens(input=prompt - cached - audio_in - image_in, cache_read=cached,
                      output=output - audio_out - image_out, reasoning=reasoning, input_audio=audio_in,
                      output_audio=audio_out, input_image=image_in, output_image=image_out),
        attribution=attribution or Attribution(),
    )
