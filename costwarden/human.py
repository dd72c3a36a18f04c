"""Output for people, in one place: how money, percentages, times, counts and column names look
in terminal tables, the demo, messages and the HTML report. CSV and JSON never go through here:
they keep exact decimals and ISO times.

Rules:
- money is `$1,234.56`; a unit cost (per request, per 1,000 requests, per run) under $1 keeps
  enough decimals to show two significant digits, at least four (`$0.0059`, `$0.000012`);
  any other amount under half a cent that is not zero reads `<$0.01`;
- a percentage carries `%` (`112.6%`); a change is signed (`+12.5%`);
- a time has its year and its offset (`2026-11-29 02:18 UTC`, `2026-11-29 23:30 -05:00`);
- counts have thousands separators; mappings read `a: 1, b: 2`, never a Python repr.
"""
from __future__ import annotations

import sys
import time
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from costwarden.money import from_nanos

MISSING = ""


def usd(value: Decimal | int | str | None, *, unit: bool = False) -> str:
    """Dollars (Decimal or str) for people. `unit`: a per-request style amount (more decimals)."""
    if value is None or value == "":
        return MISSING
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    sign = "-" if d < 0 else ""
    a = abs(d)
    if a == 0:
        return "$0.00"
    if unit and a < 1:
        places = max(4, -a.adjusted() + 1)  # two significant digits
        return f"{sign}${a.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):f}"
    if a < Decimal("0.005"):
        return f"{sign}<$0.01"
    return f"{sign}${a.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def usd_nanos(nanos: int | None, *, unit: bool = False) -> str:
    return MISSING if nanos is None else usd(from_nanos(nanos), unit=unit)


def pct(value: Decimal | int | float | str | None, *, signed: bool = False) -> str:
    if value is None or value == "":
        return MISSING
    try:
        d = Decimal(str(value)).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
    except InvalidOperation:
        return str(value)
    return f"{'+' if signed and d > 0 else ''}{d:,}%"


def when(t: datetime | date | str | None, *, seconds: bool = False) -> str:
    """ISO date and time with the year, and the offset (`UTC` for UTC)."""
    if t is None or t == "":
        return MISSING
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t)
        except ValueError:
            return t
    if not isinstance(t, datetime):
        return t.isoformat()
    text = t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    if t.tzinfo is None:
        return text
    off = t.utcoffset()
    return f"{text} UTC" if not off else f"{text} {t.strftime('%z')[:3]}:{t.strftime('%z')[3:]}"


def count(n: int | None) -> str:
    return MISSING if n is None else f"{n:,}"


def compact(n: int | None) -> str:
    """Large counts (tokens) at a glance: 950, 12.3k, 473.6M, 1.2B."""
    if n is None:
        return MISSING
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= size:
            return f"{Decimal(n) / size:.1f}{suffix}"
    return str(n)


def mapping(m: dict | None, sep: str = ", ") -> str:
    """`{'content_field': 98, 'negative_value': 94}` -> `content_field: 98, negative_value: 94`."""
    if not m:
        return "none"
    return sep.join(f"{k}: {count(v) if isinstance(v, int) else v}" for k, v in m.items())


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


# --- table cells by column name ------------------------------------------------------------------

LABELS = {
    "cost_usd": "cost", "cost_per_request_usd": "cost / request", "cost_per_1k_requests_usd": "cost / 1k requests",
    "cost_per_run_usd": "cost / run", "previous_cost_usd": "previous period", "change_pct": "change",
    "pct_used": "% used", "spend_usd": "spend", "amount_usd": "budget", "forecast_usd": "forecast",
    "linear_forecast_usd": "linear forecast", "exhausted_at": "used up", "unpriced_events": "unpriced events",
    "rate_per_min": "rate / min", "set_at": "set at", "expires_at": "expires", "at": "at",
    "from_state": "from", "to_state": "to", "budget_id": "budget", "actor_kind": "actor kind",
    "old_usd": "old cost", "new_usd": "new cost", "delta_usd": "change",
}


def label(column: str) -> str:
    if column in LABELS:
        return LABELS[column]
    for suffix in ("_usd", "_nanos"):
        if column.endswith(suffix):
            column = column[: -len(suffix)]
    return column.replace("_", " ")


def is_unit_cost(column: str) -> bool:
    return "_per_" in column


def cell(column: str, v) -> str:
    """One value of `column` as a person reads it (the column name says what the value is)."""
    if v is None or v == "":
        return MISSING
    if column.endswith("_usd"):
        return usd(v, unit=is_unit_cost(column))
    if column.endswith("_nanos") and isinstance(v, int):
        return usd_nanos(v, unit=is_unit_cost(column))
    if column == "pct_used" or column.endswith("_pct"):
        return pct(v, signed=column == "change_pct")
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, datetime):
        return when(v, seconds=column in ("at", "set_at"))
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, int):
        return count(v)
    if isinstance(v, Decimal):
        return f"{v.normalize():,f}"
    if isinstance(v, dict):
        return mapping(v)
    if isinstance(v, (list, tuple, set)):
        return ", ".join(str(x) for x in v)
    return str(v)


def is_numeric(column: str, rows: list[dict]) -> bool:
    v = next((r.get(column) for r in rows if r.get(column) is not None), None)
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool) or column.endswith(("_usd", "_pct")) \
        or column == "pct_used"


def human_columns(columns: list[str]) -> list[str]:
    """A table's columns for people: an exact `x_nanos` beside its `x_usd` says the same thing twice."""
    return [c for c in columns if not (c.endswith("_nanos") and c[: -len("_nanos")] + "_usd" in columns)]


# --- progress --------------------------------------------------------------------------------------

class Progress:
    """Progress of long work on stderr: with a TTY a rich bar with the count, rate and ETA; without
    one a plain line every `every` seconds (nothing at all for work shorter than that).

    `total` is in the unit of `advance(n)` (events), or None (count and rate only); `fraction()`
    may be given instead when the work knows how far it is some other way (the demo: simulated time).
    """

    def __init__(self, label: str, total: int | None = None, *, unit: str = "events", enabled: bool = True,
                 every: float = 5.0, stream=None) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.done = 0
        self.frac: float | None = None
        self._bar = self._task = None
        self._t0 = self._last = 0.0

    def __enter__(self) -> "Progress":
        self._t0 = self._last = time.monotonic()
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.fields[count]} {task.fields[rate]}"), TimeRemainingColumn(),
                            transient=True, console=Console(file=self.stream))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=1000 if self.total else None, count="", rate="")
        return self

    def advance(self, n: int, fraction: float | None = None) -> None:
        self.done += n
        if fraction is not None:
            self.frac = fraction
        elif self.total:
            self.frac = min(self.done / self.total, 1.0)
        if not self.enabled:
            return
        now = time.monotonic()
        if self._bar is not None:
            kw = {"total": 1000, "completed": int(self.frac * 1000)} if self.frac is not None else {}
            self._bar.update(self._task, count=f"{self.done:,} {self.unit}", rate=f"{self.rate():,.0f}/s", **kw)
        elif now - self._last >= self.every:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def rate(self) -> float:
        elapsed = time.monotonic() - self._t0
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        if not self.frac:
            return None
        elapsed = time.monotonic() - self._t0
        return elapsed * (1 - self.frac) / self.frac

    def line(self) -> str:
        parts = [f"{self.label}: {self.done:,} {self.unit}", f"{self.rate():,.0f}/s"]
        if self.frac is not None:
            parts.append(f"{self.frac:.0%}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"about {eta:,.0f}s left")
        return ", ".join(parts)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
