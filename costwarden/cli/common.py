"""Shared CLI helpers: period parsing, output formats, error handling."""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import wraps

import click

from costwarden.errors import CostwardenError, FileError


def parse_period(text: str) -> tuple[datetime, datetime]:
    """'2026-11' (month), '2026-Q4', '2026-W47', '2026-11-21' (day), or 'FROM..TO' dates -> UTC [start, end)."""
    t = text.strip()
    utc = timezone.utc
    if ".." in t:
        a, b = t.split("..", 1)
        return parse_period(a)[0], parse_period(b)[1]
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", t):
        d = date(int(m[1]), int(m[2]), int(m[3]))
        s = datetime(d.year, d.month, d.day, tzinfo=utc)
        return s, s + timedelta(days=1)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", t):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise click.BadParameter(f"no month {mo}")
        s = datetime(y, mo, 1, tzinfo=utc)
        return s, datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=utc)
    if m := re.fullmatch(r"(\d{4})-[Qq]([1-4])", t):
        y, q = int(m[1]), int(m[2])
        s = datetime(y, 3 * q - 2, 1, tzinfo=utc)
        return s, (datetime(y + 1, 1, 1, tzinfo=utc) if q == 4 else datetime(y, 3 * q + 1, 1, tzinfo=utc))
    if m := re.fullmatch(r"(\d{4})-W(\d{2})", t):
        d = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        s = datetime(d.year, d.month, d.day, tzinfo=utc)
        return s, s + timedelta(days=7)
    raise click.BadParameter(f"period {text!r}: use 2026-11, 2026-Q4, 2026-W47, 2026-11-21 or FROM..TO")


def _jsonable(v):
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def emit(rows: list[dict], fmt: str, columns: list[str] | None = None, title: str | None = None,
         empty: str | None = None) -> None:
    """Rows as a table for people (costwarden/cli/human.py), or exact CSV / JSON. With no rows,
    `empty` says why on stderr in one line (and a table prints nothing else)."""
    columns = columns or (list(rows[0]) if rows else [])
    if not rows and empty:
        click.echo(empty, err=True)
    if fmt == "json":
        click.echo(json.dumps([{c: _jsonable(r.get(c)) for c in columns} for r in rows], indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        for r in rows:
            w.writerow([_jsonable(r.get(c)) for c in columns])
        click.echo(buf.getvalue(), nl=False)
    elif rows or not empty:
        print_table(rows, columns, title)


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from costwarden import human

    columns = human.human_columns(columns)
    table = Table(title=title)
    for c in columns:
        table.add_column(human.label(c), justify="right" if human.is_numeric(c, rows) else "left")
    for r in rows:
        table.add_row(*[human.cell(c, r.get(c)) for c in columns])
    Console(width=200).print(table)


LOCKED_EXIT = 5  # StoreError's exit code: the data directory is held by another process


def handle_errors(fn):
    @wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except FileError as e:
            for f, line, field, msg in e.errors:
                click.echo(f"{f}:{line if line is not None else '?'}: {field}: {msg}", err=True)
            sys.exit(e.exit_code)
        except CostwardenError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            if not e.filename:
                raise
            click.echo(f"error: cannot read {e.filename}: {e.strerror}", err=True)  # as click's exists=True: 2
            sys.exit(2)
        except Exception as e:
            from costwarden.cli.remote import lock_error_line

            line = lock_error_line(e)  # chDB's own lock error: one line, no traceback
            if line is None:
                raise
            click.echo(f"error: {line}", err=True)
            sys.exit(LOCKED_EXIT)
    return wrapper
