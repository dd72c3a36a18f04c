"""Pricing of usage events against the versioned price catalogue.

Expected costs are computed by hand from the list prices (USD per 1M tokens) in
shared/reference/usage-formats.md and written out as nano-dollars.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.errors import FileError
from costwarden.events import UsageEvent
from costwarden.money import to_nanos
from costwarden.streams.catalogue import PriceCatalogue

CAT = PriceCatalogue.default()


def ev(provider: str, model: str, when: str = "2025-11-30T12:00:00Z", **kw) -> UsageEvent:
    return UsageEvent(event_id="e1", occurred_at=when, source="test", provider=provider, model=model, **kw)


def test_gpt41_snapshot_with_cached_input_and_reasoning_inside_output():
    # 1,250,000 uncached x $2 + 1,200,000 cached x $0.50 + 310,000 output x $8 = 2.50 + 0.60 + 2.48
    p = CAT.price(ev("openai", "gpt-4.1-2025-04-14",
                     tokens={"input": 1_250_000, "cache_read": 1_200_000, "output": 310_000, "reasoning": 90_000}))
    assert (p.cost_nanos, p.unpriced, p.priced_model) == (5_580_000_000, False, "gpt-4.1")
    assert p.breakdown == {"input": Decimal("2.5"), "cache_read": Decimal("0.6"), "output": Decimal("2.48")}
    assert p.catalogue_version == CAT.version == "2026-12-01.genai-prices-0.2.3.2"


SONNET_DAY = {"input": 1_245_880, "cache_read": 9_830_400, "cache_write": 184_320, "cache_write_1h": 10_000,
              "output": 402_117}


def test_claude_sonnet_4_with_5_minute_and_1_hour_cache_writes():
    # a day of the Anthropic usage report: no request count, grouped by context window
    p = CAT.price(ev("anthropic", "claude-sonnet-4-20250514", tokens=SONNET_DAY, requests=0,
                     attribution={"tags": {"context_window": "0-200k"}}))
    # 3.73764 + 2.94912 + 0.6912 (x $3.75) + 0.06 (x $6.00) + 6.031755 = 13.469715
    assert p.breakdown["cache_write"] == Decimal("0.6912")
    assert p.breakdown["cache_write_1h"] == Decimal("0.06")
    assert (p.cost_nanos, p.priced_model, p.long_context) == (13_469_715_000, "claude-sonnet-4", False)
    # without the tag, a bucket of unknown request count is priced at the standard rates too
    assert CAT.price(ev("anthropic", "claude-sonnet-4-20250514", tokens=SONNET_DAY, requests=0)).cost_nanos == 13_469_715_000


def test_claude_sonnet_4_in_the_200k_to_1m_window_uses_the_long_context_rates():
    p = CAT.price(ev("anthropic", "claude-sonnet-4-20250514", tokens=SONNET_DAY, requests=0,
                     attribution={"tags": {"context_window": "200k-1M"}}))
    # 7.47528 + 5.89824 + 1.3824 + 0.12 + 9.0476325 = 23.9235525 -> 23,923,552,500 nanos exactly
    assert (p.long_context, p.exact_usd, p.cost_nanos) == (True, Decimal("23.9235525"), 23_923_552_500)


def test_batch_tier_is_half_of_standard_and_flex_too():
    tokens = {"input": 1_250_000, "cache_read": 1_200_000, "output": 310_000}
    assert CAT.price(ev("openai", "gpt-4.1", tokens=tokens, service_tier="batch")).cost_nanos == 2_790_000_000
    assert CAT.price(ev("openai", "gpt-4.1", tokens=tokens, service_tier="flex")).cost_nanos == 2_790_000_000
    assert CAT.price(ev("openai", "gpt-4.1", tokens=tokens, service_tier="priority")).cost_nanos == 5_580_000_000


def test_openai_cache_writes_without_a_listed_rate_cost_the_input_rate():
    p = CAT.price(ev("openai", "gpt-4.1", tokens={"cache_write": 1_000_000}))
    assert p.cost_nanos == 2_000_000_000


def test_gemini_25_pro_up_to_200k_prompt_uses_the_standard_rates():
    # prompt = 150,000 + 50,000 = 200,000: not above the threshold
    p = CAT.price(ev("gcp.gemini", "gemini-2.5-pro", tokens={"input": 150_000, "cache_read": 50_000, "output": 2_000}))
    # 0.1875 + 0.00625 + 0.02
    assert (p.cost_nanos, p.long_context) == (213_750_000, False)


def test_gemini_25_pro_over_200k_prompt_uses_the_higher_rates_for_the_whole_request():
    p = CAT.price(ev("gcp.gemini", "gemini-2.5-pro", tokens={"input": 150_001, "cache_read": 50_000, "output": 2_000}))
    # 150,001 x 2.50 = 0.3750025; 50,000 x 0.25 = 0.0125; 2,000 x 15 = 0.03 -> 0.4175025 = 417,502,500 nanos
    assert p.long_context is True
    assert p.exact_usd == Decimal("0.4175025")
    assert p.cost_nanos == 417_502_500


def test_long_context_of_an_aggregated_event_uses_the_average_prompt_per_request():
    p = CAT.price(ev("gcp.gemini", "gemini-2.5-pro", requests=2, tokens={"input": 300_000}))
    assert (p.long_context, p.cost_nanos) == (False, 375_000_000)


@pytest.mark.parametrize("model_id", [
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
    "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0",
])
def test_bedrock_inference_profile_ids_and_arns_price_as_claude_sonnet_4(model_id):
    p = CAT.price(ev("aws.bedrock", model_id, tokens={"input": 412, "cache_read": 9_216, "output": 356}))
    # 0.001236 + 0.0027648 + 0.00534 = 0.0093408 -> 9,340,800 nanos
    assert (p.cost_nanos, p.unpriced, p.priced_model) == (9_340_800, False, "claude-sonnet-4")


def test_same_models_through_azure_and_vertex_and_litellm_provider_names():
    assert CAT.price(ev("azure.ai.openai", "gpt-4o-mini-2024-07-18", tokens={"input": 1_000_000})).cost_nanos == 150_000_000
    assert CAT.price(ev("gcp.vertex_ai", "claude-sonnet-4@20250514", tokens={"output": 1_000})).cost_nanos == 15_000_000
    assert CAT.price(ev("vertex_ai", "publishers/google/models/gemini-2.5-flash",
                        tokens={"input": 1_000_000})).cost_nanos == 300_000_000
    assert CAT.price(ev("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0",
                        tokens={"input": 100_000})).cost_nanos == 300_000_000


def test_an_exact_snapshot_entry_beats_the_date_stripped_model():
    # gpt-4o-2024-05-13 kept its launch price ($5 / 1M input), unlike later gpt-4o snapshots ($2.50)
    assert CAT.price(ev("openai", "gpt-4o-2024-05-13", tokens={"input": 1_000_000})).cost_nanos == 5_000_000_000
    assert CAT.price(ev("openai", "gpt-4o-2024-11-20", tokens={"input": 1_000_000})).cost_nanos == 2_500_000_000


def test_price_change_applies_from_its_effective_date():
    tokens = {"input": 1_000_000, "output": 1_000_000}
    # o3: $10 / $40 at launch, $2 / $8 from 2025-06-10
    before = CAT.price(ev("openai", "o3-2025-04-16", "2025-06-09T23:59:59Z", tokens=tokens))
    after = CAT.price(ev("openai", "o3-2025-04-16", "2025-06-10T00:00:00Z", tokens=tokens))
    assert (before.cost_nanos, after.cost_nanos) == (50_000_000_000, 10_000_000_000)
    # older than any version: the first version covers it
    assert CAT.price(ev("openai", "o3", "2024-01-01T00:00:00Z", tokens=tokens)).cost_nanos == 50_000_000_000


@pytest.mark.parametrize("provider,model", [
    ("openai", "GPT-99-Turbo"), ("openai", "claude-sonnet-4"), ("some-new-cloud", "gpt-4.1"), ("openai", ""),
    ("openai", "ft:gpt-4.1-2025-04-14:acme::abc123"),
])
def test_unknown_model_is_unpriced_with_cost_zero_never_an_exception(provider, model):
    p = CAT.price(ev(provider, model, tokens={"input": 1_000, "output": 1_000}))
    assert (p.cost_nanos, p.unpriced, p.priced_model, p.breakdown) == (0, True, model.lower(), {})


def test_gpu_hours_on_h100_from_an_opencost_gpu_label():
    p = CAT.price(ev("self_hosted", "llama-3.1-70b", compute={"gpu_hours": "12.5", "gpu_type": "NVIDIA-H100-80GB-HBM3"},
                     tokens={"input": 5_000_000, "output": 900_000}))
    # 12.5 h x $3.00; tokens of a self-hosted model are informational (the GPU is the cost)
    assert (p.cost_nanos, p.unpriced, p.priced_gpu) == (37_500_000_000, False, "h100")
    assert p.breakdown == {"gpu": Decimal("37.500")}


def test_gpu_hours_on_an_unknown_gpu_type_are_unpriced():
    p = CAT.price(ev("self_hosted", "", compute={"gpu_hours": "1", "gpu_type": "tpu-v5e"}))
    assert (p.cost_nanos, p.unpriced) == (0, True)


@pytest.mark.parametrize("tokens,nanos", [(2, 38), (6, 112), (10, 188), (14, 262)])
def test_rounding_is_half_even_at_exactly_half_a_nano(tokens, nanos):
    # gemini-1.5-flash cache reads are $0.01875 / 1M = 18.75 nanos a token:
    # 2 tokens = 37.5 nanos, 6 = 112.5, 10 = 187.5, 14 = 262.5 (each to its even neighbour)
    p = CAT.price(ev("gcp.gemini", "gemini-1.5-flash", tokens={"cache_read": tokens}))
    assert p.exact_usd * 1_000_000_000 == Decimal(tokens) * Decimal("18.75")
    assert p.exact_usd * 1_000_000_000 % 1 == Decimal("0.5")
    assert p.cost_nanos == nanos


CUSTOM = """
version: "t1"
fallback_providers: [acme]
providers:
  acme:
    models:
      m1:
        prices:
          - {effective_from: 2025-01-01, input: "1.00", output: "2.00"}
          - {effective_from: "2025-03-01T12:00:00Z", input: "0.50", output: "1.00"}
  anthropic:
    models:
      claude-sonnet-4: {prices: [{effective_from: 2025-01-01, input: "3", output: "15"}]}
  aws.bedrock:
    inherit: [anthropic]
    service_tiers: {batch: "0.4"}
    models:
      claude-sonnet-4: {prices: [{effective_from: 2025-01-01, input: "3.30", output: "16.50"}]}
