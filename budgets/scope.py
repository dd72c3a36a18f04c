"""Which spend a budget counts: selectors over attribution dimensions.

A scope holds optional selectors for the dimensions below. Each selector is one pattern or a list
of patterns with shell wildcards (`*` any run of characters, `?` one character, `[abc]` a set);
a dimension matches when any of its patterns does. All selectors must match (AND across
dimensions, OR within one). An empty scope matches everything.

Matching is case-sensitive. A dimension the event does not carry (missing or None) matches only
a selector containing the bare pattern `"*"`; `"rag-*"` or `"search"` never match a missing value.

Patterns are compiled once, on first use, and cached on the scope: `matches` runs per event per budget.
"""
from __future__ import annotations

import fnmatch
import re
from functools import cached_property
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

DIMENSIONS: tuple[str, ...] = ("org", "team", "workflow", "cost_center", "provider", "model", "env")
_WILDCARD = re.compile(r"[*?\[]")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Selector = Annotated[
    list[str] | None,
    BeforeValidator(_as_list, json_schema_input_type=str | list[str] | None),
]


class _Matcher:
    """One compiled selector: exact values in a set, wildcard patterns in one regex."""

    __slots__ = ("any", "exact", "regex")

    def __init__(self, patterns: list[str]) -> None:
        self.any = "*" in patterns
        self.exact = frozenset(p for p in patterns if not _WILDCARD.search(p))
        globs = [fnmatch.translate(p) for p in patterns if _WILDCARD.search(p)]
        self.regex = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None

    def __call__(self, value: str | None) -> bool:
        if self.any:
            return True
        if value is None:
            return False
        if value in self.exact:
            return True
        return self.regex is not None and self.regex.match(value) is not None


class Scope(BaseModel):
    """Selectors per dimension, e.g. `{team: search, workflow: "rag-*", model: ["gpt-4*", "o3"]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    org: Selector = None
    team: Selector = None
    workflow: Selector = None
    cost_center: Selector = None
    provider: Selector = None
    model: Selector = None
    env: Selector = None

    @field_validator(*DIMENSIONS)
    @classmethod
    def _non_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("a selector needs at least one pattern; remove it to match everything")
        for p in v:
            if not p.strip():
                raise ValueError("a pattern must not be empty")
        return v

    @cached_property
    def _matchers(self) -> tuple[tuple[str, _Matcher], ...]:
        # a cached_property lives in the instance __dict__: plain attribute speed, unlike PrivateAttr
        return tuple((dim, _Matcher(getattr(self, dim))) for dim in DIMENSIONS if getattr(self, dim) is not None)

    @property
    def is_empty(self) -> bool:
        return not self._matchers

    def selectors(self) -> dict[str, list[str]]:
        """The selectors that are set, by dimension."""
        return {dim: list(getattr(self, dim)) for dim, _ in self._matchers}

    def matches(self, dims: Mapping[str, str | None]) -> bool:
        """True when every selector matches the event's value for its dimension."""
        for dim, matcher in self._matchers:
            if not matcher(dims.get(dim)):
                return False
        return True
