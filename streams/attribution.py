"""Attribution rules: ordered YAML rules mapping keys and tags to team / workflow / cost_center.

Precedence, stated once:
  1. Explicit tags on the event (`team`, `workflow`, `cost_center`, `env`) win for the fields they set.
  2. Then rules in file order: the first rule whose `match` holds fills the fields still empty
     (a later rule never overwrites an earlier one). A rule with `final: true` stops the search.
  3. Anything still empty is `unallocated` (reported, never hidden).
A `match` is a mapping of key -> pattern(s) with shell wildcards; keys are api_key_id, project_id,
workspace_id, user_id, service_account, provider, model, source, operation, or `tag.<name>`.
All conditions of a rule must hold. `set` may use `{tag.<name>}` / `{project_id}` templates.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costwarden.errors import FileError
from costwarden.events import UsageEvent

UNALLOCATED = "unallocated"
FIELDS = ("team", "workflow", "cost_center", "env")
_KEYS = {"api_key_id", "project_id", "workspace_id", "user_id", "service_account", "provider",
         "model", "source", "operation"}
_TEMPLATE = re.compile(r"\{([a-z_.]+)\}")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    set: dict[str, str]
    final: bool = False


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True)
class Attributed:
    team: str
    workflow: str
    cost_center: str
    env: str
    rule_id: str


def _lookup(ev: UsageEvent, key: str) -> str | None:
    if key.startswith("tag."):
        return ev.attribution.tags.get(key[4:])
    if key in ("provider", "model", "source", "operation"):
        return getattr(ev, key)
    return getattr(ev.attribution, key)


class _Compiled:
    def __init__(self, rule: Rule) -> None:
        self.id = rule.id
        self.final = rule.final
        self.set = rule.set
        self.conds = []
        for key, pats in rule.match.items():
            pats = [pats] if isinstance(pats, str) else pats
            rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in pats))
            self.conds.append((key, rx))

    def matches(self, ev: UsageEvent) -> bool:
        for key, rx in self.conds:
            v = _lookup(ev, key)
            if v is None or not rx.match(v):
                return False
        return True


_CACHE_MAX = 65_536


class Attributor:
    """Rules compiled once; results cached by the values the rules read (an event's attribution
    depends on nothing else), so a steady stream costs a few lookups per event, not a rule scan."""

    def __init__(self, rules: RuleFile | None = None) -> None:
        self.rules = [_Compiled(r) for r in (rules.rules if rules else [])]
        keys = {k for r in self.rules for k, _ in r.conds}
        keys |= {m for r in self.rules for tmpl in r.set.values() for m in _TEMPLATE.findall(tmpl)}
        self._keys = tuple(sorted(keys - {f"tag.{f}" for f in FIELDS}))
        self._cache: dict[tuple, Attributed] = {}

    def attribute(self, ev: UsageEvent) -> Attributed:
        tags = ev.attribution.tags
        key = (*(tags.get(f) for f in FIELDS), *(_lookup(ev, k) for k in self._keys))
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            hit = self._cache[key] = self._attribute(ev)
        return hit

    def _attribute(self, ev: UsageEvent) -> Attributed:
        tags = ev.attribution.tags
        out = {f: tags.get(f) or "" for f in FIELDS}
        rule_id = "tags" if any(out.values()) else ""
        for rule in self.rules:
            if all(out[f] for f in FIELDS):
                break
            if not rule.matches(ev):
                continue
            for f, tmpl in rule.set.items():
                if not out[f]:
                    out[f] = _render(tmpl, ev)
            rule_id = rule_id + "+" + rule.id if rule_id else rule.id
            if rule.final:
                break
        return Attributed(out["team"] or UNALLOCATED, out["workflow"] or UNALLOCATED,
                          out["cost_center"] or UNALLOCATED, out["env"] or "", rule_id or UNALLOCATED)


def _render(tmpl: str, ev: UsageEvent) -> str:
    return _TEMPLATE.sub(lambda m: _lookup(ev, m.group(1)) or "", tmpl)


def load_rules_text(text: str, filename: str = "<rules>") -> RuleFile:
    from costwarden.yamlfile import parse_with_lines

    data, lines = parse_with_lines(text, filename)
    errors: list[tuple[str, int | None, str, str]] = []
    try:
        rf = RuleFile.model_validate(data or {})
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            errors.append((filename, lines.line_of(loc), ".".join(map(str, loc)), err["msg"]))
        raise FileError(errors) from None
    seen: set[str] = set()
    for i, r in enumerate(rf.rules):
        for f in r.set:
            if f not in FIELDS:
                errors.append((filename, lines.line_of(("rules", i, "set", f)), f"rules.{i}.set.{f}",
                               f"can only set {', '.join(FIELDS)}"))
        for k in r.match:
            if k not in _KEYS and not k.startswith("tag."):
                errors.append((filename, lines.line_of(("rules", i, "match", k)), f"rules.{i}.match.{k}",
                               "unknown key"))
        if r.id in seen:
            errors.append((filename, lines.line_of(("rules", i, "id")), f"rules.{i}.id", f"duplicate rule id {r.id!r}"))
        seen.add(r.id)
    if errors:
        raise FileError(errors)
    return rf


def load_rules(path: str | Path) -> RuleFile:
    return load_rules_text(Path(path).read_text(), str(path))


def default_rules() -> RuleFile:
    return RuleFile()


def as_dims(ev: UsageEvent, a: Attributed) -> dict[str, Any]:
    """The dimensions a budget scope is matched against."""
    return {"team": a.team, "workflow": a.workflow, "cost_center": a.cost_center, "env": a.env,
            "provider": ev.provider, "model": ev.model, "org": ev.attribution.tags.get("org")}
