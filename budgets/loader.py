"""Load a budgets YAML file, reporting every problem with its line and field in one pass.

    load_budgets(path, known_channels=None) -> BudgetFile
    load_budgets_text(text, filename, known_channels=None) -> BudgetFile
    budget_json_schema() -> dict          (committed as budgets/schema.json)

All problems raise one costwarden.errors.FileError whose `errors` hold (file, line, field,
message) tuples, sorted by line: YAML syntax, duplicate keys, schema violations, duplicate
budget ids, unknown or cyclic parents, unknown notify channels (when `known_channels` is given).

Numbers written without quotes that YAML reads as floats (`amount: 399.99`) are read as the exact
decimal written, never through a binary float. Quoted strings remain the recommended form.
"""
from __future__ import annotations

import difflib
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from costwarden.budgets.model import (
    Action, Budget, BudgetFile, Scope, SpikeRule, Threshold, Throttle, cross_check,
)
from costwarden.errors import FileError

SCHEMA_PATH = Path(__file__).with_name("schema.json")
ErrorRow = tuple[str, int | None, str, str]
Loc = tuple[str | int, ...]

_KNOWN_FIELDS = sorted(
    {f for m in (BudgetFile, Budget, Scope, Threshold, Action, Throttle, SpikeRule) for f in m.model_fields}
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads YAML floats as exact Decimals."""


def _construct_decimal(loader: SafeConstructor, node: ScalarNode) -> Any:
    raw = str(loader.construct_scalar(node))
    if ":" in raw:
        return raw  # YAML 1.1 base-60 (1:30.5 == 90.5): keep the text, validation rejects it
    try:
        d = Decimal(raw.replace("_", ""))
        if d.is_finite():
            return d
    except InvalidOperation:
        pass
    return SafeConstructor.construct_yaml_float(loader, node)  # .inf / .nan: "must be finite"


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def load_budgets(path: str | Path, known_channels: set[str] | None = None) -> BudgetFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FileError([(str(path), None, "", f"cannot read the file: {e}")]) from e
    return load_budgets_text(text, str(path), known_channels)


def load_budgets_text(text: str, filename: str, known_channels: set[str] | None = None) -> BudgetFile:
    root, data = _parse(text, filename)
    errors: list[ErrorRow] = [(filename, ln, f, m) for ln, f, m in _duplicate_keys(root, ())]
    if not isinstance(data, dict):
        raise FileError([(filename, 1, "", "the file must be a mapping with `version: 1` and `budgets:`")])
    result: BudgetFile | None = None
    try:
        result = BudgetFile.model_validate(data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            if err["type"] == "budget_cross_check":
                continue  # reported below with precise locations
            errors.append(_row(filename, root, tuple(err["loc"]), _message(err)))
    raw_budgets = data.get("budgets")
    if isinstance(raw_budgets, list):
        errors += [_row(filename, root, loc, msg) for loc, msg in cross_check(raw_budgets)]
        if known_channels is not None:
            for loc, name in _notify_channels(raw_budgets):
                if name not in known_channels:
                    known = ", ".join(sorted(known_channels)) or "none configured"
                    errors.append(_row(filename, root, loc, f"unknown channel {name!r} (known: {known})"))
    if errors:
        unique = list(dict.fromkeys(errors))
        unique.sort(key=lambda r: (r[1] if r[1] is not None else 0, r[2]))
        raise FileError(unique)
    assert result is not None
    return result


def budget_json_schema() -> dict[str, Any]:
    """JSON Schema of a budgets file (for editors and CI linting), as committed in budgets/schema.json."""
    schema = BudgetFile.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://costwarden.dev/schemas/budgets.schema.json",
        "title": "costwarden budgets file",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_json_schema() -> str:
    return json.dumps(budget_json_schema(), indent=2, sort_keys=True) + "\n"


def write_json_schema(path: Path = SCHEMA_PATH) -> bool:
    """Write the schema; True when the file changed."""
    text = render_json_schema()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


# -- internals -----------------------------------------------------------------------------


def _parse(text: str, filename: str) -> tuple[Node | None, Any]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise FileError([(filename, 1, "", "the file is empty: expected `version: 1` and `budgets:`")])
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context_mark is not None and "end of stream" in str(e.problem):
            mark = e.context_mark  # an unclosed quote or bracket: point at where it opened
        line = mark.line + 1 if mark is not None else None
        msg = " ".join(str(p) for p in (e.context, e.problem) if p) or "invalid YAML"
        raise FileError([(filename, line, "", f"YAML syntax: {msg}")]) from e
    except yaml.YAMLError as e:
        raise FileError([(filename, None, "", f"YAML: {e}")]) from e
    finally:
        loader.dispose()


def _duplicate_keys(node: Node | None, path: Loc) -> Iterator[tuple[int, str, str]]:
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    yield line, _field(path + (key.value,)), f"duplicate key (also on line {seen[key.value]})"
                seen.setdefault(key.value, line)
                yield from _duplicate_keys(value, path + (key.value,))
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, path + (i,))


def _row(filename: str, root: Node | None, loc: Loc, message: str) -> ErrorRow:
    line, resolved = _locate(root, loc)
    return (filename, line, _field(resolved), message)


def _locate(root: Node | None, loc: Loc) -> tuple[int | None, Loc]:
    """Line of the deepest node `loc` reaches (a key's line for mapping entries), and the part of
    `loc` that names data (pydantic's internal tags dropped)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    resolved: list[str | int] = []
    for part in loc:
        nxt = None
        if isinstance(node, MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == part:
                    nxt, line = value, key.start_mark.line + 1
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            if isinstance(part, int) or (isinstance(part, str) and part.isidentifier()):
                resolved.append(part)  # e.g. a missing required field
            break
        resolved.append(part)
        node = nxt
    return line, tuple(resolved)


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        close = difflib.get_close_matches(name, _KNOWN_FIELDS, n=1)
        return f"unknown field {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _notify_channels(budgets: list[Any]) -> Iterator[tuple[Loc, str]]:
    def actions(owner: Any, base: Loc) -> Iterator[tuple[Loc, str]]:
        acts = owner.get("actions") if isinstance(owner, dict) else None
        for k, act in enumerate(acts if isinstance(acts, list) else []):
            notify = act.get("notify") if isinstance(act, dict) else None
            if isinstance(notify, str):
                yield base + ("actions", k, "notify"), notify
            elif isinstance(notify, list):
                for m, name in enumerate(notify):
                    if isinstance(name, str):
                        yield base + ("actions", k, "notify", m), name

    for i, b in enumerate(budgets):
        if not isinstance(b, dict):
            continue
        ths = b.get("thresholds")
        for j, t in enumerate(ths if isinstance(ths, list) else []):
            yield from actions(t, ("budgets", i, "thresholds", j))
        yield from actions(b.get("spike"), ("budgets", i, "spike"))


if __name__ == "__main__":  # python -m costwarden.budgets.loader  -> rewrites budgets/schema.json
    print("budgets/schema.json", "updated" if write_json_schema() else "already up to date")
