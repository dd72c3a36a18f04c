"""Shared pieces of the source parsers: results, rejects, JSON, time, counts and event ids.

Every parser is pure (no I/O) and total: malformed input becomes a `Reject` with a reason
code, never an exception. Reason codes:

    malformed_json   the payload is not JSON (truncated, bad bytes)
    not_an_object    a record is not a JSON object, or a page lacks its list
    missing_field    a required field is absent or null
    invalid_field    a field has the wrong type or an unknown value
    negative_value   a count or amount is negative
    absurd_value     a count above costwarden.events.Limits
    invalid_time     a timestamp that cannot be read or is out of range
    inconsistent     counts that contradict each other (e.g. cached > input)
    unsupported      a record type this parser does not turn into events
    oversized        the payload is larger than MAX_PAYLOAD_BYTES
    parser_error     anything unexpected (a bug here, reported rather than raised)

Reject payloads are JSON text with prompt/response content removed; an unparseable
payload is never echoed (it may hold content we cannot locate).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping

from pydantic import ValidationError

from costwarden.errors import InvalidEventError
from costwarden.events import CONTENT_FIELDS, Limits, ServiceTier, UsageEvent

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_FRAGMENT_CHARS = 4096
LIMITS = Limits()
# Keys dropped from anything we echo in a reject, on top of costwarden.events.CONTENT_FIELDS.
EXTRA_CONTENT_KEYS = frozenset({"candidates", "parts", "request", "delta", "tool_calls", "arguments",
                                "inputbodyjson", "outputbodyjson", "hidden_params", "error_information"})
# Dropped when they hold text or a list (content), kept when an object (Bedrock's token counts).
_CONTENT_UNLESS_OBJECT = frozenset({"input", "output"})
_STRIP = CONTENT_FIELDS | EXTRA_CONTENT_KEYS
_MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)


@dataclass
class Reject:
    reason: str
    detail: str
    payload: str = ""


@dataclass
class ProviderCostLine:
    """One line of a provider's cost report, in USD (for reconciliation, not for pricing)."""

    day: date
    project_id: str | None
    api_key_id: str | None
    line_item: str
    amount: Decimal
    currency: str = "USD"
    source: str = ""
    workspace_id: str | None = None
    model: str | None = None
    service_tier: str | None = None
    quantity: Decimal | None = None


