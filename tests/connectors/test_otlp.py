import json
from datetime import datetime, timezone
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import OtlpMapping, normalize
from costwarden.connectors.otlp import parse


def test_gen_ai_spans_become_events_and_other_spans_are_skipped(fx):
    r = normalize("otlp", fx("otlp_traces.json"))
    assert r.rejects == []
    openai_ev, claude_ev = r.events  # the HTTP span has no usage: skipped, not rejected
    t = openai_ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.output) == (826, 1024, 0, 420)
    assert t.prompt_total == 1850  # gen_ai.usage.input_tokens includes cache reads
    assert_disjoint(t)
    assert openai_ev.event_id == "otlp:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert openai_ev.occurred_at == datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert openai_ev.model == "gpt-4o-2024-08-06" and openai_ev.provider == "openai"
    # 826 x 2.50 + 1024 x 1.25 + 420 x 10 = 7545 per 1M
    assert hand_cost("gpt-4o", t) == Decimal("0.007545")
    assert "SECRET" not in repr(r)


def test_old_gen_ai_system_cache_creation_and_reasoning(fx):
    _, ev = parse(fx("otlp_traces.json")).events
    t = ev.tokens
    assert ev.provider == "anthropic" and ev.model == "claude-sonnet-4-5"
    assert (t.input, t.cache_read, t.cache_write, t.output, t.reasoning) == (500, 9000, 2500, 700, 400)
    assert t.prompt_total == 12000
    # 500 x 3 + 9000 x 0.30 + 2500 x 3.75 + 700 x 15 (reasoning inside output) = 24075 per 1M
    assert hand_cost("claude-sonnet-4", t) == Decimal("0.024075")


def test_attribution_span_first_then_resource(fx):
    openai_ev, claude_ev = parse(fx("otlp_traces.json")).events
    assert openai_ev.tag("team") == "search"  # from the resource
    assert claude_ev.tag("team") == "support"  # the span's own attribute wins
    assert openai_ev.tag("workflow") == "rag-answer" and claude_ev.tag("workflow") == "triage-agent"
    assert openai_ev.attribution.service_account == "rag-api"
    assert openai_ev.attribution.trace_id == "5b8efff798038103d269b633813fc60c"
    custom = OtlpMapping(team=["service.name"], workflow=[], extra_tags={"scope": ["gen_ai.operation.name"]})
    ev = parse(fx("otlp_traces.json"), mapping=custom).events[0]
    assert ev.tag("team") == "rag-api" and ev.tag("workflow") is None and ev.tag("scope") == "chat"


def test_input_without_cache_can_be_configured(fx):
    _, ev = parse(fx("otlp_traces.json"), mapping=OtlpMapping(input_includes_cache=False)).events
    assert ev.tokens.input == 12000 and ev.tokens.cache_read == 9000


def test_bad_spans_are_rejected_without_content(fx):
    doc = json.loads(fx("otlp_traces.json"))
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]

    def with_attr(key, value):
        s = json.loads(json.dumps(span))
        s["attributes"] = [a for a in s["attributes"] if a["key"] != key] + [{"key": key, "value": value}]
        return s

    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = [
        with_attr("gen_ai.usage.input_tokens", {"intValue": "100"}),        # < cache_read
        with_attr("gen_ai.usage.output_tokens", {"intValue": "-3"}),
        with_attr("gen_ai.usage.output_tokens", {"stringValue": "many"}),
        with_attr("gen_ai.usage.reasoning.output_tokens", {"intValue": "9999"}),
        {**span, "startTimeUnixNano": "soon"},
        {**span, "spanId": None},
        with_attr("gen_ai.provider.name", {"stringValue": ""}),
    ]
    r = parse(doc)
    assert [x.reason for x in r.rejects] == ["inconsistent", "negative_value", "invalid_field", "inconsistent",
                                            "invalid_time", "missing_field", "missing_field"]
    assert len(r.events) == 1  # the untouched span of the second scope
    assert all("SECRET" not in x.payload for x in r.rejects)
    assert parse(b'{"resourceSpans": [').rejects[0].reason == "malformed_json"
    assert parse({"resourceLogs": []}).rejects[0].reason == "not_an_object"
