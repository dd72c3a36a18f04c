"""Unpriced never means free: an event the catalogue cannot price is charged by a stated policy
(provider cost, then a fallback, then block), keeps unpriced=True, and says which policy charged it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costwarden.budgets.controls import ControlBook, State
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.budgets.loader import load_budgets_text
from costwarden.config import load_settings
from costwarden.events import UsageEvent
from costwarden.money import to_nanos
from costwarden.streams.attribution import Attributor, default_rules
from costwarden.streams.catalogue import PriceCatalogue
from costwarden.streams.dedupe import DedupeWindow
from costwarden.streams.pricing import UnpricedPolicy
from costwarden.streams.process import Processor

CAT = PriceCatalogue.default()
TOKENS = {"input": 2_000, "cache_read": 1_000, "output": 500}


def ev(provider="openai", model="mystery-model-x", i=0, at=None, **kw) -> UsageEvent:
    at = at or datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    kw.setdefault("tokens", TOKENS)
    return UsageEvent(event_id=f"u{i}", occurred_at=at + timedelta(seconds=i), source="gateway",
                      provider=provider, model=model, **kw)


def test_without_a_policy_an_unknown_model_costs_nothing_and_says_so():
    p = CAT.price(ev())
    assert (p.unpriced, p.cost_nanos, p.policy, p.blocked) == (True, 0, "none", False)
    assert CAT.price(ev(model="gpt-4.1")).policy == "catalogue"


def test_provider_cost_is_charged_when_the_event_carries_one():
    cat = CAT.with_unpriced_policy(UnpricedPolicy(provider_cost=True, fallback=("provider_max",)))
    p = cat.price(ev(provider_cost={"amount": "0.0123456", "currency": "USD"}))
    assert (p.unpriced, p.policy, p.policy_detail, p.cost_nanos) == (True, "provider_cost", "USD", 12_345_600)
    assert p.breakdown == {"provider_cost": Decimal("0.0123456")}
    assert p.priced_model == "mystery-model-x"
    # a cost in another currency is not converted: the fallback charges it
    eur = cat.price(ev(provider_cost={"amount": "0.01", "currency": "EUR"}))
    assert eur.policy == "fallback"
    # a priced model ignores the provider's claim: the catalogue decides
    known = cat.price(ev(model="gpt-4.1", provider_cost={"amount": "99", "currency": "USD"}))
    assert (known.policy, known.unpriced, known.cost_nanos) == ("catalogue", False, 8_500_000)


def _max_rates(cat: PriceCatalogue, providers: list[str]) -> dict[str, Decimal]:
    """Independently of pricing.py: the highest rate per class over every version of every model."""
    best: dict[str, Decimal] = {}
    for name in providers:
        for mf in cat.file.providers[name].models.values():
            for v in mf.prices:
                for c in ("input", "cache_read", "cache_write", "cache_write_1h", "output"):
                    rate = getattr(v, c) if getattr(v, c) is not None else v.input
                    best[c] = max(best.get(c, rate), rate)
    return best


def test_provider_max_fallback_charges_each_class_at_the_providers_highest_rate():
    cat = CAT.with_unpriced_policy(UnpricedPolicy(fallback=("provider_max",)))
    p = cat.price(ev())
    top = _max_rates(CAT, ["openai"])
    exact = sum((Decimal(n) * top[c] / 1_000_000 for c, n in TOKENS.items()), Decimal(0))
    assert (p.unpriced, p.policy, p.policy_detail) == (True, "fallback", "provider_max:openai")
    assert p.exact_usd == exact and p.cost_nanos == to_nanos(exact) > 0
    # batch tier multipliers apply to the fallback rates too
    assert cat.price(ev(service_tier="batch")).exact_usd == exact / 2
    # a cloud's fallback includes the vendors it inherits
    bedrock = cat.price(ev(provider="aws.bedrock", model="anthropic.claude-99"))
    top_b = _max_rates(CAT, ["aws.bedrock", "anthropic"])
    assert bedrock.exact_usd == sum((Decimal(n) * top_b[c] / 1_000_000 for c, n in TOKENS.items()), Decimal(0))


def test_fixed_fallback_charges_the_configured_rates_per_1k_tokens():
    cat = CAT.with_unpriced_policy(UnpricedPolicy(fallback=("fixed",),
                                                  fixed_per_1k={"input": Decimal("0.01"), "output": Decimal("0.03")}))
    p = cat.price(ev())
    # 2,000 input x $0.01/1k + 1,000 cache reads at the input rate + 500 output x $0.03/1k
    assert (p.policy, p.policy_detail, p.exact_usd, p.cost_nanos) == ("fallback", "fixed", Decimal("0.045"), 45_000_000)


def test_fallbacks_are_tried_in_order_then_block():
    pol = UnpricedPolicy(fallback=("provider_max", "fixed"), fixed_per_1k={"input": Decimal("0.001"),
                                                                           "output": Decimal("0.002")}, block=True)
    cat = CAT.with_unpriced_policy(pol)
    assert cat.price(ev()).policy_detail == "provider_max:openai"
    # a provider the catalogue does not know has no "most expensive model": the fixed rates charge it
    assert cat.price(ev(provider="brand-new-cloud")).policy_detail == "fixed"
    blocked = CAT.with_unpriced_policy(UnpricedPolicy(fallback=("provider_max",), block=True)).price(
        ev(provider="brand-new-cloud"))
    assert (blocked.policy, blocked.blocked, blocked.unpriced, blocked.cost_nanos) == ("block", True, True, 0)


def test_unknown_gpu_types_are_charged_by_the_policy_too():
    gpu = {"gpu_hours": "2", "gpu_type": "tpu-v5e"}
    maxed = CAT.with_unpriced_policy(UnpricedPolicy(fallback=("provider_max",)))
    p = maxed.price(ev(provider="self_hosted", model="", tokens={}, compute=gpu))
    assert (p.unpriced, p.policy, p.breakdown, p.cost_nanos) == (True, "fallback", {"gpu": Decimal("7.60")}, 7_600_000_000)
    # the GPU is the cost: a self-hosted model's tokens are informational, as for a known GPU type
    with_tokens = maxed.price(ev(provider="self_hosted", model="llama-3.1-70b", compute=gpu))
    assert (with_tokens.policy, with_tokens.cost_nanos) == ("fallback", 7_600_000_000)
    fixed = CAT.with_unpriced_policy(UnpricedPolicy(fallback=("fixed",), fixed_per_gpu_hour=Decimal("2.25")))
    assert fixed.price(ev(provider="self_hosted", model="", tokens={}, compute=gpu)).cost_nanos == 4_500_000_000
    assert fixed.price(ev()).policy == "none"  # no token rates configured: the fixed fallback does not apply
    opencost = maxed.with_unpriced_policy(UnpricedPolicy(provider_cost=True)).price(
        ev(provider="self_hosted", model="", tokens={}, compute=gpu, provider_cost={"amount": "5.5"}))
    assert (opencost.policy, opencost.cost_nanos) == ("provider_cost", 5_500_000_000)


def test_settings_build_the_policy():
    s = load_settings(pricing={"unpriced": {"fallback": ["fixed", "provider_max"], "block": True,
                                            "fixed_usd_per_1k": {"input": "0.5", "output": "1.5"}}})
    pol = s.pricing.unpriced_policy()
    assert pol == UnpricedPolicy(provider_cost=True, fallback=("fixed", "provider_max"),
                                 fixed_per_1k={"input": Decimal("0.5"), "output": Decimal("1.5")}, block=True)
    assert load_settings().pricing.unpriced_policy() == UnpricedPolicy(provider_cost=True, fallback=("provider_max",))
    with pytest.raises(Exception, match="fixed fallback needs"):
        load_settings(pricing={"unpriced": {"fallback": ["fixed"]}})


BUDGETS = """version: 1
timezone: UTC
budgets:
  - id: proto-daily
    name: Prototype daily
    scope: {workflow: prototype}
    period: day
    amount: "0.50"
    thresholds:
      - {at: 100, basis: actual, actions: [{block: true}]}
