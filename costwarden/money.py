"""Money is integer micro-dollars (1 USD = 1_000_000) or Decimal, never float.

Rounding rule: a cost is computed exactly in Decimal and rounded once, per event,
to the micro-dollar with ROUND_HALF_EVEN (banker's rounding). Every total is a sum
of those integers, so any report reconciles exactly with its events.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
_MICRO = Decimal(1)


def to_micros(usd: Decimal | int | str) -> int:
    """Round an exact dollar amount to integer micro-dollars, half-even."""
    if isinstance(usd, float):
        raise TypeError("money must not be float; pass Decimal or str")
    d = Decimal(usd) * MICROS_PER_USD
    return int(d.quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001"))


def fmt_usd(micros: int, places: int = 2) -> str:
    q = Decimal(1).scaleb(-places)
    return f"${from_micros(micros).quantize(q, rounding=ROUND_HALF_EVEN):,}"


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