"""


def test_custom_catalogue_with_a_time_of_day_effective_date(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(CUSTOM)
    cat = PriceCatalogue.from_yaml(path)
    t = {"input": 1_000_000}
    assert cat.price(ev("acme", "m1", "2025-03-01T11:59:59Z", tokens=t)).cost_nanos == 1_000_000_000
    assert cat.price(ev("acme", "m1", "2025-03-01T12:00:00Z", tokens=t)).cost_nanos == 500_000_000
    assert cat.price(ev("acme", "m1", tokens=t)).catalogue_version == "t1"


def test_provider_entries_override_inherited_ones_and_fallback_is_explicit():
    cat = PriceCatalogue.from_text(CUSTOM)
    t = {"input": 1_000_000}
    assert cat.price(ev("aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", tokens=t)).cost_nanos == 3_300_000_000
    assert cat.price(ev("aws.bedrock", "claude-sonnet-4", tokens=t, service_tier="batch")).cost_nanos == 1_320_000_000
    assert cat.price(ev("anthropic", "claude-sonnet-4", tokens=t, service_tier="batch")).cost_nanos == 3_000_000_000
    # a provider the file does not list resolves through fallback_providers only
    assert cat.price(ev("gateway-x", "m1", tokens=t)).cost_nanos == 500_000_000
    assert CAT.price(ev("gateway-x", "gpt-4.1", tokens=t)).unpriced


BAD = """\
version: "bad"
providers:
  openai:
    models:
      gpt-4.1:
        aliases: [gpt-4.1-2025-04-14]
        prices:
          - effective_from: 2025-13-01
            input: 2.00
            inptu: "1"
            output: "-8"
      gpt-4.1-copy:
        aliases: [gpt-4.1-2025-04-14]
        prices: [{effective_from: 2025-04-14, input: "2", output: "8"}]
      gpt-4o:
        prices: []
      gpt-4o:
        prices: [{effective_from: 2024-01-01, input: "2", output: "8"}]
  aws.bedrock:
    inherit: [anthropic]
