import json
from datetime import datetime, timezone
from decimal import Decimal

from costwarden.connectors import normalize
from costwarden.connectors.opencost import parse


def _by_ns(result):
    return {e.tag("k8s.namespace") or e.event_id: e for e in result.events}


def test_gpu_allocations_become_compute_events_with_total_cost(fx):
    r = normalize("opencost", fx("opencost_allocation.json"))
    assert r.rejects == []
    evs = _by_ns(r)
    assert set(evs) - {e.event_id for e in r.events} == {"ml-training", "inference"}  # web has no GPU: skipped
    assert len(r.events) == 3  # ml-training, inference, __idle__
    train = evs["ml-training"]
    assert train.provider == "self_hosted" and train.operation == "compute" and train.requests == 0
    assert train.compute.gpu_hours == Decimal("24.0") and train.compute.gpu_type == "nvidia-a100-80gb"
    assert train.provider_cost.amount == Decimal("71.23256") and train.provider_cost.currency == "USD"
    assert train.tag("team") == "research" and train.tag("workflow") == "finetune-llama"
    assert train.tag("cost_center") == "cc-9001" and train.tag("k8s.cluster") == "gpu-cluster-1"
    assert train.occurred_at == datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert train.tokens.prompt_total == 0 and train.tokens.output == 0


def test_null_and_nan_costs_are_tolerated(fx):
    inference = _by_ns(parse(fx("opencost_allocation.json")))["inference"]
    # totalCost null, ramCost NaN, pvCost null: the non-null components 33.725 + 4.0
    assert inference.provider_cost.amount == Decimal("37.725")
    assert inference.compute.gpu_hours == Decimal("47.5") and inference.compute.gpu_type == "NVIDIA-L4"
    assert inference.tag("team") == "search"  # sanitised label app_team


def test_gpu_cost_choice_and_including_cpu_only_allocations(fx):
    r = parse(fx("opencost_allocation.json"), cost_field="gpuCost", include_without_gpu=True)
    evs = _by_ns(r)
    assert evs["ml-training"].provider_cost.amount == Decimal("52.8")
    assert evs["web"].compute.gpu_hours == 0 and evs["web"].provider_cost.amount == 0
    total = sum(e.provider_cost.amount for e in r.events)
    assert total == Decimal("52.8") + Decimal("33.725") + Decimal("0") + Decimal("18.7")


def test_ids_are_stable_per_window_and_allocation(fx):
    doc = json.loads(fx("opencost_allocation.json"), parse_constant=lambda _: None)
    first = {e.event_id for e in parse(doc).events}
    doc["data"][0]["ml-training"]["gpuHours"] = 25.5  # the window grew: same id
    assert {e.event_id for e in parse(doc).events} == first
    for alloc in doc["data"][0].values():
        alloc["window"]["start"] = "2025-06-02T00:00:00Z"
    assert not ({e.event_id for e in parse(doc).events} & first)


def test_bad_opencost_payloads_are_rejected(fx):
    assert parse({"code": 500, "message": "boom"}).rejects[0].reason == "unsupported"
    assert parse(fx("opencost_allocation.json")[:400]).rejects[0].reason == "malformed_json"
    assert parse({"code": 200, "data": "x"}).rejects[0].reason == "missing_field"
    assert parse(b"{}", cost_field="cpuCost").rejects[0].reason == "invalid_field"
    doc = {"code": 200, "data": [{"a": {"gpuHours": -1, "window": {"start": "2025-06-01T00:00:00Z"}},
                                  "b": {"gpuHours": 2, "window": {"start": "later"}},
                                  "c": {"gpuHours": 10**9, "window": {"start": "2025-06-01T00:00:00Z"}},
                                  "d": {"gpuHours": 1, "totalCost": "lots", "window": {"start": "2025-06-01T00:00:00Z"}},
                                  "e": "not-an-allocation"}]}
    r = parse(doc)
    assert r.events == []
    assert [x.reason for x in r.rejects] == ["negative_value", "invalid_time", "absurd_value", "invalid_field",
                                            "not_an_object"]


def test_a_cost_whose_nanos_do_not_fit_the_store_is_absurd():
    # the event's provider_cost may become its cost_nanos (Int64: at most $9.2 billion)
    start = {"start": "2025-06-01T00:00:00Z"}
    doc = {"code": 200, "data": [{"fits": {"gpuHours": 1, "totalCost": "1000000000", "window": start},
                                  "total": {"gpuHours": 1, "totalCost": "1000000001", "window": start},
                                  "parts": {"gpuHours": 1, "gpuCost": "600000000", "cpuCost": "400000001",
                                            "window": start}}]}
    r = parse(doc)
    assert [e.provider_cost.amount for e in r.events] == [Decimal("1e9")]
    assert [x.reason for x in r.rejects] == ["absurd_value", "absurd_value"]
