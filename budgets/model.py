"""The budget model: what a budgets YAML file means once validated.

    BudgetFile(version: 1, timezone, budgets)
    └── Budget(id, name, owners, parent, scope, period, amount, thresholds, spike, labels)
        ├── Scope                      which spend counts (budgets/scope.py)
        ├── Period                     day | week | month | quarter | rolling "24h" / "7d" / "90m"
        ├── Threshold(at, basis, actions)   fires when spend >= amount * at / 100
        └── SpikeRule(window_minutes, baseline_minutes, factor, min_spend, actions)
    Action: exactly one of notify: [channels] | throttle: {rate_per_min} | block: true

Models are frozen; derived values (compiled scopes, nanos) are cached on first use.
Money (amount, min_spend) is Decimal USD. Decimal fields accept int, str and Decimal; a float is
accepted only when it is exactly the decimal it looks like (0.5 yes, 0.1 no). Write money as
quoted strings. Cross-budget rules (unique ids, parents exist, no cycles) live in `cross_check`
so the loader can report them with line numbers.
"""
from __future__ import annotations

import re
from functools import cached_property
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Annotated, Any, Iterable, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from costwarden.budgets.scope import DIMENSIONS, Scope
from costwarden.money import to_nanos

__all__ = [
    "Action", "Budget", "BudgetFile", "DIMENSIONS", "Period", "Scope", "SpikeRule", "Threshold",
    "Throttle", "cross_check",
]

CALENDAR_PERIODS = ("day", "week", "month", "quarter")
_ROLLING = re.compile(r"^([1-9][0-9]*)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
_MAX_ROLLING_SECONDS = 366 * 86400
PERIOD_PATTERN = r"^(day|week|month|quarter|[1-9][0-9]*[mhd])$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_USD = Decimal(10) ** 9  # a billion dollars: larger is a typo, and its nanos (10**18) fit Int64 columns
_SLUG = re.compile(SLUG_PATTERN)


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        exact, shown = Decimal(value), Decimal(repr(value))
        if exact != shown:
            raise ValueError(f"{value!r} is not exact as a float; write it as a quoted string: \"{value!r}\"")
        return shown
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("must be a finite number")
    return value


DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": DECIMAL_PATTERN}, {"type": "number"}]}),
]


def _usd(value: Decimal) -> Decimal:
    if value.as_tuple().exponent < -9 and value != value.quantize(Decimal("0.000000001")):  # type: ignore[operator]
        raise ValueError("USD amounts have at most 9 decimal places (nano-dollars)")
    return value


Usd = Annotated[ExactDecimal, AfterValidator(_usd), Field(le=MAX_USD)]


def _fmt(d: Decimal) -> str:
    return f"{d.normalize():f}"


