"""What the store can hold: the bounds of its columns, checked per event before anything is stored.

The columns are in store/migrations/001_init.sql; tests/core/test_events_storable.py checks each
bound below against chDB. Past them ClickHouse refuses the whole insert (a lone UTF-16 surrogate
escaped in JSON: "Cannot parse escape sequence"; a decimal too wide), or worse keeps another value
without a word: a UInt64 above 2^64-1 is read as 0, an Int64 wraps, and the rollup buckets
(DateTime) are clamped to 1970-01-01 / 2106-02-07 06:28:15 although occurred_at (DateTime64(3))
would hold the year 9999. NUL and other control characters are stored as they are: not rejected.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Iterator

from costwarden.errors import InvalidEventError

if TYPE_CHECKING:
    from costwarden.events import UsageEvent

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2106, 2, 7, 6, 28, 16, tzinfo=timezone.utc)  # exclusive: DateTime ends at 06:28:15
UINT64_MAX = 2**64 - 1
GPU_HOURS_BOUND = Decimal("1e15")  # Decimal(24, 9), exclusive
# inclusive (as connectors' money caps): a provider cost may be what budgets are charged (the
# unpriced policy), in Int64 nano-dollars
PROVIDER_COST_BOUND = Decimal("1e9")
_INT_DIGITS = sys.get_int_max_str_digits()
_COUNTS = ("input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning", "input_audio",
           "output_audio", "input_image", "output_image")
_TEXTS = ("event_id", "source", "provider", "model", "operation", "schema_version")
_IDS = ("api_key_id", "project_id", "workspace_id", "user_id", "service_account", "trace_id")


def json_int(text: str) -> int | Decimal:
    """`parse_int` for json.loads of untrusted input: an integer literal longer than Python converts
    (sys.get_int_max_str_digits) becomes an exact Decimal instead of failing the whole document, so
    that only the event holding it is rejected, by the range check of its field."""
    return int(text) if len(text) <= _INT_DIGITS or not _INT_DIGITS else Decimal(text)


def brief_number(v: int | Decimal) -> str:
    """A number for a message; one too long to print (ValueError past 4300 digits) by its size."""
    return str(v) if abs(v) < 10**30 else f"a {len(str(Decimal(v)).lstrip('-'))}-digit number"


def storable_text(s: str) -> str:
    """`s` with every lone UTF-16 surrogate replaced by U+FFFD (a surrogate pair left as two code
    points becomes its character); everything else, NUL included, is kept. For dead-letter payloads
    and details: the store (and UTF-8) cannot hold a lone surrogate."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def check_storable(ev: UsageEvent, texts: bool = True) -> None:
    """Raise InvalidEventError("unstorable", "<field>: <what>") for a value the store cannot hold.

    Cheap per event: bounds compared once; with `texts` (False only where a JSON reader that lets
    no lone surrogate through made the event), every string looked at in one pass.
    """
    if not EARLIEST <= ev.occurred_at < LATEST:
        raise InvalidEventError("unstorable", f"occurred_at: {ev.occurred_at.isoformat()} is outside the store's "
                                              f"range, 1970-01-01T00:00:00Z .. 2106-02-07T06:28:15Z")
    if ev.requests > UINT64_MAX or max(ev.tokens.__dict__.values()) > UINT64_MAX:
        t = ev.tokens
        for name, v in (("requests", ev.requests), *((f"tokens.{n}", getattr(t, n)) for n in _COUNTS)):
            if v > UINT64_MAX:
                raise InvalidEventError("unstorable", f"{name}: {brief_number(v)} is more than the store's UInt64 "
                                                      f"holds (at most {UINT64_MAX})")
    c, pc, a = ev.compute, ev.provider_cost, ev.attribution
    if c is not None and not abs(c.gpu_hours) < GPU_HOURS_BOUND:
        raise InvalidEventError("unstorable", f"compute.gpu_hours: {brief_number(c.gpu_hours)} does not fit "
                                              f"Decimal(24, 9)")
    if pc is not None and not abs(pc.amount) <= PROVIDER_COST_BOUND:
        raise InvalidEventError("unstorable", f"provider_cost.amount: {brief_number(pc.amount)} is more than one "
                                              f"event may cost ($1,000,000,000 at most: charged in Int64 nano-dollars)")
    if not texts:
        return
    joined = "".join((ev.event_id, ev.source, ev.provider, ev.model, ev.operation, ev.schema_version,
                      a.api_key_id or "", a.project_id or "", a.workspace_id or "", a.user_id or "",
                      a.service_account or "", a.trace_id or "", *a.tags, *a.tags.values(),
                      (c.gpu_type or "") if c else "", pc.currency if pc else ""))
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    for name, s in _text_fields(ev):
        if not s.isascii():
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidEventError("unstorable", f"{name}: not valid Unicode text (a lone UTF-16 surrogate "
                                                      f"at character {e.start})") from None


def _text_fields(ev: UsageEvent) -> Iterator[tuple[str, str]]:
    for n in _TEXTS:
        yield n, getattr(ev, n)
    for n in _IDS:
        yield f"attribution.{n}", getattr(ev.attribution, n) or ""
    for i, (k, v) in enumerate(ev.attribution.tags.items()):
        yield f"attribution.tags: key #{i + 1} {ascii(k[:40])}", k
        yield f"attribution.tags[{ascii(k[:40])}]", v
    if ev.compute is not None:
        yield "compute.gpu_type", ev.compute.gpu_type or ""
    if ev.provider_cost is not None:
        yield "provider_cost.currency", ev.provider_cost.currency
