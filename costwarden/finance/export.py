"""Typed file output for report rows: CSV (exact decimal text) and Parquet (pyarrow, Decimal money,
UTC timestamps). Column types are inferred from the values: int -> int64, Decimal -> decimal128
with the widest scale seen, datetime -> timestamp[us, UTC], everything else -> string."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(v)


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_text(r.get(c)) for c in columns])
    return buf.getvalue()


def infer_type(values: list):
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, (Decimal, int)) for v in present):
        scale = max(max(-v.as_tuple().exponent, 0) for v in present if isinstance(v, Decimal))
        return pa.decimal128(38, scale)
    if present and all(isinstance(v, datetime) for v in present):
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def to_arrow(rows: list[dict], columns: list[str], schema=None):
    import pyarrow as pa

    fields = []
    arrays = []
    for c in columns:
        vals = [r.get(c) for r in rows]
        t = schema.field(c).type if schema is not None else infer_type(vals)
        if pa.types.is_string(t):
            vals = [None if v is None else str(v) for v in vals]
        elif pa.types.is_decimal(t):
            vals = [None if v is None else Decimal(v) for v in vals]
        arrays.append(pa.array(vals, type=t))
        fields.append(pa.field(c, t, nullable=schema.field(c).nullable if schema is not None else True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def to_parquet(rows: list[dict], columns: list[str], path: str | Path, schema=None) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(rows, columns, schema), str(path))
