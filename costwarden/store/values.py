"""Conversions between Python values and ClickHouse text/JSON values (shared by both stores)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any


def to_json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime")
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        raise TypeError("float values are not stored; use int nanos or Decimal")
    return v


def _base(t: str) -> str:
    while True:
        for wrap in ("Nullable(", "LowCardinality("):
            if t.startswith(wrap):
                t = t[len(wrap):-1]
                break
        else:
            return t


def parse_datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    d = datetime.fromisoformat(str(v))  # ClickHouse text: 'YYYY-MM-DD HH:MM:SS[.fff]' in UTC
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def convert_column(ctype: str, v: Any) -> Any:
    if v is None:
        return None
    t = _base(ctype)
    if t.startswith("DateTime"):
        return parse_datetime(v)
    if t.startswith("Decimal"):
        return Decimal(str(v))
    if t.startswith(("Int", "UInt")):
        return int(v)
    if t.startswith("Float"):
        return Decimal(str(v))
    return v


def _ident(v: Any) -> Any:
    return v


def _nullable(f):
    return lambda v: None if v is None else f(v)


def converter(ctype: str):
    """A function converting one column's JSON values (looked up once per result, not per value)."""
    t = _base(ctype)
    if t.startswith("DateTime"):
        f = parse_datetime
    elif t.startswith(("Decimal", "Float")):
        f = lambda v: Decimal(str(v))  # noqa: E731
    elif t.startswith(("Int", "UInt")):
        f = int
    else:
        return _ident
    return _nullable(f)
