"""Every source, every kind of garbage: rejects with a reason, never an exception."""
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.connectors import PARSERS, ParseResult, normalize
from costwarden.events import parse_event

REASONS = {"malformed_json", "not_an_object", "missing_field", "invalid_field", "negative_value", "absurd_value",
           "invalid_time", "inconsistent", "unsupported", "oversized"}
WHEN = datetime(2025, 6, 1, tzinfo=timezone.utc)
GARBAGE = [b"", b"{", b"null", b"[1, 2", b"\xff\xfe\x00", b"42", b'"text"', b"[" * 50_000, 42, None,
           {"data": 5}, {"data": [{"results": "x"}]}, [None, 1, "x"], b'{"data": [{"start_time": 1e400}]}',
           "9" * 5000]
FIXTURES = {
    "openai-usage": "openai_usage_doc.json", "openai-costs": "openai_costs_doc.json",
    "openai-response": "openai_chat_completion.json", "anthropic-usage": "anthropic_usage_doc.json",
    "anthropic-cost": "anthropic_cost_doc.json", "anthropic-message": "anthropic_message.json",
    "bedrock-log": "bedrock_log_doc.json", "gemini": "gemini_response.json", "litellm": "litellm_batch.json",
    "otlp": "otlp_traces.json", "opencost": "opencost_allocation.json",
}


def _opts(source):
    return {"occurred_at": WHEN} if source in ("anthropic-message", "gemini") else {}


def test_registry_has_every_source():
    assert set(PARSERS) == set(FIXTURES)
    r = normalize("nonsense", b"{}")
    assert r.events == [] and r.rejects[0].reason == "unsupported"


@pytest.mark.parametrize("source", sorted(FIXTURES))
@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_rejected_with_a_reason(source, garbage):
    r = normalize(source, garbage, **_opts(source))
    assert isinstance(r, ParseResult) and r.events == []
    assert r.rejects, "garbage must not vanish silently"
    assert {x.reason for x in r.rejects} <= REASONS
    assert all(isinstance(x.detail, str) and x.detail for x in r.rejects)


@pytest.mark.parametrize("source", sorted(FIXTURES))
def test_truncated_documented_payload_is_rejected(source, fx):
    data = fx(FIXTURES[source])
    r = normalize(source, data[: len(data) // 2], **_opts(source))
    assert r.events == [] and r.rejects and r.rejects[0].reason == "malformed_json"


@pytest.mark.parametrize("source", sorted(FIXTURES))
def test_documented_payloads_yield_events_the_validator_accepts(source, fx):
    r = normalize(source, fx(FIXTURES[source]), **_opts(source))
    assert r.rejects == []
    assert r.events or r.cost_lines
    for ev in r.events:
        assert parse_event(ev.model_dump_json()) == ev  # the stream's own validation takes them as they are
        assert "SECRET" not in ev.model_dump_json()
    again = normalize(source, fx(FIXTURES[source]), **_opts(source))
    assert [e.event_id for e in again.events] == [e.event_id for e in r.events]  # deterministic ids


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**30) | st.text(max_size=20)
    | st.sampled_from(["2025-06-01T00:00:00Z", "1748772000123456000", "NaN", "-1"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "results", "usage", "input_tokens", "output_tokens", "start_time", "starting_at",
                         "usageMetadata", "promptTokenCount", "resourceSpans", "scopeSpans", "spans", "attributes",
                         "prompt_tokens", "metadata", "input", "output", "requestId", "timestamp", "id",
                         "custom_llm_provider", "startTime", "object", "amount", "window", "gpuHours", "code"]),
        children, max_size=6),
    max_leaves=25)


@pytest.mark.parametrize("source", sorted(FIXTURES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_random_json_never_raises(source, value):
    r = normalize(source, json.dumps(value), **_opts(source))
    assert {x.reason for x in r.rejects} <= REASONS | {"parser_error"}
    assert not [x for x in r.rejects if x.reason == "parser_error"], r.rejects
