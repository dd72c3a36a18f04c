"""The canonical usage event of one model call, built from the response the provider's client returned.

    from costwarden.sdk import usage_from_response
    resp = openai_client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    guard.report(usage_from_response(resp, workflow="support-bot"))     # or guard.report_response(resp, ...)

Accepted (the objects of the official Python clients, or their dict / JSON form):

    OpenAI      ChatCompletion, Response (Responses API), CreateEmbeddingResponse; the list of
                ChatCompletionChunk of a stream made with stream_options={"include_usage": True};
                a `response.completed` stream event            -> connectors/openai.parse_response_usage
    Anthropic   Message (also stream.get_final_message()); the list of raw stream events
                                                               -> connectors/anthropic.parse_message
    Gemini      google-genai GenerateContentResponse (its snake_case model_dump), the REST JSON
    Vertex AI   (camelCase); the list of chunks of one stream  -> connectors/gemini.parse

Which provider a response comes from is read from its shape (`usage_metadata` / `usageMetadata`:
Gemini; `"type": "message"` or message stream events: Anthropic; otherwise OpenAI's `usage`).
`provider=` sets the event's provider label (the catalogue's key: "azure" for Azure OpenAI,
"gcp.vertex_ai" for Vertex, "aws.bedrock" for Claude on Bedrock); the defaults are "openai",
"anthropic" and "gcp.gemini".

The event keeps counts and identifiers only (never prompt or response text). Token classes
follow the connectors: input = uncached input, cache_read, cache_write, output (reasoning inside).
`event_id` defaults to "<source>:<the response id>" (so a response reported twice counts once);
a response without an id (OpenAI embeddings, a Gemini response without responseId) gets a random
one: pass `event_id=` when your own retries may report it again. `occurred_at` defaults to the
response's own time (OpenAI `created`, Vertex `createTime`), else now.

A response with no usable usage raises `costwarden.errors.InvalidEventError(reason, detail)`
with the connectors' reason codes (missing_field, inconsistent, ...).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from costwarden.errors import InvalidEventError

if TYPE_CHECKING:
    from costwarden.connectors.base import ParseResult
    from costwarden.events import Attribution, UsageEvent

_GEMINI_PROVIDERS = {"gemini": "gcp.gemini", "google": "gcp.gemini", "gcp.gemini": "gcp.gemini",
                     "vertex_ai": "gcp.vertex_ai", "vertex": "gcp.vertex_ai", "gcp.vertex_ai": "gcp.vertex_ai"}
_ANTHROPIC_STREAM = {"message_start", "message_delta", "message_stop", "content_block_start",
                     "content_block_delta", "content_block_stop", "ping"}


def usage_from_response(response: Any, *, workflow: str | None = None, tags: Mapping[str, str] | None = None,
                        attribution: Attribution | Mapping[str, Any] | None = None, provider: str | None = None,
                        model: str | None = None, event_id: str | None = None,
                        occurred_at: datetime | str | None = None) -> UsageEvent:
    """The `UsageEvent` of one OpenAI / Anthropic / Gemini response (see the module doc).

    workflow: set as tag "workflow" (what budgets and decisions are keyed by); tags: more tags;
    attribution: an Attribution (or its dict: api_key_id, project_id, user_id, tags, ...);
    provider / model / event_id / occurred_at: override what the response says."""
    from costwarden.connectors import anthropic, openai  # imported on first use: `import costwarden.sdk` stays light

    data = _plain(response)
    kind = _kind(data)
    attr = _attribution(attribution, tags, workflow)
    if kind == "gemini":
        result = _gemini(data, attr, provider, model, event_id, occurred_at)
    elif kind == "anthropic":
        result = anthropic.parse_message(data, occurred_at=occurred_at or _now(), model=model, attribution=attr,
                                         provider=provider or anthropic.PROVIDER,
                                         event_id=event_id or _anthropic_id(data))
    else:
        data = _openai_final(data)
        result = openai.parse_response_usage(
            data, occurred_at=occurred_at if occurred_at is not None else _openai_time(data), model=model,
            attribution=attr, provider=provider or openai.PROVIDER,
            event_id=event_id or (None if _has_id(data) else _random_id(openai.RESPONSE_SOURCE)))
    return _one(result, kind)


# --- the response as plain JSON-like data ------------------------------------------------------

def _plain(obj: Any) -> Any:
    if obj is None or isinstance(obj, (dict, str, bytes, bytearray, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    dump = getattr(obj, "model_dump", None)  # pydantic v2: the openai, anthropic and google-genai types
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True)
        except TypeError:
            return dump()
    for name in ("to_json_dict", "to_dict"):
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn()
    parsed = getattr(obj, "parse", None)  # openai / anthropic `with_raw_response`: the parsed object
    if callable(parsed) and hasattr(obj, "http_response"):
        return _plain(parsed())
    raise InvalidEventError("not_an_object", f"cannot read usage from a {type(obj).__name__}")


def _kind(data: Any) -> str:
    items = data if isinstance(data, list) else [data]
    for d in items:
        if not isinstance(d, dict):
            continue
        if any(k in d for k in ("usageMetadata", "usage_metadata", "promptTokenCount", "prompt_token_count")):
            return "gemini"
        if isinstance(d.get("response"), dict) and any(
                k in d["response"] for k in ("usageMetadata", "usage_metadata")):
            return "gemini"  # a Vertex batch prediction line
        if d.get("type") == "message" or d.get("type") in _ANTHROPIC_STREAM:
            return "anthropic"
        usage = d.get("usage")
        if d.get("object") is None and isinstance(usage, dict) and (
                "cache_creation_input_tokens" in usage or "cache_read_input_tokens" in usage):
            return "anthropic"  # a bare Message dict without "type"
    return "openai"


def _attribution(attribution: Attribution | Mapping[str, Any] | None, tags: Mapping[str, str] | None,
                 workflow: str | None) -> Attribution:
    from costwarden.events import Attribution

    if attribution is None:
        base = Attribution()
    elif isinstance(attribution, Attribution):
        base = attribution
    else:
        base = Attribution.model_validate(dict(attribution))
    merged = {**base.tags, **(dict(tags) if tags else {})}
    if workflow is not None:
        merged["workflow"] = workflow
    return base.model_copy(update={"tags": merged}) if merged != base.tags else base


def _one(result: ParseResult, kind: str) -> UsageEvent:
    if result.rejects:
        r = result.rejects[0]
        raise InvalidEventError(r.reason, f"{kind} response: {r.detail}")
    if len(result.events) != 1:
        raise InvalidEventError("unsupported", f"{kind} response gave {len(result.events)} events, expected one")
    return result.events[0]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _random_id(source: str) -> str:
    return f"{source}:{uuid.uuid4()}"


def _has_id(d: Any) -> bool:
    ident = d.get("id") if isinstance(d, dict) else None
    return isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident).strip() != ""


# --- per provider ------------------------------------------------------------------------------

def _openai_final(data: Any) -> Any:
    """A stream: the chunk that carries the usage (the last one, with include_usage), or the
    response of a `response.completed` event."""
    if isinstance(data, dict) and data.get("type") == "response.completed" and isinstance(data.get("response"), dict):
        return data["response"]
    if isinstance(data, list):
        final = [d["response"] for d in data if isinstance(d, dict) and d.get("type") == "response.completed"
                 and isinstance(d.get("response"), dict)]
        if final:
            return final[-1]
        with_usage = [d for d in data if isinstance(d, dict) and isinstance(d.get("usage"), dict)]
        if not with_usage:
            raise InvalidEventError("missing_field", "openai stream has no chunk with usage (stream with "
                                                     "stream_options={'include_usage': True})")
        return with_usage[-1]
    return data


def _openai_time(data: Any) -> Any:
    if isinstance(data, dict) and (data.get("created") is not None or data.get("created_at") is not None):
        return None  # the parser reads the response's own time
    return _now()


def _anthropic_id(data: Any) -> str | None:
    from costwarden.connectors import anthropic

    msg = data
    if isinstance(data, list):
        msg = next((e.get("message") for e in data if isinstance(e, dict) and e.get("type") == "message_start"), None)
    if isinstance(msg, dict) and _has_id(msg):
        return None  # "anthropic-message:<id>" from the parser
    return _random_id(anthropic.MESSAGE_SOURCE)


def _gemini(data: Any, attr: Attribution, provider: str | None, model: str | None, event_id: str | None,
            occurred_at: Any) -> ParseResult:
    from costwarden.connectors import gemini

    prov = _GEMINI_PROVIDERS.get((provider or "gcp.gemini").lower())
    if prov is None:
        raise InvalidEventError("invalid_field", f"provider {provider!r} for a Gemini response: use one of "
                                                 f"{sorted(set(_GEMINI_PROVIDERS.values()))}")
    items = data if isinstance(data, list) else [data]
    first = next((d for d in items if isinstance(d, dict)), {})
    first = first.get("response", first) if isinstance(first.get("response"), dict) else first
    ident = first.get("responseId", first.get("response_id"))
    when = occurred_at
    if when is None and first.get("createTime", first.get("create_time")) is None:
        when = _now()
    if event_id is None and (ident is None or str(ident).strip() == ""):
        event_id = _random_id(gemini.SOURCE)
    return gemini.parse(data, provider=prov, stream=isinstance(data, list), event_id=event_id, occurred_at=when,
                        model=model, attribution=attr)
