"""YAML parsing that remembers where each field was written, for errors with file and line."""
from __future__ import annotations

from typing import Any

import yaml

from costwarden.errors import FileError


class LineMap:
    def __init__(self) -> None:
        self._lines: dict[tuple, int] = {}

    def add(self, path: tuple, line: int) -> None:
        self._lines.setdefault(path, line)

    def line_of(self, loc: tuple) -> int | None:
        """Line of the deepest known prefix of `loc` (1-based)."""
        loc = tuple(loc)
        while loc:
            if loc in self._lines:
                return self._lines[loc]
            loc = loc[:-1]
        return self._lines.get((), 1)


def _walk(node: yaml.Node, path: tuple, lm: LineMap) -> None:
    lm.add(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            lm.add(path + (key,), k.start_mark.line + 1)
            _walk(v, path + (key,), lm)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), lm)


def parse_with_lines(text: str, filename: str) -> tuple[Any, LineMap]:
    """Load YAML safely; return (data, line map). Syntax errors raise FileError with their line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise FileError([(filename, line, "<yaml>", str(e.problem or e))]) from None
    except yaml.YAMLError as e:
        raise FileError([(filename, None, "<yaml>", str(e))]) from None
    lm = LineMap()
    if node is not None:
        _walk(node, (), lm)
    return data, lm
