"""Field readers shared by the parsers: counts, money, strings, service tiers, times, event ids.

Each raises InvalidEventError(reason, detail) on bad input; connectors.base.guard turns that
into a Reject.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from costwarden.errors import InvalidEventError
from costwarden.events import EARLIEST, LATEST, Limits, ServiceTier
from costwarden.storable import brief_number

LIMITS = Limits()
MONEY_CAP = Decimal("1e12")  # an amount (or a quantity) beyond this is absurd
# A cost an event is charged (its provider_cost, when the unpriced policy charges it) is stored as
# integer nano-dollars in an Int64 column (at most $9.2 billion): beyond $1 billion it is absurd.
COST_CAP = Decimal("1e9")
_MIN_TIME, _MAX_TIME = EARLIEST, LATEST  # what the store's rollup buckets hold
_MAX_SECS = Decimal(int(LATEST.timestamp()))


def bad(reason: str, detail: str) -> InvalidEventError:
    return InvalidEventError(reason, detail)


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
        raise bad("negative_value", f"{name}={brief_number(v)}")
    cap = LIMITS.max_tokens_per_class
    if v > cap:
        raise bad("absurd_value", f"{name}={brief_number(v)} > {cap}")
    return v


def money(v: Any, name: str, *, allow_negative: bool = False, cap: Decimal = MONEY_CAP) -> Decimal:
    """An exact Decimal from a JSON number (parsed as Decimal) or a decimal string; never via float.
    `cap`: COST_CAP for a cost an event carries (it may become the event's nano-dollar cost)."""
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
    if abs(d) > cap:
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
            if not (0 <= secs < _MAX_SECS):  # 1970 .. 2106-02-07
                raise bad("invalid_time", f"{name}={brief_number(v)} is out of range")
            whole = int(secs)
            usecs = int((secs - whole) * 1_000_000)
            dt = datetime.fromtimestamp(whole, tz=timezone.utc).replace(microsecond=usecs)
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
