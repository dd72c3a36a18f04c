"""Server-sent events read off a line iterator (tests of the controls stream)."""
from __future__ import annotations

from typing import Iterable, Iterator


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(event, id, data) of each event with data; heartbeats and comments are skipped."""
    event, ident, data = "message", "", []
    for line in lines:
        if line == "":
            if data:
                yield event, ident, "\n".join(data)
            event, ident, data = "message", "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("id:"):
            ident = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