"""


def test_bad_catalogue_reports_every_error_with_its_line_in_one_pass():
    with pytest.raises(FileError) as info:
        PriceCatalogue.from_text(BAD, "prices.yaml")
    errors = {(line, field): msg for f, line, field, msg in info.value.errors}
    assert all(f == "prices.yaml" for f, *_ in info.value.errors)
    base = "providers.openai.models.gpt-4.1.prices[0]"
    assert "not a date" in errors[(8, f"{base}.effective_from")]
    assert 'unquoted number 2.00 is read as a binary float; quote it: "2.00"' == errors[(9, f"{base}.input")]
    assert "unknown key 'inptu'" == errors[(10, f"{base}.inptu")]
    assert "negative" in errors[(11, f"{base}.output")]
    assert "already used by 'gpt-4.1'" in errors[(13, "providers.openai.models.gpt-4.1-copy.aliases[0]")]
    assert "duplicate key 'gpt-4o' (first on line 15)" == errors[(17, "providers.openai.models.gpt-4o")]
    assert "unknown provider 'anthropic'" in errors[(20, "providers.aws.bedrock.inherit[0]")]
    assert len(info.value.errors) == 7
    assert "prices.yaml:9: providers.openai.models.gpt-4.1.prices[0].input:" in str(info.value)


@pytest.mark.parametrize("text,line,message", [
    ("version: 'x'\nproviders: {}\nnope: 1\n", 3, "unknown key 'nope'"),
    ("providers: {}\n", 1, "required field is missing"),
    ("version: 'x'\nproviders:\n  p:\n    models: {m: {prices: [{effective_from: 2025-01-01, input: '1',\n"
     "      output: '1'}, {effective_from: '2025-01-01', input: '2', output: '2'}]}}\n", 5, "repeats prices[0]"),
    ("version: 'x'\nproviders: {p: {models: {m: {prices: [{effective_from: 2025-01-01, input: '0.0000001', "
     "output: '1'}]}}}}\n", 2, "more than 6 decimal places"),
    ("version: 'x'\nproviders: [oops\n", 3, "expected"),
])
def test_other_catalogue_mistakes_are_reported_with_a_line(text, line, message):
    with pytest.raises(FileError) as info:
        PriceCatalogue.from_text(text)
    assert any(ln == line and message in msg for _, ln, _, msg in info.value.errors), info.value.errors


def test_unreadable_catalogue_file_is_a_file_error(tmp_path):
    with pytest.raises(FileError, match="cannot read the price catalogue"):
        PriceCatalogue.from_yaml(tmp_path / "missing.yaml")


# Rates per 1M from the reference table, restated here so the property test is independent.
TABLE = {
    ("openai", "gpt-4.1"): ("2.00", "0.50", "2.00", "2.00", "8.00"),
    ("openai", "o4-mini"): ("1.10", "0.275", "1.10", "1.10", "4.40"),
    ("anthropic", "claude-haiku-4-5"): ("1.00", "0.10", "1.25", "2.00", "5.00"),
    ("anthropic", "claude-3-5-haiku"): ("0.80", "0.08", "1.00", "1.60", "4.00"),
    ("gcp.gemini", "gemini-2.5-flash"): ("0.30", "0.03", "0.30", "0.30", "2.50"),
}
CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output")
TIERS = {"standard": Decimal(1), "batch": Decimal("0.5"), "flex": Decimal("0.5"), "priority": Decimal(1)}
count = st.integers(min_value=0, max_value=2_000_000_000)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(TABLE)), tier=st.sampled_from(sorted(TIERS)),
       counts=st.tuples(count, count, count, count, count), requests=st.integers(1, 1000))
def test_event_cost_is_the_sum_of_its_exact_parts_rounded_once(key, tier, counts, requests):
    provider, model = key
    p = CAT.price(ev(provider, model, tokens=dict(zip(CLASSES, counts)), service_tier=tier, requests=requests))
    exact = sum((Decimal(n) * Decimal(r) / 1_000_000 * TIERS[tier] for n, r in zip(counts, TABLE[key])), Decimal(0))
    assert p.exact_usd == exact
    assert p.cost_nanos == to_nanos(exact)


def test_default_catalogue_is_packaged_and_loaded_once():
    assert PriceCatalogue.default() is CAT
    assert CAT.price(ev("openai", "gpt-5", tokens={"output": 1})).cost_nanos == 10_000


def test_rounding_happens_once_per_event_not_per_token_class():
    # gemini-1.5-flash at the batch tier (x 0.5): 1 input token = 37.5 nanos, 2 cached = 18.75 nanos
    # -> exact 56.25 -> 56 (rounding each class first would give 38 + 19 = 57)
    p = CAT.price(ev("gcp.gemini", "gemini-1.5-flash", tokens={"input": 1, "cache_read": 2}, service_tier="batch"))
    assert p.breakdown == {"input": Decimal("0.0000000375"), "cache_read": Decimal("0.00000001875")}
    assert p.cost_nanos == 56


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["claude-sonnet-4", "claude-haiku-4-5", "claude-3-5-haiku", "claude-opus-4-5"]),
       region=st.sampled_from(["", "us.", "eu.", "apac.", "global."]), date=st.sampled_from(["", "-20250514"]),
       suffix=st.sampled_from(["", "-v1:0", "-v2:0"]), arn=st.booleans(), upper=st.booleans())
def test_any_bedrock_spelling_of_a_catalogue_model_resolves_to_it(key, region, date, suffix, arn, upper):
    model_id = f"{region}anthropic.{key}{date}{suffix}"
    if arn:
        model_id = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{model_id}"
    p = CAT.price(ev("aws.bedrock", model_id.upper() if upper else model_id, tokens={"output": 1_000}))
    assert (p.unpriced, p.priced_model) == (False, key)
