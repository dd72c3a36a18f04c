"""Anthropic: Admin usage report, cost report, per-message usage and streamed message events.

Anthropic never counts cached tokens inside input:
    input          = uncached_input_tokens (report) / input_tokens (message)
    cache_read     = cache_read_input_tokens
    cache_write    = cache_creation.ephemeral_5m_input_tokens (all of cache_creation_input_tokens
                     when the split is absent: the default TTL is 5 minutes)
    cache_write_1h = cache_creation.ephemeral_1h_input_tokens
    output         = output_tokens (thinking included)
The usage report has no request count (requests = 0). Null api_key_id means Console usage and
null workspace_id the default workspace, but only when the report was grouped by that field:
pass `group_by=[...]` and they become CONSOLE_KEY / DEFAULT_WORKSPACE; otherwise null stays null.
`context_window` ("0-200k", "200k-1M") is kept as tag "context_window" (long-context pricing).
Cost report amounts are decimal strings in CENTS: "123.45" -> Decimal("1.2345") USD exactly.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from costwarden.errors import InvalidEventError
from costwarden.events import Attribution, Tokens, UsageEvent

from .base import (FAILED, ParseResult, ProviderCostLine, add_reject, as_dict, bad, count, guard, load_into, loads,
                   money, native_id, need_list, opt_str, parse_time, stable_id, tier)

PROVIDER = "anthropic"
USAGE_SOURCE = "anthropic-usage"
MESSAGE_SOURCE = "anthropic-message"
CONSOLE_KEY = "console"
DEFAULT_WORKSPACE = "default"
GROUP_FIELDS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window")


def _buckets(payload: Any, result: ParseResult) -> Iterable[tuple[dict, Any]]:
    data = load_into(payload, result)
    if data is FAILED:
        return
    pages = data if isinstance(data, list) else [data]
    for page in pages:
        if not (isinstance(page, dict) and isinstance(page.get("data"), list)):
            add_reject(result, "not_an_object", "expected a page with a data list", page)
            continue
        for bucket in page["data"]:
            if not isinstance(bucket, dict):
                add_reject(result, "not_an_object", "bucket must be an object", bucket)
                continue
            try:
                need_list(bucket, "results")
                parse_time(bucket.get("starting_at"), "starting_at")
            except InvalidEventError as e:
                add_reject(result, e.reason, e.detail, {k: v for k, v in bucket.items() if k != "results"})
                continue
            for row in bucket["results"]:
                yield row, bucket["starting_at"]


def parse_usage(payload: Any, *, group_by: Iterable[str] = (), **_: Any) -> ParseResult:
    result = ParseResult()
    grouped = set(group_by)
    for row, start in _buckets(payload, result):
        guard(result, row, lambda row=row, start=start: _usage_event(row, start, grouped))
    return result


def _usage_event(row: Any, start: str, grouped: set[str]) -> UsageEvent:
    if not isinstance(row, dict):
        raise bad("not_an_object", "usage result must be an object")
    creation = as_dict(row.get("cache_creation"), "cache_creation")
    key = opt_str(row, "api_key_id")
    workspace = opt_str(row, "workspace_id")
    if key is None and "api_key_id" in grouped:
        key = CONSOLE_KEY
    if workspace is None and "workspace_id" in grouped:
        workspace = DEFAULT_WORKSPACE
    tags = {}
    window = opt_str(row, "context_window", 64)
    if window:
        tags["context_window"] = window
    return UsageEvent(
        event_id=stable_id(USAGE_SOURCE, start, *[row.get(f) for f in GROUP_FIELDS]),
        occurred_at=parse_time(start, "starting_at"), source=USAGE_SOURCE, provider=PROVIDER,
        model=opt_str(row, "model") or "", requests=0, service_tier=tier(row.get("service_tier")),
        tokens=Tokens(
            input=count(row, "uncached_input_tokens", required=True),
            cache_read=count(row, "cache_read_input_tokens"),
            cache_write=count(creation, "ephemeral_5m_input_tokens", name="cache_creation.ephemeral_5m_input_tokens"),
            cache_write_1h=count(creation, "ephemeral_1h_input_tokens", name="cache_creation.ephemeral_1h_input_tokens"),
            output=count(row, "output_tokens", required=True)),
        attribution=Attribution(api_key_id=key, workspace_id=workspace, tags=tags),
    )


def parse_cost_report(payload: Any, **_: Any) -> ParseResult:
    """Cost report -> ParseResult.cost_lines, amounts converted from cents to USD exactly."""
    result = ParseResult()
    for row, start in _buckets(payload, result):
        lines: list[ProviderCostLine] = []
        guard(result, row, lambda row=row, start=start: lines.append(_cost_line(row, start)))
        result.cost_lines += lines
    return result


def parse_costs(payload: Any, **kw: Any) -> list[ProviderCostLine]:
    """Cost lines only; use parse_cost_report (or normalize('anthropic-cost')) to see rejects too."""
    return parse_cost_report(payload, **kw).cost_lines


def _cost_line(row: Any, start: str) -> ProviderCostLine:
    if not isinstance(row, dict):
        raise bad("not_an_object", "cost result must be an object")
    cents = money(row.get("amount"), "amount", allow_negative=True)
    currency = row.get("currency") or "USD"
    if not isinstance(currency, str) or len(currency) != 3:
        raise bad("invalid_field", "currency must be a 3-letter code")
    model, token_type = opt_str(row, "model"), opt_str(row, "token_type")
    label = opt_str(row, "description", 512) or ", ".join(x for x in (model, token_type, opt_str(row, "cost_type")) if x)
    return ProviderCostLine(
        day=parse_time(start, "starting_at").date(), project_id=None, api_key_id=None, line_item=label,
        amount=cents / Decimal(100), currency=currency.upper(), source="anthropic-cost",
        workspace_id=opt_str(row, "workspace_id"), model=model, service_tier=opt_str(row, "service_tier"),
    )


# --- per message -----------------------------------------------------------------------------

def parse_message(payload: Any, *, occurred_at: Any = None, event_id: str | None = None,
                  model: str | None = None, attribution: Attribution | None = None,
                  source: str = MESSAGE_SOURCE, provider: str = PROVIDER, **_: Any) -> ParseResult:
    """A Message (or its bare `usage`), or a stream: a list of events or the SSE text.

    Streams: message_start carries the initial usage; each message_delta's usage is CUMULATIVE,
    so the last value of each field wins (never summed). `occurred_at` is required (messages
    carry no timestamp); `event_id` defaults to "anthropic-message:<message id>".
    """
    result = ParseResult()
    if isinstance(payload, (str, bytes)) and _looks_like_sse(payload):
        payload = _sse_events(payload, result)
    data = load_into(payload, result)
    if data is FAILED:
        return result
    guard(result, data, lambda: _message_event(data, occurred_at, event_id, model, attribution, source, provider))
    return result


def _looks_like_sse(payload: str | bytes) -> bool:
    head = payload[:200].lstrip()
    return head.startswith(b"event:" if isinstance(payload, bytes) else "event:") or \
        head.startswith(b"data:" if isinstance(payload, bytes) else "data:")


def _sse_events(payload: str | bytes, result: ParseResult) -> list[Any]:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("data:"):
            try:
                events.append(loads(line[5:].strip()))
            except ValueError:
                add_reject(result, "malformed_json", f"SSE data line {n} is not JSON")
    return events


def _message_event(data: Any, occurred_at: Any, event_id: str | None, model: str | None,
                   attribution: Attribution | None, source: str, provider: str) -> UsageEvent:
    if isinstance(data, list):
        msg, usage = _fold_stream(data)
    elif isinstance(data, dict):
        msg = data
        usage = as_dict(data.get("usage"), "usage") if "usage" in data else data
    else:
        raise bad("not_an_object", "message must be an object or a list of stream events")
    if not usage:
        raise bad("missing_field", "usage is required")
    if occurred_at is None:
        raise bad("missing_field", "occurred_at is required (messages carry no timestamp)")
    written = count(usage, "cache_creation_input_tokens")
    creation = as_dict(usage.get("cache_creation"), "cache_creation")
    if creation:
        w5 = count(creation, "ephemeral_5m_input_tokens", name="cache_creation.ephemeral_5m_input_tokens")
        w1h = count(creation, "ephemeral_1h_input_tokens", name="cache_creation.ephemeral_1h_input_tokens")
        if usage.get("cache_creation_input_tokens") is not None and w5 + w1h != written:
            raise bad("inconsistent", f"cache_creation split {w5}+{w1h} != cache_creation_input_tokens {written}")
    else:
        w5, w1h = written, 0
    return UsageEvent(
        event_id=event_id or native_id(source, msg.get("id")),
        occurred_at=occurred_at if isinstance(occurred_at, datetime) else parse_time(occurred_at, "occurred_at"),
        source=source, provider=provider, model=model or opt_str(msg, "model") or "", requests=1,
        service_tier=tier(usage.get("service_tier")),
        tokens=Tokens(input=count(usage, "input_tokens", required=True),
                      cache_read=count(usage, "cache_read_input_tokens"), cache_write=w5, cache_write_1h=w1h,
                      output=count(usage, "output_tokens", required=True)),
        attribution=attribution or Attribution(),
    )


def _fold_stream(events: list[Any]) -> tuple[dict, dict]:
    msg: dict = {}
    usage: dict = {}
    for ev in events:
        if not isinstance(ev, dict):
            raise bad("not_an_object", "stream event must be an object")
        kind = ev.get("type")
        if kind == "message_start":
            msg = as_dict(ev.get("message"), "message_start.message")
            usage = dict(as_dict(msg.get("usage"), "message_start.message.usage"))
        elif kind == "message_delta":
            for k, v in as_dict(ev.get("usage"), "message_delta.usage").items():
                if v is not None:
                    usage[k] = v  # cumulative: the latest value replaces, never adds
    if not msg:
        raise bad("missing_field", "stream has no message_start event")
    return msg, usage