@dataclass
class ParseResult:
    events: list[UsageEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    cost_lines: list[ProviderCostLine] = field(default_factory=list)

    def extend(self, other: "ParseResult") -> None:
        self.events += other.events
        self.rejects += other.rejects
        self.cost_lines += other.cost_lines


def bad(reason: str, detail: str) -> InvalidEventError:
    return InvalidEventError(reason, detail)


# --- JSON ---------------------------------------------------------------------------------

def _nan_to_none(_: str) -> None:
    return None


def loads(text: str | bytes) -> Any:
    """json.loads with floats as Decimal (exact money) and NaN/Infinity as None."""
    return json.loads(text, parse_float=Decimal, parse_constant=_nan_to_none)


def load_payload(payload: Any) -> Any:
    """Decode bytes/str JSON; pass dicts and lists through. Raises InvalidEventError."""
    if isinstance(payload, (dict, list)):
        return payload
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise bad("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
        payload = bytes(payload)
    elif isinstance(payload, str):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise bad("oversized", f"{len(payload)} chars > {MAX_PAYLOAD_BYTES}")
    else:
        raise bad("not_an_object", f"payload of type {type(payload).__name__}")
    try:
        return loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise bad("malformed_json", _json_error(e)) from None


def _json_error(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    return type(e).__name__


def load_records(payload: Any, rejects: list[Reject]) -> list[Any]:
    """A single object, a JSON array, or newline-delimited JSON -> list of records.

    Lines of ndjson that do not parse become rejects; the others still count.
    """
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        return [payload]
    try:
        data = load_payload(payload)
        return data if isinstance(data, list) else [data]
    except InvalidEventError as e:
        if e.reason != "malformed_json":
            rejects.append(Reject(e.reason, e.detail))
            return []
    text = payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else payload
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        try:
            load_payload(payload)
        except InvalidEventError as e:
            rejects.append(Reject(e.reason, e.detail))
        return []
    out: list[Any] = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(loads(line))
        except (ValueError, RecursionError) as e:
            rejects.append(Reject("malformed_json", f"line {n}: {_json_error(e)}"))
    return out


def strip_content(obj: Any) -> Any:
    """A copy without keys that hold (or may hold) prompt or response content."""
    if isinstance(obj, Mapping):
        return {k: strip_content(v) for k, v in obj.items() if not _is_content(k, v)}
    if isinstance(obj, list):
        return [strip_content(v) for v in obj]
    return obj


def _is_content(k: Any, v: Any) -> bool:
    if not isinstance(k, str):
        return False
    low = k.lower()
    return low in _STRIP or (low in _CONTENT_UNLESS_OBJECT and not isinstance(v, Mapping))


def fragment(obj: Any) -> str:
    try:
        text = json.dumps(strip_content(obj), default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""
    return text if len(text) <= MAX_FRAGMENT_CHARS else text[:MAX_FRAGMENT_CHARS] + "…"


def guard(result: ParseResult, record: Any, build: Callable[[], Iterable[UsageEvent] | UsageEvent | None]) -> None:
    """Run one record's builder; turn every failure into a Reject carrying the record fragment."""
    try:
        out = build()
        if isinstance(out, UsageEvent):
            result.events.append(out)
        elif out is not None:
            result.events.extend(out)
    except InvalidEventError as e:
        result.rejects.append(Reject(e.reason, e.detail, fragment(record)))
    except ValidationError as e:
        result.rejects.append(Reject(*_validation_reason(e), fragment(record)))
    except Exception as e:  # noqa: BLE001 - a parser must never crash the pipeline
        result.rejects.append(Reject("parser_error", f"{type(e).__name__}: {str(e)[:200]}", fragment(record)))


def _validation_reason(e: ValidationError) -> tuple[str, str]:
    errs = e.errors()
    detail = "; ".join(f"{'.'.join(str(p) for p in x['loc']) or '<root>'}: {x['msg']}" for x in errs[:5])
    if any(x["type"].startswith("greater_than") for x in errs):
        return "negative_value", detail
    return "invalid_field", detail


# --- fields -------------------------------------------------------------------------------

def get_path(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def count(obj: Mapping[str, Any], path: str, *, required: bool = False, name: str | None = None) -> int:
    """A non-negative integer token/request count at a dotted path; absent -> 0 unless required."""
    v = get_path(obj, path)
    return to_count(v, name or path, required=required)


def to_count(v: Any, name: str, *, required: bool = False) -> int:
    if v is None:
        if required:
            raise bad("missing_field", f"{name} is required")
        return 0
    if isinstance(v, bool):
        raise bad("invalid_field", f"{name} must be an integer, got a boolean")
    if isinstance(v, str):  # OTLP intValue and some serialisers write int64 as decimal strings
        s = v.strip()
        if not s.lstrip("-").isdigit() or len(s) > 30:
            raise bad("invalid_field", f"{name} must be an integer, got {v[:40]!r}")
        v = int(s)
    if isinstance(v, (float, Decimal)):
        try:
            d = Decimal(repr(v)) if isinstance(v, float) else v
            if not d.is_finite() or d != d.to_integral_value():
                raise bad("invalid_field", f"{name} must be an integer, got {v}")
            v = int(d)
        except InvalidOperation:
            raise bad("invalid_field", f"{name} must be an integer") from None
    if not isinstance(v, int):
        raise bad("invalid_field", f"{name} must be an integer, got {type(v).__name__}")
    if v < 0:
        raise bad("negative_value", f"{name}={v}")
    cap = LIMITS.max_tokens_per_class
    if v > cap:
        raise bad("absurd_value", f"{name}={v} > {cap}")
    return v


def money(v: Any, name: str, *, allow_negative: bool = False) -> Decimal:
    """An exact Decimal from a JSON number (parsed as Decimal) or a decimal string; never via float."""
    if v is None:
        raise bad("missing_field", f"{name} is required")
    if isinstance(v, bool):
        raise bad("invalid_field", f"{name} must be a number")
    try:
        d = v if isinstance(v, Decimal) else Decimal(repr(v) if isinstance(v, float) else str(v).strip())
    except InvalidOperation:
        raise bad("invalid_field", f"{name} must be a decimal number, got {str(v)[:40]!r}") from None
    if not d.is_finite():
        raise bad("invalid_field", f"{name} must be finite")
    if d < 0 and not allow_negative:
        raise bad("negative_value", f"{name}={d}")
    if abs(d) > Decimal("1e12"):
        raise bad("absurd_value", f"{name}={d}")
    return d


def opt_str(obj: Mapping[str, Any], key: str, max_len: int = 256) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise bad("invalid_field", f"{key} must be a string")
    s = str(v)
    if len(s) > max_len:
        raise bad("invalid_field", f"{key} is longer than {max_len}")
    return s or None


def as_dict(v: Any, name: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise bad("invalid_field", f"{name} must be an object")
    return v


def need_list(obj: Mapping[str, Any], key: str) -> list[Any]:
    v = obj.get(key)
    if v is None:
        raise bad("missing_field", f"{key} is required")
    if not isinstance(v, list):
        raise bad("invalid_field", f"{key} must be a list")
    return v


def tag_value(v: Any) -> str | None:
    """A scalar as a tag value; nested values and nulls are not tags."""
    if v is None or isinstance(v, (dict, list)):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def tier(value: Any, *, name: str = "service_tier") -> ServiceTier:
    """Map a provider's service tier label to ours; unknown labels are rejected, not guessed."""
    if value is None:
        return ServiceTier.standard
    if not isinstance(value, str):
        raise bad("invalid_field", f"{name} must be a string")
    v = value.strip().lower()
    if v in ("", "standard", "default", "auto", "on_demand", "scale", "standard_only"):
        return ServiceTier.standard
    for t in (ServiceTier.batch, ServiceTier.priority, ServiceTier.flex):
        if v.startswith(t.value) or v == f"on_demand_{t.value}":
            return t
    raise bad("invalid_field", f"{name} {value[:40]!r} is not a known service tier")


# --- time and ids ------------------------------------------------------------------------

def parse_time(v: Any, name: str = "time") -> datetime:
    """UTC datetime from unix seconds (int/Decimal/float or digit string), unix nanoseconds
    (a digit string or int of 17+ digits, as OTLP writes them), RFC 3339, or
    "YYYY-MM-DD HH:MM:SS.ffffff" (read as UTC)."""
    if v is None:
        raise bad("missing_field", f"{name} is required")
    if isinstance(v, bool):
        raise bad("invalid_time", f"{name} must be a time")
    try:
        if isinstance(v, str) and _is_number(v.strip()):
            v = Decimal(v.strip())
        if isinstance(v, (int, float, Decimal)):
            secs = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
            if not secs.is_finite():
                raise bad("invalid_time", f"{name} is not finite")
            if abs(secs) >= Decimal(10) ** 16:  # nanoseconds
                secs = secs / Decimal(10) ** 9
            if not (0 <= secs < Decimal(7258118400)):  # 1970 .. 2200
                raise bad("invalid_time", f"{name}={v} is out of range")
            whole = int(secs)
            micros = int((secs - whole) * 1_000_000)
            dt = datetime.fromtimestamp(whole, tz=timezone.utc).replace(microsecond=micros)
        elif isinstance(v, str):
            dt = datetime.fromisoformat(v.strip())
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            dt = dt.astimezone(timezone.utc)
        else:
            raise bad("invalid_time", f"{name} must be a number or a string")
    except (ValueError, OverflowError, OSError, InvalidOperation):
        raise bad("invalid_time", f"{name} {str(v)[:40]!r} is not a time") from None
    if not (_MIN_TIME <= dt < _MAX_TIME):
        raise bad("invalid_time", f"{name} {dt.isoformat()} is out of range")
    return dt


def _is_number(s: str) -> bool:
    try:
        Decimal(s)
        return bool(s) and s[0] in "0123456789-."
    except InvalidOperation:
        return False


def stable_id(source: str, start: Any, *group: Any) -> str:
    """Deterministic event id: sha256 over (source, bucket start, group values).

    A re-poll of the same bucket (even after it grew) yields the same id, so the
    de-duplicator keeps only the latest count for it.
    """
    start_s = start.isoformat() if isinstance(start, datetime) else str(start)
    blob = json.dumps([source, start_s, *[None if g is None else str(g) for g in group]], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def native_id(source: str, ident: Any) -> str:
    """Event id from a source's own request id; hashed if too long for an idempotency key."""
    if ident is None or isinstance(ident, (bool, dict, list)) or str(ident).strip() == "":
        raise bad("missing_field", "a request id is required for the event id")
    s = f"{source}:{ident}"
    return s if len(s) <= 200 else f"{source}:sha256:{hashlib.sha256(str(ident).encode()).hexdigest()}"


_FAILED = object()


def add_reject(result: ParseResult, reason: str, detail: str, record: Any = None) -> None:
    result.rejects.append(Reject(reason, detail, "" if record is None else fragment(record)))


def load_into(payload: Any, result: ParseResult) -> Any:
    """load_payload, recording a failure as a reject; returns FAILED (check with `is FAILED`)."""
    try:
        return load_payload(payload)
    except InvalidEventError as e:
        result.rejects.append(Reject(e.reason, e.detail))
        return _FAILED


FAILED = _FAILED
