"""Conversions between Python values and ClickHouse text/JSON values (shared by both stores)."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable


def to_json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime")
        return v.astimezone(timezone.utc).isoformat(" ", "milliseconds")[:-6]  # 'YYYY-MM-DD hh:mm:ss.fff' ('+00:00' cut)
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


def json_bytes(value: Any, default: Callable[[Any], Any]) -> bytes:
    """Compact JSON as UTF-8 bytes: orjson (1.5-2x the standard library's speed for journal entries
    and Kafka values), with `default` called for datetimes too (so every path keeps its own
    datetime text). What orjson refuses (a lone surrogate, an integer beyond 64 bits, a
    non-text map key) is encoded by the standard library instead (ASCII, `\\uXXXX` escapes, a lone
    surrogate included), so one odd value never fails its batch."""
    try:
        return _orjson_dumps(value, default=default, option=_ORJSON_OPTS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, default=default, separators=(",", ":")).encode("ascii")


try:
    import orjson

    _orjson_dumps = orjson.dumps
    _ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME
except ImportError:  # pragma: no cover - orjson is a dependency; stay correct without it
    def _orjson_dumps(value, default, option):
        raise TypeError("orjson is not installed")
    _ORJSON_OPTS = 0
