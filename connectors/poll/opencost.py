"""OpenCost allocation API poller (transport side; the pure parser is costwarden.connectors.opencost).

    GET {base}/allocation?window=<start>,<end>&step=1h|1d&aggregate=namespace&accumulate=false
One allocation set per step; an allocation is taken once its window.end is settled. No key by
default (in-cluster); a bearer token is sent when one is configured (api_key / OPENCOST_TOKEN).
options: aggregate (default "namespace"), cost_field, include_without_gpu, label_tags.
"""
from __future__ import annotations

from datetime import timezone

from costwarden.connectors import opencost as parser
from costwarden.connectors.base import parse_time
from costwarden.errors import InvalidEventError

from .source import PulledSource, Window

BASE_URL = "http://localhost:9003"
ENV_KEY = "OPENCOST_TOKEN"
_PARSE_OPTIONS = ("cost_field", "currency", "label_tags", "include_without_gpu")


def _rfc3339(d) -> str:
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _requests(w: Window):
    return [("allocation", [("window", f"{_rfc3339(w.start)},{_rfc3339(w.end)}"), ("step", w.width),
                            ("aggregate", w.options.get("aggregate", "namespace")), ("accumulate", "false")])]


def _end(alloc) -> object:
    win = alloc.get("window") if isinstance(alloc.get("window"), dict) else {}
    return win.get("end") or alloc.get("end")


def _closed(page, horizon):
    if not (isinstance(page, dict) and isinstance(page.get("data"), list)):
        return page
    sets = []
    for aset in page["data"]:
        if isinstance(aset, dict):
            kept = {}
            for name, alloc in aset.items():
                try:
                    if isinstance(alloc, dict) and parse_time(_end(alloc), "window.end") > horizon:
                        continue
                except InvalidEventError:
                    pass
                kept[name] = alloc
            aset = kept
        sets.append(aset)
    return {**page, "data": sets}


def _parse(pages, w: Window):
    opts = {k: v for k, v in w.options.items() if k in _PARSE_OPTIONS}
    out = parser.parse(pages[0], **opts) if len(pages) == 1 else parser.parse({"code": 200, "data": [
        s for p in pages if isinstance(p, dict) and isinstance(p.get("data"), list) for s in p["data"]]}, **opts)
    return out


ALLOCATION = PulledSource(
    name="opencost", provider="self_hosted", event_source=parser.SOURCE, env_key=ENV_KEY,
    default_base_url=BASE_URL, widths=("1h", "1d"), group_fields=(), needs_key=False, paged=False,
    headers=lambda key: {"Authorization": f"Bearer {key}"} if key else {},
    requests=_requests, closed=_closed, parse=_parse)
