"""POST /v1/traces (OTLP/HTTP JSON) and POST /v1/litellm (generic API logger) on a real server:
the documented payloads land in the store with the right token classes and cost."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "connectors" / "fixtures"
OTLP = (FIXTURES / "otlp_traces.json").read_bytes()


def _rows(api, sql: str) -> list[dict]:
    return api.runtime.thread.call(lambda: api.runtime.store.query(sql))


def test_documented_otlp_example_lands_with_token_classes_and_cost(api):
    c = api.client()
    r = c.post("/v1/traces", content=OTLP, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {}  # OTLP: full success leaves partialSuccess unset
    rows = {x["model"]: x for x in _rows(api, "SELECT model, team, workflow, input_tokens, cache_read_tokens, "
                                              "cache_write_tokens, output_tokens, reasoning_tokens, cost_nanos, "
                                              "source FROM {db}.usage_events FINAL")}
    gpt, claude = rows["gpt-4o-2024-08-06"], rows["claude-sonnet-4-5"]
    assert (gpt["input_tokens"], gpt["cache_read_tokens"], gpt["cache_write_tokens"], gpt["output_tokens"]) == \
        (826, 1024, 0, 420)
    assert (claude["input_tokens"], claude["cache_read_tokens"], claude["cache_write_tokens"],
            claude["output_tokens"], claude["reasoning_tokens"]) == (500, 9000, 2500, 700, 400)
    # 826 x 2.50 + 1024 x 1.25 + 420 x 10 per 1M; 500 x 3 + 9000 x 0.30 + 2500 x 3.75 + 700 x 15 per 1M
    assert (gpt["cost_nanos"], claude["cost_nanos"]) == (7_545_000, 24_075_000)
    assert (gpt["team"], gpt["workflow"], claude["team"], claude["workflow"]) == \
        ("search", "rag-answer", "support", "triage-agent")
    assert gpt["source"] == "otlp"
    again = c.post("/v1/traces", content=OTLP, headers={"Content-Type": "application/json"})
    assert again.status_code == 200  # an exporter's retry counts nothing twice
    assert sum(x["cost_nanos"] for x in _rows(api, "SELECT cost_nanos FROM {db}.usage_events FINAL")) == 31_620_000


def test_rejected_spans_are_a_partial_success_and_dead_lettered(api):
    doc = json.loads(OTLP)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = json.loads(json.dumps(spans[0]))
    bad["spanId"] = "ffff"
    bad["attributes"] = [a for a in bad["attributes"] if a["key"] != "gen_ai.usage.output_tokens"] + \
        [{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "-3"}}]
    spans.append(bad)
    r = api.client().post("/v1/traces", json=doc)
    assert r.status_code == 200
    ps = r.json()["partialSuccess"]
    assert ps["rejectedSpans"] == 1 and "negative" in ps["errorMessage"]
    assert "SECRET" not in r.text
    assert len(_rows(api, "SELECT event_id FROM {db}.usage_events FINAL")) == 2
    dead = _rows(api, "SELECT reason, payload FROM {db}.dead_letters")
    assert [d["reason"] for d in dead] == ["negative_value"] and "SECRET" not in dead[0]["payload"]


@pytest.mark.parametrize("body, ctype, status, reason", [
    (b"{}", "text/plain", 415, "unsupported_media_type"),
    (b'{"resourceSpans": [', "application/json", 400, "malformed_json"),
    (b"", "application/json", 400, "empty_body"),
    (b'{"resourceSpans": {}}', "application/json", 400, "not_an_object"),
    (b"[]", "application/json", 400, "not_an_object"),
])
def test_traces_malformed_bodies_get_a_precise_4xx(api, body, ctype, status, reason):
    r = api.client().post("/v1/traces", content=body, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["error"] == reason  # protobuf bodies: tests/api/test_api_otlp_clients.py


def test_litellm_ndjson_batch_gives_a_per_record_answer(api):
    lines = (FIXTURES / "litellm_stream.ndjson").read_bytes()  # embedding, cache hit, truncated line
    r = api.client().post("/v1/litellm", content=lines, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["accepted", "accepted", "rejected"]
    assert body["results"][2]["reason"] == "malformed_json" and body["results"][2]["detail"].startswith("line 3")
    assert body["results"][1]["event_id"] == "litellm:o3-1"
    rows = _rows(api, "SELECT event_id, provider, operation, input_tokens, output_tokens, tags['litellm.cache_hit'] "
                      "AS hit FROM {db}.usage_events FINAL ORDER BY event_id")
    emb, hit = rows
    assert (emb["provider"], emb["operation"], emb["input_tokens"]) == ("gcp.vertex_ai", "embeddings", 1200)
    assert hit["hit"] == "true" and hit["output_tokens"] == 0  # a LiteLLM cache hit never reached the provider


def test_litellm_json_array_and_single_object(api):
    c = api.client()
    batch = (FIXTURES / "litellm_batch.json").read_bytes()
    r = c.post("/v1/litellm", content=batch, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 2 and "SECRET" not in r.text
    one = json.loads(batch)[0]
    again = c.post("/v1/litellm", json=one).json()
    assert again["results"] == [{"index": 0, "event_id": "litellm:chatcmpl-litellm-0001", "status": "duplicate"}]
    r = c.post("/v1/litellm", json=[{"id": "x", "prompt_tokens": -1}, 7])
    assert r.status_code == 422  # every record rejected, each with its reason
    assert [x["reason"] for x in r.json()["results"]] == ["negative_value", "not_an_object"]
    for body, status in ((b"", 400), (b"{oops", 400), (b"[]", 400), (b'"text"', 400)):
        assert c.post("/v1/litellm", content=body, headers={"Content-Type": "application/json"}).status_code == status


def test_a_viewer_may_not_post_usage(api):
    v = api.client("viewer")
    assert v.post("/v1/traces", content=OTLP, headers={"Content-Type": "application/json"}).status_code == 403
    assert v.post("/v1/litellm", json={"id": "x"}).status_code == 403
    assert api.client(None).post("/v1/traces", content=OTLP).status_code == 401
    assert _rows(api, "SELECT count() AS n FROM {db}.usage_events")[0]["n"] == 0


def test_otlp_attribution_mapping_comes_from_settings(api):
    from costwarden.config import PollerSettings

    api.runtime.pipeline.settings.connectors.sources["otlp"] = PollerSettings(
        options={"mapping": {"team": ["service.name"], "extra_tags": {"scope": ["gen_ai.operation.name"]}}})
    assert api.client().post("/v1/traces", content=OTLP).status_code == 200
    rows = _rows(api, "SELECT team, tags['scope'] AS scope FROM {db}.usage_events FINAL WHERE model LIKE 'gpt%'")
    assert rows == [{"team": "rag-api", "scope": "chat"}]


def test_new_routes_are_published(api):
    import httpx

    paths = set(httpx.get(api.url + "/openapi.json").json()["paths"])
    assert {"/v1/traces", "/v1/litellm", "/v1/reports/spend", "/v1/exports/focus", "/v1/reconcile"} <= paths
