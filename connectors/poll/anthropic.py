"""Anthropic Admin API pollers: usage_report/messages and cost_report (transport side; the pure
parsers are costwarden.connectors.anthropic).

    GET {base}/organizations/usage_report/messages?starting_at&ending_at&bucket_width
        &group_by[]=...&limit&page      (RFC 3339; has_more / next_page)
    GET {base}/organizations/cost_report?starting_at&ending_at&group_by[]=workspace_id&group_by[]=description
Headers: `x-api-key: $ANTHROPIC_ADMIN_KEY`, `anthropic-version: 2023-06-01`.
"""
from __future__ import annotations

from datetime import timezone

from costwarden.connectors import anthropic as parser

from .source import PulledSource, Window, group_params, keep_closed_buckets

BASE_URL = "https://api.anthropic.com/v1"
ENV_KEY = "ANTHROPIC_ADMIN_KEY"
API_VERSION = "2023-06-01"
COST_GROUPS = ("workspace_id", "description")


def _headers(key: str | None) -> dict[str, str]:
    h = {"anthropic-version": API_VERSION}
    if key:
        h["x-api-key"] = key
    return h


def _rfc3339(d) -> str:
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(w: Window) -> list[tuple[str, object]]:
    return [("starting_at", _rfc3339(w.start)), ("ending_at", _rfc3339(w.end)),
            ("bucket_width", w.width), ("limit", w.options.get("limit"))]


def _closed(page, horizon):
    return keep_closed_buckets(page, horizon, "ending_at")


USAGE = PulledSource(
    name="anthropic-usage", provider="anthropic", event_source=parser.USAGE_SOURCE, env_key=ENV_KEY,
    default_base_url=BASE_URL, widths=("1m", "1h", "1d"), group_fields=parser.GROUP_FIELDS,
    headers=_headers, closed=_closed,
    requests=lambda w: [("organizations/usage_report/messages", _window(w) + group_params("group_by[]", w.group_by))],
    parse=lambda pages, w: parser.parse_usage(pages, group_by=w.group_by))

COSTS = PulledSource(
    name="anthropic-cost", provider="anthropic", event_source=None, env_key=ENV_KEY,
    default_base_url=BASE_URL, widths=("1d",), group_fields=COST_GROUPS,
    headers=_headers, closed=_closed,
    requests=lambda w: [("organizations/cost_report", _window(w) + group_params("group_by[]", w.group_by))],
    parse=lambda pages, w: parser.parse_cost_report(pages))
