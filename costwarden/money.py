"""Money is integer nano-dollars (1 USD = 1_000_000_000) or Decimal, never float.

The unit, once for the store, the API and the SDK: every integer money field (`cost_nanos`,
`spend_nanos`, `amount_nanos`, ...) counts nano-dollars; every `*_usd` field is exact decimal
text of the same amount (up to 9 places). Int64 columns hold up to $9.2 billion per value.

Rounding rule: a cost is computed exactly in Decimal and rounded once, per event, to the
nano-dollar with ROUND_HALF_EVEN (banker's rounding). List prices are per million tokens with
at most 3 decimals, so a call's cost is a whole number of nano-dollars in practice (13.5 µ$
is 13,500 n$) and rounding never biases small calls. Every total is a sum of those integers,
so any report reconciles exactly with its events; only display rounds (`fmt_usd`).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal(1)
_PLACES = Decimal("0.000000001")


def to_nanos(usd: Decimal | int | str) -> int:
    """Round an exact dollar amount to integer nano-dollars, half-even."""
    if isinstance(usd, float):
        raise TypeError("money must not be float; pass Decimal or str")
    d = Decimal(usd) * NANOS_PER_USD
    return int(d.quantize(_NANO, rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    """Exact dollars of an integer nano-dollar amount (9 decimal places)."""
    return (Decimal(nanos) / NANOS_PER_USD).quantize(_PLACES)


def fmt_usd(nanos: int, places: int = 2) -> str:
    q = Decimal(1).scaleb(-places)
    return f"${from_nanos(nanos).quantize(q, rounding=ROUND_HALF_EVEN):,}"


def parse_decimal(value: object) -> Decimal:
    """Parse a money value from a payload. Floats from JSON arrive as str via parse_float."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise ValueError(f"not a decimal: {value!r}") from e
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return d
