import json
from datetime import datetime, timezone
from decimal import Decimal

from connector_helpers import assert_disjoint, hand_cost

from costwarden.connectors import normalize
from costwarden.connectors.openai import parse_costs, parse_response_usage, parse_usage
from costwarden.events import Attribution, ServiceTier


def test_documented_usage_page_prices_cached_tokens_at_the_cached_rate(fx):
    r = parse_usage(fx("openai_usage_doc.json"))
    assert r.rejects == []
    (ev,) = r.events  # the empty second bucket yields nothing
    t = ev.tokens
    assert (t.input, t.cache_read, t.cache_write, t.output) == (1_250_000, 1_200_000, 0, 310_000)
    assert t.input + t.cache_read + t.cache_write == 2_450_000  # == input_tokens
    assert_disjoint(t)
    assert ev.requests == 1840 and ev.provider == "openai" and ev.model == "gpt-4.1-2025-04-14"
    assert ev.occurred_at == datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert ev.attribution.project_id == "proj_Xq8b3ZmT0cW4yR1s" and ev.attribution.api_key_id == "key_9fKd2LmQ7tVb1XaE"
    assert ev.attribution.user_id is None and ev.service_tier is ServiceTier.standard
    # 1.25M x $2 + 1.2M x $0.50 + 0.31M x $8 = $5.58 (treating input_tokens as uncached would say $7.98)
    assert hand_cost("gpt-4.1", t) == Decimal("5.58")


def test_old_schema_without_uncached_field_subtracts_cached_and_keeps_nulls(fx):
    (ev,) = parse_usage(fx("openai_usage_old_schema.json")).events
    assert (ev.tokens.input, ev.tokens.cache_read, ev.tokens.cache_write) == (1_250_000, 1_200_000, 0)
    assert ev.model == "" and ev.attribution.project_id is None and ev.attribution.api_key_id is None


def test_grouped_page_batch_flex_and_embeddings(fx):
    r = parse_usage(fx("openai_usage_grouped.json"))
    assert r.rejects == []
    batch, flex, emb = r.events
    assert batch.service_tier is ServiceTier.batch and batch.attribution.user_id == "user_abc"
    assert flex.service_tier is ServiceTier.flex
    assert flex.tokens.input + flex.tokens.cache_read == 300_000
    assert emb.operation == "embeddings" and emb.tokens.input == 5_000_000 and emb.tokens.output == 0
    assert len({e.event_id for e in r.events}) == 3
    # batch at 50% of the gpt-4o-mini list price: 1M x 0.15/2 + 0.2M x 0.60/2
    assert hand_cost("gpt-4o-mini", batch.tokens) / 2 == Decimal("0.135")


def test_repoll_of_a_grown_bucket_keeps_the_same_event_id(fx):
    page = json.loads(fx("openai_usage_doc.json"))
    first = parse_usage(page).events[0]
    page["data"][0]["results"][0]["input_tokens"] += 1000
    page["data"][0]["results"][0]["input_uncached_tokens"] += 1000
    page["data"][0]["results"][0]["num_model_requests"] += 1
    again = parse_usage(json.dumps(page)).events[0]
    assert again.event_id == first.event_id and again.tokens.input == first.tokens.input + 1000
    page["data"][0]["results"][0]["api_key_id"] = "key_other"
    assert parse_usage(page).events[0].event_id != first.event_id


def test_costs_page_amounts_are_exact_dollars(fx):
    r = normalize("openai-costs", fx("openai_costs_doc.json"))
    assert r.events == [] and r.rejects == []
    assert [line.amount for line in r.cost_lines] == [Decimal("2.5"), Decimal("0.6000000000000001"), Decimal("2.48")]
    line = r.cost_lines[0]
    assert line.currency == "USD" and line.project_id == "proj_Xq8b3ZmT0cW4yR1s" and line.api_key_id is None
    assert line.day.isoformat() == "2025-06-01" and line.line_item == "gpt-4.1-2025-04-14, input"
    assert parse_costs(fx("openai_costs_doc.json")) == r.cost_lines


def test_chat_completion_usage_with_cache_and_reasoning(fx):
    r = parse_response_usage(fx("openai_chat_completion.json"))
    (ev,) = r.events
    t = ev.tokens
    assert (t.input, t.cache_read, t.output, t.reasoning) == (86, 1920, 1300, 1024)
    assert t.input + t.cache_read == 2006 and ev.model == "o4-mini-2025-04-16"
    assert ev.event_id == "openai-response:chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    # 86 x 1.10 + 1920 x 0.275 + 1300 x 4.40 = 94.6 + 528 + 5720 per 1M (reasoning inside output, not added again)
    assert hand_cost("o4-mini", t) == Decimal("0.0063426")


def test_responses_api_usage_with_explicit_identity(fx):
    when = datetime(2025, 6, 1, 10, tzinfo=timezone.utc)
    r = normalize("openai-response", fx("openai_responses.json"), event_id="gw-123", occurred_at=when,
                  model="gpt-5", attribution=Attribution(tags={"team": "search"}))
    (ev,) = r.events
    assert (ev.tokens.input, ev.tokens.cache_read, ev.tokens.output, ev.tokens.reasoning) == (72, 256, 952, 704)
    assert ev.event_id == "gw-123" and ev.occurred_at == when and ev.tag("team") == "search"
    assert ev.service_tier is ServiceTier.priority
    assert hand_cost("gpt-5", ev.tokens) == Decimal("0.009642")


def test_inconsistent_or_malformed_rows_are_rejected_with_reasons(fx):
    page = json.loads(fx("openai_usage_doc.json"))
    row = page["data"][0]["results"][0]
    bad_rows = [
        {**row, "input_uncached_tokens": 5},                                 # does not add up
        {**row, "input_cached_tokens": 9_000_000, "input_uncached_tokens": None},  # cached > input
        {**row, "output_tokens": -1},
        {**row, "input_tokens": "lots"},
        {**row, "num_model_requests": None},
        {**row, "input_tokens": 10**20, "input_uncached_tokens": None, "input_cached_tokens": 0},
        {**row, "object": "organization.usage.images.result"},
        {**row, "batch": "yes"},
        "not-a-row",
    ]
    page["data"][0]["results"] = bad_rows + [row]
    r = parse_usage(page)
    assert len(r.events) == 1
    assert [x.reason for x in r.rejects] == ["inconsistent", "inconsistent", "negative_value", "invalid_field",
                                            "missing_field", "absurd_value", "unsupported", "invalid_field",
                                            "not_an_object"]
    assert all(x.detail for x in r.rejects)
    assert '"output_tokens": -1' in r.rejects[2].payload
