import gzip
import json
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import normalize
from costwarden.connectors.bedrock import parse

BODY_KEYS = ("inputBodyJson", "outputBodyJson", "SECRET")


def _leaks(result) -> list[str]:
    text = repr(result.events) + repr(result.rejects) + "".join(e.model_dump_json() for e in result.events)
    return [k for k in BODY_KEYS if k in text]


def test_documented_record_tokens_tags_identity_and_cost(fx):
    r = normalize("bedrock-log", fx("bedrock_log_doc.json"))
    assert r.rejects == []
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.output) == (412, 9216, 0, 356)
    assert_disjoint(t)
    assert ev.provider == "aws.bedrock" and ev.model == "us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert ev.event_id == "bedrock-log:3f1c2a9e-7b4d-4e0a-9c1f-2d8e5a6b7c90"
    assert ev.tag("team") == "search" and ev.tag("workflow") == "rag-answer"
    assert ev.attribution.service_account == "arn:aws:sts::123456789012:assumed-role/rag-api-task-role/1748772942"
    assert ev.occurred_at.isoformat() == "2025-06-01T10:15:42+00:00"
    # 412 x 3 + 9216 x 0.30 + 356 x 15 = 9340.8 per 1M
    assert hand_cost("claude-sonnet-4", t) == Decimal("0.0093408")
    assert _leaks(r) == []


def test_json_lines_with_arn_model_error_record_and_a_truncated_line(fx):
    r = parse(fx("bedrock_logs.jsonl"))
    ok, throttled = r.events
    assert ok.model == "anthropic.claude-3-5-haiku-20241022-v1:0"  # ARN reduced to the model id
    assert (ok.tokens.input, ok.tokens.cache_write, ok.tokens.output) == (1000, 4000, 200)
    assert hand_cost("claude-3.5-haiku", ok.tokens) == Decimal("0.0056")  # 800 + 4000 + 800 per 1M
    assert throttled.tokens.prompt_total == 0 and throttled.requests == 1
    assert [x.reason for x in r.rejects] == ["malformed_json"]
    assert _leaks(r) == []


def test_bodies_never_reach_rejects_even_when_the_record_is_bad(fx):
    rec = json.loads(fx("bedrock_log_doc.json"))
    bad_records = []
    for change in ({"requestId": None}, {"timestamp": "not a time"}, {"input": {**rec["input"], "inputTokenCount": -1}},
                   {"output": {**rec["output"], "outputTokenCount": "many"}}):
        bad_records.append({**json.loads(fx("bedrock_log_doc.json")), **change})
    r = parse(bad_records)
    assert r.events == []
    assert [x.reason for x in r.rejects] == ["missing_field", "invalid_time", "negative_value", "invalid_field"]
    assert all(x.payload for x in r.rejects)  # the fragment is there, minus the bodies
    assert _leaks(r) == []
    truncated = fx("bedrock_log_doc.json")[:300]
    r = parse(truncated)
    assert r.rejects[0].reason == "malformed_json" and _leaks(r) == []


def test_cloudwatch_subscription_envelope(fx):
    record = fx("bedrock_log_doc.json").decode()
    envelope = {"messageType": "DATA_MESSAGE", "logGroup": "/aws/bedrock/invocations",
                "logEvents": [{"id": "1", "timestamp": 1748772942000, "message": record},
                              {"id": "2", "timestamp": 1748772942001, "message": record[:50]}]}
    data = gzip.decompress(gzip.compress(json.dumps(envelope).encode()))
    r = parse(data)
    assert len(r.events) == 1 and r.events[0].tokens.cache_read == 9216
    assert [x.reason for x in r.rejects] == ["malformed_json"] and _leaks(r) == []


def test_caller_record_is_not_mutated(fx):
    rec = json.loads(fx("bedrock_log_doc.json"))
    parse(rec)
    assert "inputBodyJson" in rec["input"]  # parsers are pure: the copy is stripped, not the caller's dict
