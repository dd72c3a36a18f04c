import json
from datetime import datetime, timezone
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import normalize
from costwarden.connectors.gemini import parse
from costwarden.events import ServiceTier

WHEN = datetime(2025, 6, 1, 8, tzinfo=timezone.utc)


def test_thoughts_are_added_to_output_and_cache_taken_out_of_input(fx):
    r = normalize("gemini", fx("gemini_response.json"), occurred_at=WHEN)
    assert r.rejects == []
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.output, t.reasoning) == (4000, 8000, 2000, 1500)
    assert t.input + t.cache_read == 12000  # promptTokenCount
    assert t.prompt_total + t.output == 14000  # totalTokenCount
    assert_disjoint(t)
    assert ev.provider == "gcp.gemini" and ev.model == "gemini-2.5-flash"
    assert ev.event_id == "gemini:mAitaLmkHPPlz7IPvtfUqQ4"
    # 4000 x 0.30 + 8000 x 0.03 + 2000 x 2.50 = 6440 per 1M (ignoring thoughts would say $0.00269)
    assert hand_cost("gemini-2.5-flash", t) == Decimal("0.00644")
    assert "SECRET" not in repr(r)


def test_vertex_long_context_flex_with_tool_use_prompt(fx):
    r = parse(fx("gemini_vertex_long_context.json"), provider="gcp.vertex_ai")
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.output, t.reasoning) == (250200, 0, 6000, 2000)
    assert ev.service_tier is ServiceTier.flex and ev.provider == "gcp.vertex_ai"
    assert ev.occurred_at == datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert t.prompt_total > 200_000  # the >200k price row applies
    # 250,200 x 2.50 + 6,000 x 15 per 1M
    assert hand_cost("gemini-2.5-pro>200k", t) == Decimal("0.7155")


def test_stream_chunks_use_the_last_usage_only(fx):
    r = parse(fx("gemini_stream.json"), stream=True)
    (ev,) = r.events
    assert (ev.tokens.input, ev.tokens.output, ev.tokens.reasoning) == (90, 150, 30)
    assert ev.service_tier is ServiceTier.priority
    unstreamed = parse(fx("gemini_stream.json"))  # as separate responses: three, all priced
    assert len(unstreamed.events) == 3


def test_zero_fields_omitted_and_snake_case(fx):
    only_prompt = {"usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "responseId": "r1"}
    (ev,) = parse(only_prompt, occurred_at=WHEN).events
    assert (ev.tokens.input, ev.tokens.output, ev.tokens.cache_read) == (7, 0, 0)
    snake = {"usage_metadata": {"prompt_token_count": 100, "cached_content_token_count": 40,
                                "candidates_token_count": 10, "thoughts_token_count": 5, "total_token_count": 115},
             "response_id": "r2", "model_version": "gemini-2.5-flash"}
    (ev,) = parse(snake, occurred_at=WHEN).events
    assert (ev.tokens.input, ev.tokens.cache_read, ev.tokens.output, ev.tokens.reasoning) == (60, 40, 15, 5)


def test_vertex_batch_prediction_lines():
    lines = "\n".join(json.dumps({"request": {"contents": [{"parts": [{"text": "SECRET"}]}]}, "status": "",
                                  "response": {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3},
                                               "responseId": f"b{i}", "createTime": "2025-06-01T00:00:00Z",
                                               "modelVersion": "gemini-2.5-flash"}}) for i in range(3))
    r = parse(lines, provider="gcp.vertex_ai", service_tier="batch")
    assert len(r.events) == 3 and all(e.service_tier is ServiceTier.batch for e in r.events)
    assert "SECRET" not in repr(r)


def test_bad_gemini_payloads_are_rejected(fx):
    good = json.loads(fx("gemini_response.json"))
    cases = [
        {**good, "usageMetadata": {**good["usageMetadata"], "totalTokenCount": 12500}},  # thoughts inside? no
        {**good, "usageMetadata": {**good["usageMetadata"], "cachedContentTokenCount": 20000}},
        {**good, "usageMetadata": None},
        {**good, "usageMetadata": {**good["usageMetadata"], "thoughtsTokenCount": 1.5}},
        {**good, "responseId": None},
    ]
    r = parse(cases, occurred_at=WHEN)
    assert r.events == []
    assert [x.reason for x in r.rejects] == ["inconsistent", "inconsistent", "missing_field", "invalid_field",
                                            "missing_field"]
    assert all("SECRET" not in x.payload for x in r.rejects)
    assert parse(good).rejects[0].reason == "missing_field"  # no createTime and no occurred_at
    assert parse(good, provider="openai").rejects[0].reason == "invalid_field"
