"""The canonical usage event: one model call (or a batch of them) or some GPU time.

Token classes are disjoint, so that nothing is priced twice:
    input           uncached prompt tokens
    cache_read      prompt tokens read from a cache
    cache_write     prompt tokens written to the cache (5-minute / default TTL)
    cache_write_1h  prompt tokens written to the 1-hour cache
    output          every billed output token, reasoning included
    reasoning       the reasoning part of `output`, for visibility only (never priced)

Events carry counts and identifiers, never prompt or response content.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from costwarden.errors import InvalidEventError
from costwarden.storable import EARLIEST, LATEST, check_storable, json_int, storable_text

__all__ = ["CONTENT_FIELDS", "EARLIEST", "LATEST", "Attribution", "Compute", "Limits", "ProviderCost", "SCHEMA_VERSION",
           "ServiceTier", "Tokens", "UsageEvent", "check_limits", "check_storable", "event_json_schema",
           "json_int", "parse_event", "storable_text"]

SCHEMA_VERSION = "1"

# Field names that smell of prompt/response content. Rejected wherever they appear.
CONTENT_FIELDS = frozenset(
    {
        "messages", "message", "prompt", "prompts", "completion", "completions", "content",
        "contents", "input_text", "output_text", "response", "responses", "choices", "text",
        "system", "system_prompt", "instructions", "inputbodyjson", "outputbodyjson", "body",
    }
)


class ServiceTier(str, Enum):
    standard = "standard"
    batch = "batch"
    priority = "priority"
    flex = "flex"


class Tokens(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: int = Field(0, ge=0, description="uncached input tokens")
    cache_read: int = Field(0, ge=0)
    cache_write: int = Field(0, ge=0, description="cache writes, 5-minute/default TTL")
    cache_write_1h: int = Field(0, ge=0)
    output: int = Field(0, ge=0, description="billed text output tokens, reasoning included")
    reasoning: int = Field(0, ge=0, description="part of output; reported, never priced")
    # Other modalities, disjoint from the text classes above (a provider's audio and image tokens
    # are priced at their own rates; a model without one is charged its text rate for them).
    input_audio: int = Field(0, ge=0, description="audio input tokens (not in input)")
    output_audio: int = Field(0, ge=0, description="audio output tokens (not in output)")
    input_image: int = Field(0, ge=0, description="image input tokens (not in input)")
    output_image: int = Field(0, ge=0, description="image output tokens (not in output)")

    @model_validator(mode="after")
    def _reasoning_inside_output(self) -> "Tokens":
        if self.reasoning > self.output:
            raise ValueError("reasoning tokens are part of output and cannot exceed it")
        return self

    @property
    def prompt_total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.cache_write_1h + self.input_audio + self.input_image


class Compute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_hours: Decimal = Field(Decimal(0), ge=0, max_digits=24, decimal_places=9)
    gpu_type: str | None = Field(None, max_length=64)


class ProviderCost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Decimal = Field(max_digits=28, decimal_places=12)
    currency: str = Field("USD", min_length=3, max_length=3)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class Attribution(BaseModel):
    """Keys reported by the source; rules map them to team / workflow / cost_center."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key_id: str | None = Field(None, max_length=256)
    project_id: str | None = Field(None, max_length=256)
    workspace_id: str | None = Field(None, max_length=256)
    user_id: str | None = Field(None, max_length=256)
    service_account: str | None = Field(None, max_length=256)
    trace_id: str | None = Field(None, max_length=128)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 64:
            raise ValueError("at most 64 tags")
        for k, val in v.items():
            if len(k) > 128 or len(val) > 256:
                raise ValueError(f"tag {k[:40]!r} is too long")
            if k.lower() in CONTENT_FIELDS:
                raise ValueError(f"tag {k!r} looks like prompt or response content")
        return v


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=256, description="idempotency key")
    occurred_at: datetime = Field(description="event time, UTC")
    source: str = Field(min_length=1, max_length=64)
    provider: str = Field(min_length=1, max_length=64, description="gen_ai.provider.name value or self_hosted")
    model: str = Field("", max_length=256)
    operation: str = Field("chat", max_length=64)
    requests: int = Field(1, ge=0)
    service_tier: ServiceTier = ServiceTier.standard
    tokens: Tokens = Field(default_factory=Tokens)
    compute: Compute | None = None
    attribution: Attribution = Field(default_factory=Attribution)
    provider_cost: ProviderCost | None = None
    schema_version: str = SCHEMA_VERSION

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (UTC)")
        try:
            return v.astimezone(timezone.utc)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is in the year 10000 in UTC
            raise PydanticCustomError("unstorable", "{when} is beyond the years 1..9999 in UTC",
                                      {"when": v.isoformat()}) from None

    @field_validator("provider")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()

    def tag(self, name: str) -> str | None:
        return self.attribution.tags.get(name)


class Limits(BaseModel):
    """Caps above which a value is absurd rather than large (configurable)."""

    max_payload_bytes: int = 64 * 1024
    max_tokens_per_class: int = 10_000_000_000
    max_requests: int = 100_000_000
    max_gpu_hours: Decimal = Decimal(1_000_000)
    max_future_skew_s: int = 24 * 3600


