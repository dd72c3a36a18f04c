"""What a pulled source is, for the poller: requests per window, paging, which buckets are
closed, and the pure parser. One module per provider (openai, anthropic, opencost) fills it in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence

from costwarden.connectors.base import ParseResult, parse_time
from costwarden.errors import ConfigError, ConnectorError, InvalidEventError

from .http import HttpClient, Params

WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
MAX_PAGES = 10_000


def width_of(text: str, allowed: Sequence[str]) -> timedelta:
    if text not in allowed:
        raise ConfigError(f"bucket_width {text!r}: this source takes {', '.join(allowed)}")
    return WIDTHS[text]


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    width: str
    group_by: tuple[str, ...]
    options: dict


@dataclass(frozen=True)
class PulledSource:
    name: str                      # connector name, e.g. "openai-usage"
    provider: str
    event_source: str | None       # UsageEvent.source of its events; None for cost reports
    env_key: str | None            # environment variable holding the key
    default_base_url: str
    widths: tuple[str, ...]
    group_fields: tuple[str, ...]
    headers: Callable[[str | None], dict[str, str]]
    requests: Callable[[Window], list[tuple[str, Params]]]
    closed: Callable[[Any, datetime], Any]      # page -> page with only buckets ended by the horizon
    parse: Callable[[list[Any], Window], ParseResult]
    paged: bool = True                          # has_more / next_page -> ?page=
    needs_key: bool = True


def fetch_pages(client: HttpClient, path: str, params: Params, paged: bool) -> Iterator[Any]:
    """Every page of one request, following `next_page` while `has_more`."""
    token, seen = None, set()
    for _ in range(MAX_PAGES):
        page = client.get_json(path, [*params, ("page", token)] if token else params)
        yield page
        if not paged or not isinstance(page, dict) or not page.get("has_more"):
            return
        token = page.get("next_page")
        if not token or token in seen:
            raise ConnectorError(f"{client.name}: {path} says has_more but gives "
                                 f"{'no' if not token else 'a repeated'} next_page")
        seen.add(token)
    raise ConnectorError(f"{client.name}: {path} gave more than {MAX_PAGES} pages for one window")


def keep_closed_buckets(page: Any, horizon: datetime, end_key: str) -> Any:
    """A copy of a bucketed page without the buckets that end after `horizon` (still open or not
    settled). Anything malformed is passed through for the parser to reject."""
    if not (isinstance(page, dict) and isinstance(page.get("data"), list)):
        return page
    kept = []
    for b in page["data"]:
        try:
            if isinstance(b, dict) and parse_time(b.get(end_key), end_key) > horizon:
                continue
        except InvalidEventError:
            pass
        kept.append(b)
    return {**page, "data": kept}


def group_params(name: str, fields: Sequence[str]) -> list[tuple[str, str]]:
    return [(name, f) for f in fields]
