"""`costwarden catalogue update`: the catalogue built from genai-prices, layered with overrides,
refreshed without losing history, and the shipped default that results."""
from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from importlib import resources

import pytest

genai_prices = pytest.importorskip("genai_prices")

from genai_prices.types import (  # noqa: E402
    ClauseContains, ClauseEquals, ClauseOr, ClauseRegex, ClauseStartsWith, ConditionalPrice, ModelInfo, ModelPrice,
    Provider, StartDateConstraint, Tier, TieredPrices, TimeOfDateConstraint,
)

from costwarden.events import UsageEvent  # noqa: E402
from costwarden.streams import catalogue_update as cu  # noqa: E402
from costwarden.streams.catalogue import PriceCatalogue, parse_catalogue  # noqa: E402

D = Decimal
CAT = PriceCatalogue.default()


def ev(provider, model, when="2026-11-20T12:00:00Z", **kw):
    return UsageEvent(event_id="e", occurred_at=when, source="t", provider=provider, model=model, **kw)


# -- the shipped default -----------------------------------------------------------------------------
@pytest.mark.parametrize("provider,model", [
    ("openai", "text-embedding-3-small"), ("openai", "gpt-4.1-nano"), ("openai", "o1"),
    ("anthropic", "claude-3-7-sonnet"), ("anthropic", "claude-3-7-sonnet-20250219"),
    ("gcp.gemini", "gemini-2.0-flash"), ("gemini", "gemini-2.0-flash-001"),
    ("mistral_ai", "mistral-large-latest"), ("mistral", "mistral-large"),
    ("aws.bedrock", "us.meta.llama3-3-70b-instruct-v1:0"), ("bedrock", "meta.llama3-1-8b-instruct-v1:0"),
    ("x_ai", "grok-4"), ("xai", "grok-3"), ("deepseek", "deepseek-chat"), ("cohere", "command-r-plus"),
    ("groq", "llama-3.3-70b-versatile"), ("openrouter", "anthropic/claude-3.5-sonnet"),
])
def test_the_default_catalogue_prices_the_models_people_use(provider, model):
    p = CAT.price(ev(provider, model, tokens={"input": 10_000, "output": 1_000}))
    assert not p.unpriced and p.cost_nanos > 0, (provider, model)


def test_every_seed_price_and_alias_is_unchanged_and_every_model_says_where_its_prices_come_from():
    over = parse_catalogue(resources.files("costwarden.streams").joinpath("overrides.yaml").read_text(), partial=True)
    for pname, pf in over.providers.items():
        for key, mf in pf.models.items():
            ours = CAT.file.providers[pname].models[key]
            assert ours.prices == mf.prices and set(mf.aliases) <= set(ours.aliases), (pname, key)
            assert ours.source == mf.source
        for key, gf in pf.gpus.items():
            assert CAT.file.providers[pname].gpus[key].prices == gf.prices
    assert all(mf.source for pf in CAT.file.providers.values() for mf in pf.models.values())
    assert CAT.file.provenance["source"].startswith("genai-prices ")
    assert CAT.model_count() > 2000


def test_the_shipped_catalogue_is_what_the_installed_snapshot_makes():
    if CAT.file.provenance["source"].split(" (")[0] != f"genai-prices {cu.genai_version()}":
        pytest.skip("another genai-prices is installed: `costwarden catalogue update` would refresh the catalogue")
    u = cu.build(CAT.file, [cu.default_overrides()], today=date(2026, 12, 1))
    assert not u.changed, u.diff[:20]
    assert u.data["version"] == CAT.version


def test_cloud_spellings_of_seed_models_price_as_the_vendor_and_other_cloud_entries_keep_their_own_price():
    t = {"input": 1_000_000}
    haiku = CAT.price(ev("aws.bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", tokens=t))
    assert (haiku.priced_model, haiku.cost_nanos) == ("claude-haiku-4-5", 1_000_000_000)
    regional = CAT.resolve("aws.bedrock", "us.anthropic.claude-opus-4-6-v1:0")
    global_ = CAT.resolve("aws.bedrock", "global.anthropic.claude-opus-4-6-v1:0")
    assert regional.key.startswith("regional.") and global_.key.startswith("global.")
    assert CAT.resolve("azure.ai.openai", "o3").provider == "openai"  # keeps o3's price history
    assert CAT.price(ev("azure", "text-embedding-ada-002", tokens=t)).cost_nanos == 100_000_000  # Azure's own ada


