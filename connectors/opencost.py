"""OpenCost allocation API (`/allocation?window=...&aggregate=...`) -> self-hosted compute events.

One event per allocation per window step: provider "self_hosted", operation "compute",
requests 0, compute.gpu_hours = gpuHours (exact Decimal of the JSON number text),
compute.gpu_type from the first label in `gpu_type_labels` that is present.

provider_cost (documented choice): `cost_field="totalCost"` (default) charges the whole
allocation (GPU + CPU + RAM + storage + network + shared): that is what running the GPU
workload cost. `cost_field="gpuCost"` charges the accelerators only. A null/NaN cost is
treated as 0 (for totalCost: the sum of the non-null component costs).
Allocations with no GPU hours are skipped unless `include_without_gpu=True` (they are not
AI workloads); that skip is a filter, not a reject.
Labels -> tags by `label_tags` (tag -> candidate label names; OpenCost sanitises "-" and "."
to "_"). namespace and cluster become tags "k8s.namespace" / "k8s.cluster".
Event id: sha256("opencost", window start, allocation name).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from costwarden.events import Attribution, Compute, ProviderCost, UsageEvent

from .base import FAILED, LIMITS, ParseResult, add_reject, as_dict, bad, guard, load_into, money, parse_time, stable_id, tag_value
from .fields import COST_CAP

SOURCE = "opencost"
PROVIDER = "self_hosted"
COMPONENT_COSTS = ("cpuCost", "gpuCost", "ramCost", "pvCost", "networkCost", "loadBalancerCost",
                   "sharedCost", "externalCost")
DEFAULT_LABEL_TAGS = {
    "team": ["team", "app_team", "app_kubernetes_io_team"],
    "workflow": ["workflow", "app_workflow", "app_kubernetes_io_name", "app"],
    "cost_center": ["cost_center", "costcenter", "cost-center"],
}
DEFAULT_GPU_LABELS = ("gpu_type", "nvidia_com_gpu_product", "nvidia.com/gpu.product", "accelerator",
                      "cloud_google_com_gke_accelerator")
_GPU_HOURS_PLACES = Decimal("0.000000001")


def parse(payload: Any, *, cost_field: str = "totalCost", currency: str = "USD",
          label_tags: Mapping[str, list[str]] | None = None, gpu_type_labels: tuple[str, ...] = DEFAULT_GPU_LABELS,
          include_without_gpu: bool = False, **_: Any) -> ParseResult:
    result = ParseResult()
    if cost_field not in ("totalCost", "gpuCost"):
        add_reject(result, "invalid_field", f"cost_field must be totalCost or gpuCost, got {cost_field!r}")
        return result
    data = load_into(payload, result)
    if data is FAILED:
        return result
    if not isinstance(data, dict):
        add_reject(result, "not_an_object", "expected the allocation API response object", data)
        return result
    if data.get("code") not in (None, 200):
        add_reject(result, "unsupported", f"OpenCost answered code {str(data.get('code'))[:20]}: "
                                          f"{str(data.get('message') or '')[:200]}", {"code": data.get("code")})
        return result
    sets = data.get("data")
    if isinstance(sets, dict):
        sets = [sets]
    if not isinstance(sets, list):
        add_reject(result, "missing_field", "data must be a list of allocation sets", {"code": data.get("code")})
        return result
    tags_by = label_tags or DEFAULT_LABEL_TAGS
    for aset in sets:
        if aset is None:
            continue
        if not isinstance(aset, dict):
            add_reject(result, "not_an_object", "allocation set must be an object", aset)
            continue
        for name, alloc in aset.items():
            guard(result, alloc, lambda name=name, alloc=alloc: _event(
                name, alloc, cost_field, currency, tags_by, gpu_type_labels, include_without_gpu))
    return result


def _num(alloc: dict, key: str) -> Decimal | None:
    v = alloc.get(key)
    return None if v is None else money(v, key)


def _event(name: str, alloc: Any, cost_field: str, currency: str, tags_by: Mapping[str, list[str]],
           gpu_labels: tuple[str, ...], include_without_gpu: bool) -> UsageEvent | None:
    if not isinstance(alloc, dict):
        raise bad("not_an_object", f"allocation {name[:80]!r} must be an object")
    gpu_hours = _num(alloc, "gpuHours") or Decimal(0)
    if gpu_hours == 0 and not include_without_gpu:
        return None
    if gpu_hours > LIMITS.max_gpu_hours:
        raise bad("absurd_value", f"gpuHours={gpu_hours} > {LIMITS.max_gpu_hours}")
    window = as_dict(alloc.get("window"), "window")
    start = window.get("start") or alloc.get("start")
    if cost_field == "gpuCost":
        cost = _num(alloc, "gpuCost") or Decimal(0)
    else:
        cost = _num(alloc, "totalCost")
        if cost is None:
            cost = sum((_num(alloc, k) or Decimal(0) for k in COMPONENT_COSTS), Decimal(0))
    if cost > COST_CAP:  # the event's provider_cost: its nano-dollars must fit the store's Int64
        raise bad("absurd_value", f"{cost_field}={cost} > {COST_CAP}")
    props = as_dict(alloc.get("properties"), "properties")
    labels = {str(k): tag_value(v) for k, v in as_dict(props.get("labels"), "properties.labels").items()}
    tags = {}
    for tag, names in tags_by.items():
        value = next((labels[n] for n in names if labels.get(n)), None)
        if value:
            tags[tag] = value[:256]
    for key, tag in (("namespace", "k8s.namespace"), ("cluster", "k8s.cluster")):
        v = tag_value(props.get(key))
        if v:
            tags[tag] = v[:256]
    gpu_type = next((labels[n] for n in gpu_labels if labels.get(n)), None)
    return UsageEvent(
        event_id=stable_id(SOURCE, start, alloc.get("name") or name), occurred_at=parse_time(start, "window.start"),
        source=SOURCE, provider=PROVIDER, model="", operation="compute", requests=0,
        compute=Compute(gpu_hours=gpu_hours.quantize(_GPU_HOURS_PLACES), gpu_type=gpu_type[:64] if gpu_type else None),
        attribution=Attribution(tags=tags),
        provider_cost=ProviderCost(amount=cost.quantize(Decimal("0.000000000001")), currency=currency),
    )
