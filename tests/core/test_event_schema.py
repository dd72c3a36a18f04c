import json
from importlib import resources

import jsonschema
import pytest

from costwarden.errors import InvalidEventError
from costwarden.events import Limits, event_json_schema, parse_event

GOOD = {"event_id": "e1", "occurred_at": "2026-11-01T10:00:00Z", "source": "gateway", "provider": "openai",
        "model": "gpt-4.1", "tokens": {"input": 10, "cache_read": 5, "output": 7, "reasoning": 2},
        "compute": {"gpu_hours": "0.25", "gpu_type": "h100"},
        "provider_cost": {"amount": "0.0123", "currency": "usd"},
        "attribution": {"api_key_id": "k", "tags": {"team": "search"}}}


def test_published_schema_is_current_and_accepts_a_valid_event():
    published = json.loads(resources.files("costwarden").joinpath("schemas/usage-event.v1.json").read_text())
    current = event_json_schema()
    # the same fields, types and requirements as the model (pydantic versions may word the rest differently)
    for name in ("UsageEvent", "Tokens", "Attribution", "Compute", "ProviderCost"):
        model = current if name == "UsageEvent" else current["$defs"][name]
        pub = published if name == "UsageEvent" else published["$defs"][name]
        assert set(pub["properties"]) == set(model["properties"]), f"regenerate the schema: {name} changed"
        assert pub.get("required", []) == model.get("required", [])
    jsonschema.validate(GOOD, published)
    ev = parse_event(json.dumps(GOOD))
    assert str(ev.compute.gpu_hours) == "0.25" and ev.provider_cost.currency == "USD"


@pytest.mark.parametrize("patch,reason", [
    ({"tokens": {"input": -1}}, "negative_value"),
    ({"messages": [{"role": "user"}]}, "content_field"),
    ({"attribution": {"tags": {"prompt": "hi"}}}, "content_field"),
    ({"surprise": 1}, "unknown_field"),
    ({"tokens": {"output": 1, "reasoning": 2}}, "invalid_field"),
    ({"tokens": {"input": 10**12}}, "absurd_value"),
    ({"occurred_at": "2026-11-01T10:00:00"}, "invalid_field"),
    ({"occurred_at": "2099-01-01T00:00:00Z"}, "absurd_value"),
])
def test_bad_events_are_rejected_with_a_reason(patch, reason):
    bad = {**GOOD, **patch}
    with pytest.raises(InvalidEventError) as e:
        parse_event(json.dumps(bad))
    assert e.value.reason == reason


def test_oversized_and_malformed_payloads():
    with pytest.raises(InvalidEventError) as e:
        parse_event(b"{" + b" " * 70_000 + b"}", Limits(max_payload_bytes=65536))
    assert e.value.reason == "oversized"
    with pytest.raises(InvalidEventError) as e:
        parse_event(b'{"event_id": "x", ')
    assert e.value.reason == "malformed_json"