# -- the mapping, on a snapshot made up for the test ---------------------------------------------------
def snapshot(m1_prices=None, extra=()):
    return [
        Provider(id="openai", name="OpenAI", api_pattern="x", models=[
            ModelInfo(id="m1", match=ClauseOr(or_=[ClauseEquals(equals="m1"), ClauseEquals(equals="m1-2026-01-01")]),
                      prices=m1_prices or ModelPrice(input_mtok=D("1"), output_mtok=D("4"))),
            ModelInfo(id="embed-x", match=ClauseStartsWith(starts_with="embed-x"),
                      prices=ModelPrice(input_mtok=D("0.0200000000001"))),
            ModelInfo(id="tts-x", match=ClauseEquals(equals="tts-x"), prices=ModelPrice(audio_hours=D("3"))),
            *extra]),
        Provider(id="anthropic", name="Anthropic", api_pattern="x", models=[
            ModelInfo(id="claude-z", match=ClauseOr(or_=[ClauseStartsWith(starts_with="claude-z"),
                                                           ClauseRegex(regex=r"^claude-zz-\d{8}$")]),
                      prices=ModelPrice(input_mtok=TieredPrices(base=D("3"), tiers=[Tier(start=200_000, price=D("6"))]),
                                        output_mtok=D("15"), cache_read_mtok=D("0.3"), cache_write_mtok=D("3.75")))]),
        Provider(id="aws", name="AWS", api_pattern="x", models=[
            ModelInfo(id="regional.anthropic.claude-z-v1:0", match=ClauseContains(contains="us.anthropic.claude-z"),
                      prices=ModelPrice(input_mtok=D("3.3"), output_mtok=D("16.5"))),
            ModelInfo(id="meta.llama9-v1:0", match=ClauseContains(contains="meta.llama9"),
                      prices=ModelPrice(input_mtok=D("0.5"), output_mtok=D("0.7")))]),
        Provider(id="deepseek", name="DeepSeek", api_pattern="x", models=[
            ModelInfo(id="ds", match=ClauseEquals(equals="ds"), prices=[
                ConditionalPrice(prices=ModelPrice(input_mtok=D("0.1"), output_mtok=D("0.2"))),
                ConditionalPrice(constraint=TimeOfDateConstraint(start_time=time(0, 30), end_time=time(16, 30)),
                                 prices=ModelPrice(input_mtok=D("0.2"), output_mtok=D("0.4")))])]),
    ]


OVERRIDES = """
version: o1
service_tiers: {standard: "1", batch: "0.5"}
provider_aliases: {bedrock: aws.bedrock}
providers:
  anthropic:
    models:
      claude-z:
        source: "negotiated 2026"
        prices: [{effective_from: 2026-01-01, input: "2.40", output: "12.00", cache_write_1h: "4.80"}]
  aws.bedrock:
    inherit: [anthropic]
"""


def build(current=None, snap=None, today=date(2026, 12, 1), overrides=OVERRIDES):
    layers = [(parse_catalogue(overrides, "ours.yaml", partial=True), "ours.yaml")] if overrides else []
    return cu.build(current, layers, today=today, providers=snap or snapshot())


def test_token_classes_tiers_dates_and_provenance_are_mapped():
    u = build(overrides=None)
    cat = u.catalogue
    z = cat.file.providers["anthropic"].models["claude-z"]
    v = z.prices[0]
    # cache_write_1h: genai bills 1-hour writes as cache writes when it lists no 1 h rate
    assert (v.input, v.cache_read, v.cache_write, v.cache_write_1h, v.output) == \
        (D(3), D("0.3"), D("3.75"), D("3.75"), D(15))
    assert v.long_context.above_prompt_tokens == 200_000 and v.long_context.input == D(6)
    assert v.long_context.output == D(15)  # not tiered: the base rate in the long-context card too
    assert z.source == f"genai-prices {cu.genai_version()}" and v.effective_from.date() == date(2000, 1, 1)
    assert "claude-zz" in z.aliases and z.prefixes == ["claude-z"]
    assert cat.resolve("anthropic", "claude-z-20260101-preview").key == "claude-z"  # a prefix
    assert cat.resolve("anthropic", "claude-zz-20260101").key == "claude-z"  # a regex with a date snapshot
    # more than 6 decimal places: rounded to our unit; no token price: left out, with the reason
    assert cat.file.providers["openai"].models["embed-x"].prices[0].input == D("0.02")
    assert any(r[1] == "tts-x" and "audio_hours" in r[2] for r in u.report.skipped)
    assert u.report.not_priced_units["audio_hours"] == 1
    # a time-of-day price is charged at the peak rate
    assert cat.file.providers["deepseek"].models["ds"].prices[0].input == D("0.2")
    # 200,001-token prompt: the long-context rate for the whole request
    long = cat.price(ev("anthropic", "claude-z", tokens={"input": 200_001, "output": 1}))
    assert long.long_context and long.exact_usd == D("1.200006") + D("0.000015")
    assert u.data["provenance"]["source"] == f"genai-prices {cu.genai_version()} (bundled snapshot)"


