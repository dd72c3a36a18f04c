"""Shared pieces of the source parsers: results, rejects, JSON loading, content stripping, and
(re-exported from .fields) counts, money, service tiers, time parsing and deterministic event ids.

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
    unstorable       a value the store cannot hold (costwarden.storable: a lone UTF-16 surrogate, ...)
    parser_error     anything unexpected (a bug here, reported rather than raised)

Reject payloads are JSON text with prompt/response content removed; an unparseable
payload is never echoed (it may hold content we cannot locate).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from pydantic import ValidationError

from costwarden.errors import InvalidEventError
from costwarden.events import CONTENT_FIELDS, UsageEvent, check_storable, json_int, storable_text

from .fields import (LIMITS, as_dict, bad, count, get_path, money, native_id, need_list, opt_str, parse_time,
                     stable_id, tag_value, tier, to_count)

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_FRAGMENT_CHARS = 4096
# Keys dropped from anything we echo in a reject, on top of costwarden.events.CONTENT_FIELDS.
EXTRA_CONTENT_KEYS = frozenset({"candidates", "parts", "request", "delta", "tool_calls", "arguments",
                                "inputbodyjson", "outputbodyjson", "hidden_params", "error_information"})
# Dropped when they hold text or a list (content), kept when an object (Bedrock's token counts).
_CONTENT_UNLESS_OBJECT = frozenset({"input", "output"})
_STRIP = CONTENT_FIELDS | EXTRA_CONTENT_KEYS


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


# --- JSON ---------------------------------------------------------------------------------

def _nan_to_none(_: str) -> None:
    return None


def loads(text: str | bytes) -> Any:
    """json.loads with floats as Decimal (exact money), NaN/Infinity as None, and an integer of
    thousands of digits as a Decimal (its record is rejected by the range check, not the document)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_nan_to_none, parse_int=json_int)


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


def load_records(payload: Any, result: "ParseResult") -> list[Any]:
    """A single object, a JSON array, or newline-delimited JSON -> list of records.

    Lines of ndjson that do not parse become rejects (in `result`); the others still count.
    """
    rejects = result.rejects
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
    text = storable_text(text)  # a lone surrogate in the record must not make its reject unstorable
    return text if len(text) <= MAX_FRAGMENT_CHARS else text[:MAX_FRAGMENT_CHARS] + "…"


def guard(result: ParseResult, record: Any, build: Callable[[], Iterable[UsageEvent] | UsageEvent | None]) -> None:
    """Run one record's builder; turn every failure into a Reject carrying the record fragment.
    An event the store cannot hold is rejected alone (unstorable); the record's others are kept."""
    try:
        out = build()
        events = [out] if isinstance(out, UsageEvent) else list(out or ())
    except InvalidEventError as e:
        result.rejects.append(Reject(e.reason, storable_text(e.detail), fragment(record)))
        return
    except ValidationError as e:
        result.rejects.append(Reject(*_validation_reason(e), fragment(record)))
        return
    except Exception as e:  # noqa: BLE001 - a parser must never crash the pipeline
        result.rejects.append(Reject("parser_error", storable_text(f"{type(e).__name__}: {str(e)[:200]}"),
                                     fragment(record)))
        return
    for ev in events:
        try:
            check_storable(ev)
        except InvalidEventError as e:
            result.rejects.append(Reject(e.reason, e.detail, fragment(record)))
            continue
        result.events.append(ev)


def _validation_reason(e: ValidationError) -> tuple[str, str]:
    errs = e.errors()
    detail = storable_text("; ".join(f"{'.'.join(str(p) for p in x['loc']) or '<root>'}: {x['msg']}"
                                     for x in errs[:5]))
    if any(x["type"] in ("string_unicode", "unstorable") for x in errs):  # a lone surrogate; a time past 9999
        return "unstorable", detail
    if any(x["type"].startswith("greater_than") for x in errs):
        return "negative_value", detail
    return "invalid_field", detail


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


__all__ = ["FAILED", "LIMITS", "MAX_PAYLOAD_BYTES", "ParseResult", "ProviderCostLine", "Reject", "add_reject",
           "as_dict", "bad", "count", "fragment", "get_path", "guard", "load_into", "load_payload", "load_records",
           "loads", "money", "native_id", "need_list", "opt_str", "parse_time", "stable_id", "strip_content",
           "tag_value", "tier", "to_count"]