def _reason(e: ValidationError) -> tuple[str, str]:
    """Map pydantic errors to one dead-letter reason code and a readable detail."""
    errs = e.errors()
    detail = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in errs[:5])
    for err in errs:
        loc = [str(p).lower() for p in err["loc"]]
        if (err["type"] == "extra_forbidden" and loc and loc[-1] in CONTENT_FIELDS) or \
                "prompt or response content" in err["msg"]:
            where = ".".join(str(p) for p in err["loc"])
            return "content_field", f"{where!r} looks like prompt or response content; events carry counts only"
    kinds = {err["type"] for err in errs}
    for err in errs:
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "string_unicode":  # a lone UTF-16 surrogate: no UTF-8 text, no store holds it
            return "unstorable", storable_text(f"{where}: not valid Unicode text (a lone UTF-16 surrogate)")
        if err["type"] == "unstorable":
            return "unstorable", storable_text(f"{where}: {err['msg']}")
        if err["type"] == "int_parsing_size":
            return "unstorable", storable_text(f"{where}: a number with more digits than any count can have")
    detail = storable_text(detail)  # a tag key may hold a lone surrogate
    if "json_invalid" in kinds:
        return "malformed_json", detail
    if "model_type" in kinds and any(not err["loc"] for err in errs):
        return "not_an_object", detail
    if "extra_forbidden" in kinds:
        return "unknown_field", detail
    if any(k.startswith("greater_than") for k in kinds):
        return "negative_value", detail
    if "missing" in kinds:
        return "missing_field", detail
    return "invalid_field", detail


def parse_event(payload: bytes | str | Mapping[str, Any], limits: Limits | None = None,
                now: datetime | None = None) -> UsageEvent:
    """Validate one canonical event from JSON bytes/text or a decoded mapping.

    Raises InvalidEventError with a reason code: oversized, malformed_json, not_an_object,
    content_field, unknown_field, negative_value, missing_field, invalid_field, absurd_value,
    unstorable (a value the store cannot hold: a lone UTF-16 surrogate in any string, a count
    above UInt64, occurred_at outside 1970 .. 2106-02-07 06:28:15 UTC, a decimal too wide for its
    column; the detail names the field).
    JSON numbers are read exactly up to 15 significant digits; send longer decimals as strings.
    """
    limits = limits or Limits()
    try:
        if isinstance(payload, (bytes, str)):
            size = len(payload) if isinstance(payload, bytes) else len(payload.encode("utf-8", "surrogatepass"))
            if size > limits.max_payload_bytes:
                raise InvalidEventError("oversized", f"{size} bytes > {limits.max_payload_bytes}")
            ev, texts_checked = _from_json(payload)
        else:
            ev, texts_checked = UsageEvent.model_validate(payload), False
    except ValidationError as e:
        raise InvalidEventError(*_reason(e)) from None
    check_limits(ev, limits, now, texts_checked=texts_checked)
    return ev


_RETRY = ("surrogate", "hex escape", "number out of range", "invalid unicode code point")


def _from_json(payload: bytes | str) -> tuple[UsageEvent, bool]:
    """pydantic's JSON reader, falling back to Python's for what it refuses outright (a lone
    surrogate, escaped or as CESU-8 bytes; a number of thousands of digits), so that the reject
    names the field. Other bytes that are not UTF-8 stay malformed_json. Also: whether every
    string is known to be valid Unicode (pydantic's reader lets no lone surrogate through)."""
    try:
        return UsageEvent.model_validate_json(payload), True
    except ValidationError as e:
        if not any(any(m in x["msg"] for m in _RETRY) if x["type"] == "json_invalid"
                   else x["type"] == "string_unicode" and not x["loc"] for x in e.errors()):
            raise
        first = e
    try:
        doc = json.loads(payload, parse_float=Decimal, parse_int=json_int)
    except (ValueError, RecursionError):
        raise first from None
    return UsageEvent.model_validate(doc), False


def check_limits(ev: UsageEvent, limits: Limits, now: datetime | None = None, *,
                 texts_checked: bool = False) -> None:
    """The store's bounds (check_storable), then the configured caps (absurd_value).
    `texts_checked`: the strings are known to be valid Unicode (read by pydantic's JSON reader)."""
    if ev.occurred_at < EARLIEST:  # the store's rollup buckets (DateTime) start at the Unix epoch
        raise InvalidEventError("absurd_value", f"occurred_at {ev.occurred_at.isoformat()} is before 1970")
    check_storable(ev, texts=not texts_checked)
    t = ev.tokens
    for name in ("input", "cache_read", "cache_write", "cache_write_1h", "output"):
        if getattr(t, name) > limits.max_tokens_per_class:
            raise InvalidEventError("absurd_value", f"tokens.{name}={getattr(t, name)} > {limits.max_tokens_per_class}")
    if ev.requests > limits.max_requests:
        raise InvalidEventError("absurd_value", f"requests={ev.requests} > {limits.max_requests}")
    if ev.compute and ev.compute.gpu_hours > limits.max_gpu_hours:
        raise InvalidEventError("absurd_value", f"compute.gpu_hours={ev.compute.gpu_hours} > {limits.max_gpu_hours}")
    now = now or datetime.now(timezone.utc)
    if (ev.occurred_at - now).total_seconds() > limits.max_future_skew_s:
        raise InvalidEventError("absurd_value", f"occurred_at {ev.occurred_at.isoformat()} is in the future")


def event_json_schema() -> dict[str, Any]:
    schema = UsageEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://costwarden.dev/schemas/usage-event.v1.json"
    return schema
