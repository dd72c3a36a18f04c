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

from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from costwarden.errors import InvalidEventError

SCHEMA_VERSION = "1"
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)

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
    output: int = Field(0, ge=0, description="all billed output tokens, reasoning included")
    reasoning: int = Field(0, ge=0, description="part of output; reported, never priced")

    @model_validator(mode="after")
    def _reasoning_inside_output(self) -> "Tokens":
        if self.reasoning > self.output:
            raise ValueError("reasoning tokens are part of output and cannot exceed it")
        return self

    @property
    def prompt_total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.cache_write_1h


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
        return v.astimezone(timezone.utc)

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
    content_field, unknown_field, negative_value, missing_field, invalid_field, absurd_value.
    JSON numbers are read exactly up to 15 significant digits; send longer decimals as strings.
    """
    limits = limits or Limits()
    try:
        if isinstance(payload, (bytes, str)):
            size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
            if size > limits.max_payload_bytes:
                raise InvalidEventError("oversized", f"{size} bytes > {limits.max_payload_bytes}")
            ev = UsageEvent.model_validate_json(payload)
        else:
            ev = UsageEvent.model_validate(payload)
    except ValidationError as e:
        raise InvalidEventError(*_reason(e)) from None
    check_limits(ev, limits, now)
    return ev


def check_limits(ev: UsageEvent, limits: Limits, now: datetime | None = None) -> None:
    t = ev.tokens
    for name in ("input", "cache_read", "cache_write", "cache_write_1h", "output"):
        if getattr(t, name) > limits.max_tokens_per_class:
            raise InvalidEventError("absurd_value", f"tokens.{name}={getattr(t, name)} > {limits.max_tokens_per_class}")
    if ev.requests > limits.max_requests:
        raise InvalidEventError("absurd_value", f"requests={ev.requests} > {limits.max_requests}")
    if ev.compute and ev.compute.gpu_hours > limits.max_gpu_hours:
        raise InvalidEventError("absurd_value", f"compute.gpu_hours={ev.compute.gpu_hours} > {limits.max_gpu_hours}")
    if ev.occurred_at < EARLIEST:  # the store's rollup buckets (DateTime) start at the Unix epoch
        raise InvalidEventError("absurd_value", f"occurred_at {ev.occurred_at.isoformat()} is before 1970")
    now = now or datetime.now(timezone.utc)
    if (ev.occurred_at - now).total_seconds() > limits.max_future_skew_s:
        raise InvalidEventError("absurd_value", f"occurred_at {ev.occurred_at.isoformat()} is in the future")


def event_json_schema() -> dict[str, Any]:
    schema = UsageEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://costwarden.dev/schemas/usage-event.v1.json"
    return schema
