import json
from datetime import datetime, timezone
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import normalize
from costwarden.connectors.litellm import parse


def test_anthropic_call_through_litellm_subtracts_cache_from_prompt_tokens(fx):
    r = normalize("litellm", fx("litellm_batch.json"))
    assert r.rejects == []
    ev, failed = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.cache_write_1h, t.output) == (500, 8000, 2000, 0, 300)
    assert t.prompt_total == 10500  # prompt_tokens
    assert_disjoint(t)
    assert ev.provider == "anthropic" and ev.model == "claude-sonnet-4-20250514"
    assert ev.event_id == "litellm:chatcmpl-litellm-0001"
    assert ev.occurred_at == datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    # 500 x 3 + 8000 x 0.30 + 2000 x 3.75 + 300 x 15 = 15900 per 1M; LiteLLM claimed the same
    assert hand_cost("claude-sonnet-4", t) == Decimal("0.0159")
    assert ev.provider_cost.amount == Decimal("0.0159") and ev.provider_cost.currency == "USD"


def test_attribution_from_tags_metadata_and_key(fx):
    ev, failed = parse(fx("litellm_batch.json")).events
    a = ev.attribution
    assert a.tags["team"] == "search"  # request tag beats the team alias
    assert a.tags["workflow"] == "rag-answer" and a.tags["beta"] == "true"
    assert a.tags["cost_center"] == "cc-4410" and a.tags["ticket"] == "42"
    assert a.tags["end_user"] == "customer-7"
    assert a.api_key_id == "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    assert a.user_id == "u-123" and a.trace_id == "trace-aa11"
    assert failed.tag("team") == "support"  # from user_api_key_team_alias


def test_failed_call_with_zero_tokens_is_still_an_event(fx):
    _, failed = parse(fx("litellm_batch.json")).events
    assert failed.requests == 1 and failed.tokens.prompt_total == 0 and failed.tokens.output == 0
    assert failed.tag("litellm.status") == "failure"
    assert failed.provider == "azure.ai.openai" and failed.model == "gpt-4o"
    assert failed.occurred_at == datetime(2025, 6, 1, 10, 0, 1, 500000, tzinfo=timezone.utc)
    assert failed.provider_cost.amount == 0


def test_ndjson_cache_hit_embedding_and_truncated_line(fx):
    r = parse(fx("litellm_stream.ndjson"))
    emb, hit = r.events
    assert emb.operation == "embeddings" and emb.provider == "gcp.vertex_ai" and emb.tokens.input == 1200
    assert emb.provider_cost.amount == Decimal("1.5E-5")  # exact JSON text, not a float round-trip
    assert hit.tag("litellm.cache_hit") == "true" and hit.tokens.prompt_total == 0 and hit.tokens.output == 0
    assert [x.reason for x in r.rejects] == ["malformed_json"]


def test_content_is_never_kept(fx):
    r = parse(fx("litellm_batch.json"))
    assert "SECRET" not in repr(r) and "SECRET" not in "".join(e.model_dump_json() for e in r.events)
    rec = json.loads(fx("litellm_batch.json"))[0]
    rec["prompt_tokens"] = 100  # less than the cached tokens
    r = parse(rec)
    assert r.rejects[0].reason == "inconsistent" and "SECRET" not in r.rejects[0].payload
    assert '"prompt_tokens": 100' in r.rejects[0].payload


def test_bad_litellm_records_are_rejected(fx):
    rec = json.loads(fx("litellm_batch.json"))[0]
    cases = [{**rec, "custom_llm_provider": None}, {**rec, "startTime": "soon"}, {**rec, "response_cost": -1},
             {**rec, "response_cost": "free"}, {**rec, "completion_tokens": -5}, {**rec, "id": None,
                                                                                  "litellm_call_id": None},
             {**rec, "request_tags": "team:search"}, 42]
    r = parse(cases)
    assert r.events == []
    assert [x.reason for x in r.rejects] == ["missing_field", "invalid_time", "negative_value", "invalid_field",
                                            "negative_value", "missing_field", "invalid_field", "not_an_object"]


def test_a_response_cost_whose_nanos_do_not_fit_the_store_is_absurd(fx):
    # the cost may become the event's cost_nanos (Int64: at most $9.2 billion); $1 billion still fits
    rec = json.loads(fx("litellm_batch.json"))[0]
    ok = parse({**rec, "response_cost": "1000000000"})
    assert ok.rejects == [] and ok.events[0].provider_cost.amount == Decimal("1e9")
    r = parse([{**rec, "response_cost": "1000000000.000000001"}, {**rec, "response_cost": 10**10}])
    assert r.events == [] and [x.reason for x in r.rejects] == ["absurd_value", "absurd_value"]