"""


@pytest.mark.parametrize("policy,extra", [
    (UnpricedPolicy(provider_cost=True), {"provider_cost": {"amount": "0.05"}}),
    (UnpricedPolicy(fallback=("provider_max",)), {}),
    (UnpricedPolicy(fallback=("fixed",), fixed_per_1k={"input": Decimal("0.002"), "output": Decimal("0.006")}), {}),
])
def test_a_workflow_using_only_an_unknown_model_trips_its_hard_budget(policy, extra):
    proc = Processor(CAT.with_unpriced_policy(policy), Attributor(default_rules()),
                     BudgetLedger(load_budgets_text(BUDGETS, "budgets.yaml")), ControlBook(), DedupeWindow())
    events = [ev(i=i, attribution={"tags": {"team": "growth", "workflow": "prototype"}}, **extra) for i in range(200)]
    proc.begin()
    out = proc.enrich(events)
    signals, changes = proc.charge(out.charges)
    proc.commit()
    assert all(r["unpriced"] == 1 and r["cost_nanos"] > 0 for r in out.rows)  # reports still say unpriced
    assert [(c.after.workflow, c.after.state) for c in changes] == [("prototype", State.block)]
    assert proc.controls.get("prototype").state == State.block
    # with no policy the same month is free and nothing trips: the failure this policy exists for
    free = Processor(CAT, Attributor(default_rules()), BudgetLedger(load_budgets_text(BUDGETS, "budgets.yaml")),
                     ControlBook(), DedupeWindow())
    free.begin()
    assert free.charge(free.enrich([ev(i=i, attribution={"tags": {"workflow": "prototype"}}) for i in range(200)])
                       .charges) == ([], [])
