"""OpenAI organisation Usage API (completions, embeddings) and Costs API pollers (transport side;
the pure parsers are costwarden.connectors.openai).

    GET {base}/organization/usage/{completions|embeddings}?start_time&end_time&bucket_width
        &group_by=...&limit&page        (Unix seconds, end exclusive; has_more / next_page)
    GET {base}/organization/costs?start_time&end_time&bucket_width=1d&group_by=...
Admin key: `Authorization: Bearer $OPENAI_ADMIN_KEY`.
"""
from __future__ import annotations

from costwarden.connectors import openai as parser

from .source import PulledSource, Window, group_params, keep_closed_buckets

BASE_URL = "https://api.openai.com/v1"
ENV_KEY = "OPENAI_ADMIN_KEY"
# group_by fields each usage endpoint accepts (embeddings has no batch / service_tier split)
ENDPOINT_GROUPS = {"completions": parser.GROUP_FIELDS,
                   "embeddings": ("project_id", "user_id", "api_key_id", "model")}
COST_GROUPS = ("project_id", "line_item", "api_key_id")


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _window(w: Window) -> list[tuple[str, object]]:
    return [("start_time", int(w.start.timestamp())), ("end_time", int(w.end.timestamp())),
            ("bucket_width", w.width), ("limit", w.options.get("limit"))]


def _usage_requests(w: Window):
    out = []
    for ep in w.options.get("endpoints", ("completions", "embeddings")):
        fields = [g for g in w.group_by if g in ENDPOINT_GROUPS.get(ep, ())]
        out.append((f"organization/usage/{ep}", _window(w) + group_params("group_by", fields)))
    return out


def _costs_requests(w: Window):
    return [("organization/costs", _window(w) + group_params("group_by", w.group_by))]


def _closed(page, horizon):
    return keep_closed_buckets(page, horizon, "end_time")


USAGE = PulledSource(
    name="openai-usage", provider="openai", event_source=parser.USAGE_SOURCE, env_key=ENV_KEY,
    default_base_url=BASE_URL, widths=("1m", "1h", "1d"), group_fields=parser.GROUP_FIELDS,
    headers=_headers, requests=_usage_requests, closed=_closed,
    parse=lambda pages, w: parser.parse_usage(pages))

COSTS = PulledSource(
    name="openai-costs", provider="openai", event_source=None, env_key=ENV_KEY,
    default_base_url=BASE_URL, widths=("1d",), group_fields=COST_GROUPS,
    headers=_headers, requests=_costs_requests, closed=_closed,
    parse=lambda pages, w: parser.parse_costs_result(pages))