class Period(RootModel[str]):
    """`day | week | month | quarter` (calendar, in the file's time zone, weeks start Monday) or a
    rolling window `<n>m | <n>h | <n>d` (e.g. `90m`, `24h`, `7d`)."""

    model_config = ConfigDict(frozen=True)
    root: str = Field(json_schema_extra={"pattern": PERIOD_PATTERN, "examples": ["month", "24h"]})

    @field_validator("root")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in CALENDAR_PERIODS:
            return v
        m = _ROLLING.match(v)
        if not m:
            raise ValueError(
                f"unknown period {v!r}: use day, week, month, quarter or a rolling window like 24h, 7d, 90m"
            )
        if int(m.group(1)) * _UNIT_SECONDS[m.group(2)] > _MAX_ROLLING_SECONDS:
            raise ValueError("a rolling window may be at most 366 days")
        return v

    @cached_property
    def kind(self) -> str:
        """"day", "week", "month", "quarter" or "rolling"."""
        return self.root if self.root in CALENDAR_PERIODS else "rolling"

    @cached_property
    def is_calendar(self) -> bool:
        return self.root in CALENDAR_PERIODS

    @cached_property
    def rolling_seconds(self) -> int | None:
        m = _ROLLING.match(self.root)
        return int(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None

    def __str__(self) -> str:
        return self.root


class Throttle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rate_per_min: ExactDecimal = Field(gt=0, le=10**9, description="requests per minute the gateway holds the workflow to")


def _channels(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Action(BaseModel):
    """Exactly one of `notify`, `throttle`, `block`; an optional `note` is shown with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notify: Annotated[
        list[Annotated[str, Field(min_length=1)]] | None,
        BeforeValidator(_channels, json_schema_input_type=str | list[str] | None),
    ] = Field(None, description="channel names, defined in the alerts configuration")
    throttle: Throttle | None = None
    block: Literal[True] | None = Field(None, description="kill switch: refuse the workflow's calls")
    note: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Action":
        given = [k for k in ("notify", "throttle", "block") if getattr(self, k) is not None]
        if len(given) != 1:
            what = ", ".join(given) if given else "none"
            raise ValueError(f"an action needs exactly one of notify, throttle, block (got {what})")
        if self.notify is not None and not self.notify:
            raise ValueError("notify needs at least one channel")
        return self

    @property
    def kind(self) -> str:
        return "notify" if self.notify is not None else "throttle" if self.throttle else "block"


class Threshold(BaseModel):
    """Fires when spend (actual, or forecast to period end) >= amount * at / 100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: ExactDecimal = Field(gt=0, le=100_000, description="percent of the budget amount, e.g. 80, 100, 120")
    basis: Literal["actual", "forecast"] = "actual"
    actions: list[Action] = Field(default_factory=list)

    @property
    def id(self) -> str:
        """Stable name within a budget, e.g. "actual:80", "forecast:100", "actual:87.5"."""
        return f"{self.basis}:{_fmt(self.at)}"

    def trigger_nanos(self, amount_nanos: int) -> int:
        """Smallest integer spend (nanos) at which this threshold fires: ceil(amount * at / 100)."""
        with localcontext() as ctx:
            ctx.prec = 60
            exact = Decimal(amount_nanos) * self.at / 100
            return int(exact.to_integral_value(rounding=ROUND_CEILING))


class SpikeRule(BaseModel):
    """A spike: spend in the last `window_minutes` >= `factor` x what the baseline rate predicts,
    and at least `min_spend` USD. The baseline is the `baseline_minutes` before the window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_minutes: int = Field(gt=0, le=1440)
    baseline_minutes: int = Field(gt=0, le=10080)
    factor: ExactDecimal = Field(gt=1, le=1_000_000, description="e.g. 5 = five times the baseline rate")
    min_spend: Usd = Field(Decimal(0), ge=0, description="USD; smaller spikes are ignored")
    actions: list[Action] = Field(default_factory=list)

    @model_validator(mode="after")
    def _baseline_longer(self) -> "SpikeRule":
        if self.baseline_minutes <= self.window_minutes:
            raise ValueError("baseline_minutes must be longer than window_minutes")
        return self

    @cached_property
    def min_spend_nanos(self) -> int:
        return to_nanos(self.min_spend)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        description="lowercase slug, unique in the file", json_schema_extra={"pattern": SLUG_PATTERN}
    )
    name: str = Field("", description="shown in alerts; defaults to the id")
    owners: list[str] = Field(default_factory=list)
    parent: str | None = Field(None, description="id of the enclosing budget (org > team > workflow)")
    scope: Scope = Field(default_factory=Scope)
    period: Period
    amount: Usd = Field(gt=0, description="USD; write as a quoted string, e.g. \"400.00\"")
    thresholds: list[Threshold] = Field(default_factory=list)
    spike: SpikeRule | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(f"{v!r} is not a slug: use a-z, 0-9, - and _, start with a letter or digit, at most 64")
        return v

    @model_validator(mode="after")
    def _defaults_and_unique_thresholds(self) -> "Budget":
        if not self.name:
            object.__setattr__(self, "name", self.id)
        problems = _duplicate_thresholds(self.thresholds, ())
        if problems:
            raise PydanticCustomError("budget_cross_check", "; ".join(m for _, m in problems))
        return self

    @cached_property
    def amount_nanos(self) -> int:
        return to_nanos(self.amount)


Problems = list[tuple[tuple[str | int, ...], str]]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _duplicate_thresholds(thresholds: Any, base: tuple[str | int, ...]) -> Problems:
    problems: Problems = []
    seen: set[str] = set()
    for j, t in enumerate(thresholds if isinstance(thresholds, list) else []):
        try:
            at = Decimal(str(_get(t, "at")))
            tid = f"{_get(t, 'basis') or 'actual'}:{_fmt(at)}"
        except (InvalidOperation, ValueError):
            continue
        if tid in seen:
            problems.append((base + (j, "at"), f"threshold {tid} is listed twice"))
        seen.add(tid)
    return problems


def cross_check(budgets: Iterable[Any]) -> Problems:
    """Rules across budgets and thresholds, on validated or raw (dict) budgets: ids unique, parents
    exist, no cycles, no threshold twice in a budget. Returns (location, message) pairs, location
    like ("budgets", 3, "parent")."""
    rows: list[tuple[int, Any, Any]] = []
    problems: Problems = []
    for i, b in enumerate(budgets):
        bid, parent = _get(b, "id"), _get(b, "parent")
        rows.append((i, bid if isinstance(bid, str) else None, parent if isinstance(parent, str) else None))
        problems += _duplicate_thresholds(_get(b, "thresholds"), ("budgets", i, "thresholds"))
    first: dict[str, int] = {}
    for i, bid, _ in rows:
        if bid is None:
            continue
        if bid in first:
            problems.append((("budgets", i, "id"), f"duplicate budget id {bid!r} (first used by budgets[{first[bid]}])"))
        else:
            first[bid] = i
    parent_of = {bid: parent for i, bid, parent in rows if bid is not None and first.get(bid) == i}
    for i, bid, parent in rows:
        if parent is None:
            continue
        if parent not in first:
            problems.append((("budgets", i, "parent"), f"unknown parent budget {parent!r}"))
            continue
        if bid is None or first.get(bid) != i:
            continue
        chain, cur = [bid], parent
        while cur is not None and cur not in chain:
            chain.append(cur)
            cur = parent_of.get(cur)
        if cur == bid:
            problems.append((("budgets", i, "parent"), "parents form a cycle: " + " > ".join(chain + [bid])))
    return problems


class BudgetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    timezone: str = Field("UTC", description="IANA time zone for calendar periods, e.g. Europe/Berlin")
    budgets: list[Budget] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ValueError, OSError, KeyError) as e:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {v!r}: use an IANA name like Europe/Berlin") from e
        return v

    @model_validator(mode="after")
    def _cross(self) -> "BudgetFile":
        problems = cross_check(self.budgets)
        if problems:
            msg = "; ".join(f"{'.'.join(map(str, loc))}: {m}" for loc, m in problems)
            raise PydanticCustomError("budget_cross_check", msg)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def budgets_by_id(self) -> dict[str, Budget]:
        return {b.id: b for b in self.budgets}

    def ancestors(self, budget_id: str) -> list[Budget]:
        """The enclosing budgets of `budget_id`, nearest first."""
        out: list[Budget] = []
        by_id = self.budgets_by_id
        cur = by_id[budget_id].parent
        while cur is not None:
            out.append(by_id[cur])
            cur = by_id[cur].parent
        return out

    def children(self, budget_id: str) -> list[Budget]:
        return [b for b in self.budgets if b.parent == budget_id]