def test_overrides_replace_prices_keep_names_and_clouds_inherit_them():
    cat = build().catalogue
    z = cat.file.providers["anthropic"].models["claude-z"]
    assert (z.source, z.prices[0].input, z.prices[0].cache_write_1h) == ("negotiated 2026", D("2.40"), D("4.80"))
    assert "claude-zz" in z.aliases and z.prefixes == ["claude-z"]
    # the Bedrock entry of an overridden vendor model is priced through inherit, at the override
    p = cat.price(ev("bedrock", "us.anthropic.claude-z-v1:0", tokens={"input": 1_000_000}))
    assert (p.priced_model, p.cost_nanos) == ("claude-z", 2_400_000_000)
    assert cat.price(ev("aws.bedrock", "us.meta.llama9-v1:0", tokens={"input": 1_000_000})).cost_nanos == 500_000_000
    batch = cat.price(ev("anthropic", "claude-z", tokens={"input": 2_000_000}, service_tier="batch"))
    assert batch.cost_nanos == 2_400_000_000


def test_a_refresh_keeps_history_adds_dated_versions_and_dates_undated_changes_on_the_update_day():
    first = build()
    cur = first.catalogue.file
    later = snapshot(m1_prices=[
        ConditionalPrice(prices=ModelPrice(input_mtok=D("1"), output_mtok=D("4"))),
        ConditionalPrice(constraint=StartDateConstraint(start_date=date(2026, 12, 10)),
                         prices=ModelPrice(input_mtok=D("0.5"), output_mtok=D("2")))])
    later[1].models = []  # claude-z gone from the snapshot: the override still prices it
    later[3].models[0].prices[0].prices = ModelPrice(input_mtok=D("0.3"), output_mtok=D("0.5"))  # undated change
    del later[3].models[0].prices[1]
    u = build(cur, later, today=date(2026, 12, 5))
    assert u.changed and u.data["version"] == "2026-12-05.genai-prices-" + cu.genai_version()
    cat = u.catalogue
    m1 = cat.file.providers["openai"].models["m1"]
    assert [(v.effective_from.date(), v.input) for v in m1.prices] == [(date(2000, 1, 1), D(1)),
                                                                      (date(2026, 12, 10), D("0.5"))]
    ds = cat.file.providers["deepseek"].models["ds"]
    assert [(v.effective_from.date(), v.input, v.source) for v in ds.prices] == [
        (date(2000, 1, 1), D("0.2"), None),
        (date(2026, 12, 5), D("0.3"), f"genai-prices {cu.genai_version()} (undated change)")]
    # events before the change keep their price: re-pricing history gives the same answer
    assert cat.price(ev("deepseek", "ds", "2026-12-04T23:59:59Z", tokens={"input": 1_000_000})).cost_nanos == 200_000_000
    assert cat.price(ev("deepseek", "ds", "2026-12-05T00:00:00Z", tokens={"input": 1_000_000})).cost_nanos == 300_000_000
    assert "~ openai/m1: input 1, output 4 -> input 0.5, output 2 (1 -> 2 versions, latest from 2026-12-10)" in u.diff
    # a model the snapshot dropped is kept
    gone = snapshot()
    gone[0].models = [m for m in gone[0].models if m.id != "embed-x"]
    kept = build(cur, gone)
    assert "embed-x" in kept.catalogue.file.providers["openai"].models
    assert ("openai", "embed-x") in kept.report.kept_from_current
    # nothing new: no new version
    same = build(cur)
    assert not same.changed and same.data["version"] == cur.version
    assert same.diff == [f"version: {cur.version} -> {cur.version}"]


def test_the_diff_names_every_added_and_changed_model():
    u = build(None)
    assert "+ openai/m1: input 1, output 4 [genai-prices " + cu.genai_version() + "]" in u.diff
    assert "+ anthropic/claude-z: input 2.40, cache_write_1h 4.80, output 12.00 [negotiated 2026]" in u.diff
    assert u.counts["models_added"] == u.counts["models_after"] == 5
