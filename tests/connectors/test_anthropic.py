import json
from datetime import datetime, timezone
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import normalize
from costwarden.connectors.anthropic import CONSOLE_KEY, DEFAULT_WORKSPACE, parse_message, parse_usage
from costwarden.events import ServiceTier

WHEN = datetime(2025, 6, 1, 9, 30, tzinfo=timezone.utc)


def test_documented_usage_report_sums_to_total_input_and_prices_each_class(fx):
    r = normalize("anthropic-usage", fx("anthropic_usage_doc.json"))
    assert r.rejects == []
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.cache_write_1h, t.output) == (1245880, 9830400, 184320, 0, 402117)
    assert t.prompt_total == 1245880 + 9830400 + 184320 + 0
    assert_disjoint(t)
    assert ev.requests == 0  # the report has no request count
    assert ev.occurred_at == datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert ev.attribution.api_key_id == "apikey_01Rj2N8SVvo6BePZj99NhmiT"
    assert ev.attribution.workspace_id == "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
    assert ev.tag("context_window") == "0-200k" and ev.service_tier is ServiceTier.standard
    # 1,245,880 x 3 + 9,830,400 x 0.30 + 184,320 x 3.75 + 402,117 x 15, per 1M
    assert hand_cost("claude-sonnet-4", t) == Decimal("13.409715")


def test_documented_cost_report_is_cents_and_matches_the_hand_priced_input(fx):
    r = normalize("anthropic-cost", fx("anthropic_cost_doc.json"))
    assert r.events == [] and r.rejects == []
    first, second = r.cost_lines
    assert first.amount == Decimal("3.73764") and first.currency == "USD"  # "373.764" cents
    assert first.amount == Decimal(1245880) * Decimal("3.00") / Decimal(1_000_000)  # uncached input of the usage doc
    assert first.workspace_id == "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ" and first.line_item.startswith("Claude Sonnet 4")
    assert second.amount == Decimal("1.2345") and second.line_item == "web_search"


def test_null_key_and_workspace_mean_console_and_default_only_when_grouped(fx):
    grouped = parse_usage(fx("anthropic_usage_grouped.json"), group_by=["api_key_id", "workspace_id", "model"])
    opus, long_ctx = grouped.events
    assert opus.attribution.api_key_id == CONSOLE_KEY and opus.attribution.workspace_id == DEFAULT_WORKSPACE
    assert long_ctx.attribution.workspace_id == DEFAULT_WORKSPACE
    ungrouped = parse_usage(fx("anthropic_usage_grouped.json"))
    assert ungrouped.events[0].attribution.api_key_id is None
    assert ungrouped.events[0].event_id == opus.event_id  # ids come from the raw group values
    assert opus.service_tier is ServiceTier.batch
    assert (opus.tokens.cache_write, opus.tokens.cache_write_1h) == (0, 20000)
    # batch = 50% of list: (50,000 x 5 + 20,000 x 10 + 10,000 x 25) / 1M / 2
    assert hand_cost("claude-opus-4.5", opus.tokens) / 2 == Decimal("0.35")
    assert long_ctx.tag("context_window") == "200k-1M" and long_ctx.tokens.prompt_total == 400000


def test_message_usage_splits_cache_creation_by_ttl(fx):
    r = normalize("anthropic-message", fx("anthropic_message.json"), occurred_at=WHEN)
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.cache_write_1h, t.output) == (1200, 20000, 1000, 2000, 850)
    assert t.prompt_total == 1200 + 3000 + 20000
    assert ev.event_id == "anthropic-message:msg_013Zva2CMHLNnXjNJJKqJ2EF" and ev.occurred_at == WHEN
    # 1200 x 3 + 20000 x 0.30 + 1000 x 3.75 + 2000 x 6 + 850 x 15 = 38100 per 1M
    assert hand_cost("claude-sonnet-4", t) == Decimal("0.0381")


def test_message_without_split_counts_all_cache_creation_as_5_minutes(fx):
    msg = json.loads(fx("anthropic_message.json"))
    del msg["usage"]["cache_creation"]
    (ev,) = parse_message(msg, occurred_at=WHEN).events
    assert (ev.tokens.cache_write, ev.tokens.cache_write_1h) == (3000, 0)


def test_stream_takes_the_final_cumulative_output_not_the_sum(fx):
    r = parse_message(fx("anthropic_stream.sse"), occurred_at="2025-06-01T09:30:00Z")
    (ev,) = r.events
    assert ev.tokens.output == 503  # deltas said 15 then 503: cumulative, never 518
    assert (ev.tokens.input, ev.tokens.cache_write) == (472, 2048)
    assert ev.model == "claude-haiku-4-5-20251001" and ev.event_id == "anthropic-message:msg_01StreamXyz"
    # 472 x 1 + 2048 x 1.25 + 503 x 5 = 5547 per 1M
    assert hand_cost("claude-haiku-4.5", ev.tokens) == Decimal("0.005547")
    assert "SECRET" not in repr(r)


def test_stream_as_a_list_of_events_and_missing_timestamp(fx):
    events = [json.loads(line[5:]) for line in fx("anthropic_stream.sse").decode().splitlines()
              if line.startswith("data:")]
    assert parse_message(events, occurred_at=WHEN).events[0].tokens.output == 503
    r = parse_message(events)
    assert r.events == [] and r.rejects[0].reason == "missing_field"


def test_malformed_anthropic_rows_are_rejected(fx):
    page = json.loads(fx("anthropic_usage_doc.json"))
    row = page["data"][0]["results"][0]
    page["data"][0]["results"] = [
        {**row, "uncached_input_tokens": None},
        {**row, "cache_creation": {"ephemeral_5m_input_tokens": -4}},
        {**row, "service_tier": "galactic"},
        {**row, "cache_creation": "lots"},
    ]
    page["data"].append({"starting_at": "yesterday-ish", "results": [row]})
    r = parse_usage(page)
    assert r.events == []
    assert [x.reason for x in r.rejects] == ["missing_field", "negative_value", "invalid_field", "invalid_field",
                                            "invalid_time"]
    cost = normalize("anthropic-cost", {"data": [{"starting_at": "2025-06-01T00:00:00Z",
                                                  "results": [{"amount": "12,50", "currency": "USD"}]}]})
    assert cost.cost_lines == [] and cost.rejects[0].reason == "invalid_field"
    msg = json.loads(fx("anthropic_message.json"))
    msg["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] = 5
    r = parse_message(msg, occurred_at=WHEN)
    assert r.rejects[0].reason == "inconsistent" and "SECRET" not in r.rejects[0].payload
