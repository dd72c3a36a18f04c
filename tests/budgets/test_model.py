"""The budget model: scopes, periods, actions, thresholds, cross-budget rules."""
from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from costwarden.budgets.model import Action, Budget, BudgetFile, Period, Scope, SpikeRule, Threshold


# -- scope -----------------------------------------------------------------------------------

def test_empty_scope_matches_everything_including_missing_dims():
    assert Scope().is_empty
    assert Scope().matches({})
    assert Scope().matches({"team": "search", "model": None})


def test_wildcards_lists_and_and_across_dimensions():
    s = Scope(team="search", workflow="rag-*", model=["gpt-4*", "o3"])
    assert s.matches({"team": "search", "workflow": "rag-answer", "model": "gpt-4.1-2025-04-14"})
    assert s.matches({"team": "search", "workflow": "rag-", "model": "o3"})
    assert not s.matches({"team": "search", "workflow": "rag-answer", "model": "o3-mini"})  # o3 is exact
    assert not s.matches({"team": "ads", "workflow": "rag-answer", "model": "o3"})
    assert not s.matches({"team": "search", "workflow": "summarise", "model": "o3"})


def test_question_mark_and_character_sets():
    s = Scope(env="prod-?", provider="[ao]*")
    assert s.matches({"env": "prod-1", "provider": "openai"})
    assert s.matches({"env": "prod-b", "provider": "anthropic"})
    assert not s.matches({"env": "prod-12", "provider": "openai"})
    assert not s.matches({"env": "prod-1", "provider": "google"})


def test_missing_dimension_matches_only_bare_star():
    assert not Scope(team="search").matches({"workflow": "x"})
    assert not Scope(team="search").matches({"team": None})
    assert not Scope(team="*-search").matches({})
    assert not Scope(team="*search").matches({})
    assert Scope(team="*").matches({})
    assert Scope(team=["search", "*"]).matches({"team": None})


def test_matching_is_case_sensitive_and_literal_dots():
    assert not Scope(team="search").matches({"team": "Search"})
    assert not Scope(model="gpt-4.1").matches({"model": "gpt-4x1"})


def test_scope_rejects_unknown_dimensions_and_empty_selectors():
    with pytest.raises(ValidationError, match="teams"):
        Scope(teams="search")
    with pytest.raises(ValidationError, match="at least one pattern"):
        Scope(team=[])
    with pytest.raises(ValidationError, match="must not be empty"):
        Scope(model=["gpt-4*", ""])


def test_selectors_lists_what_is_set():
    assert Scope(team="search", model=["a", "b"]).selectors() == {"team": ["search"], "model": ["a", "b"]}


# -- period ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kind", "seconds"), [
    ("day", "day", None), ("week", "week", None), ("month", "month", None), ("quarter", "quarter", None),
    ("24h", "rolling", 86400), ("7d", "rolling", 604800), ("90m", "rolling", 5400),
])
def test_periods(text, kind, seconds):
    p = Period(text)
    assert (p.kind, p.rolling_seconds, str(p)) == (kind, seconds, text)
    assert p.is_calendar == (seconds is None)


@pytest.mark.parametrize("text", ["monthly", "0h", "24", "1w", "h", "367d", " day"])
def test_bad_periods_are_rejected(text):
    with pytest.raises(ValidationError):
        Period(text)


# -- actions and thresholds ---------------------------------------------------------------------

def test_action_needs_exactly_one_kind():
    assert Action(notify="slack").notify == ["slack"]
    assert Action(notify=["a", "b"]).kind == "notify"
    assert Action(throttle={"rate_per_min": "30"}).throttle.rate_per_min == Decimal(30)
    assert Action(block=True, note="kill").kind == "block"
    for bad in ({}, {"notify": ["a"], "block": True}, {"note": "only a note"}):
        with pytest.raises(ValidationError, match="exactly one"):
            Action(**bad)
    with pytest.raises(ValidationError):
        Action(block=False)
    with pytest.raises(ValidationError):
        Action(throttle={"rate_per_min": 0})


def test_threshold_id_and_trigger_is_greater_or_equal_exactly():
    t = Threshold(at="80")
    assert t.id == "actual:80" and Threshold(at="80.0", basis="forecast").id == "forecast:80"
    assert Threshold(at="87.50").id == "actual:87.5"
    assert t.trigger_nanos(400_000_000_000) == 320_000_000_000  # $320.00 of $400 fires
    # a third of a nano-dollar rounds up: spend must reach the threshold, never fall short of it
    assert Threshold(at="100").trigger_nanos(1) == 1
    assert Threshold(at="33.3333333").trigger_nanos(10) == 4
    with pytest.raises(ValidationError):
        Threshold(at=0)


def test_float_money_only_when_exact():
    assert Budget(id="a", period="day", amount=0.5).amount == Decimal("0.5")
    assert Budget(id="a", period="day", amount=8000.0).amount_nanos == 8_000_000_000_000
    with pytest.raises(ValidationError, match="quoted string"):
        Budget(id="a", period="day", amount=0.1)
    with pytest.raises(ValidationError):
        Budget(id="a", period="day", amount=True)
    with pytest.raises(ValidationError):
        Budget(id="a", period="day", amount="NaN")


def test_money_is_whole_nano_dollars_and_sane_in_size():
    assert Budget(id="a", period="day", amount="0.000000001").amount_nanos == 1
    assert Budget(id="a", period="day", amount="0.000001").amount_nanos == 1_000
    assert Budget(id="a", period="day", amount="400.5000000000").amount_nanos == 400_500_000_000
    with pytest.raises(ValidationError, match="9 decimal places"):
        Budget(id="a", period="day", amount="0.0000000001")  # would round to a $0 budget
    with pytest.raises(ValidationError):
        Budget(id="a", period="day", amount="1e13")
    # nano-dollars of every amount fit the store's Int64 columns (at most $9.2 billion)
    assert Budget(id="a", period="day", amount="1e9").amount_nanos == 10**18
    with pytest.raises(ValidationError):
        Budget(id="a", period="day", amount="1e10")
    with pytest.raises(ValidationError, match="9 decimal places"):
        SpikeRule(window_minutes=1, baseline_minutes=2, factor=2, min_spend="0.0000000005")


def test_spike_rule_baseline_must_be_longer_and_factor_above_one():
    assert SpikeRule(window_minutes=15, baseline_minutes=360, factor=5, min_spend="25").min_spend_nanos == 25_000_000_000
    with pytest.raises(ValidationError, match="longer than window"):
        SpikeRule(window_minutes=15, baseline_minutes=15, factor=5)
    with pytest.raises(ValidationError):
        SpikeRule(window_minutes=15, baseline_minutes=360, factor=1)


# -- budgets and files ------------------------------------------------------------------------

def test_budget_defaults_and_slug():
    b = Budget(id="rag-answer", period="day", amount="400")
    assert b.name == "rag-answer" and b.scope.is_empty and b.thresholds == [] and b.spike is None
    with pytest.raises(ValidationError, match="slug"):
        Budget(id="Rag Answer", period="day", amount="400")


def test_budget_rejects_the_same_threshold_twice():
    with pytest.raises(ValidationError, match="actual:80 is listed twice"):
        Budget(id="a", period="day", amount="1", thresholds=[{"at": 80}, {"at": "80.00"}])
    Budget(id="a", period="day", amount="1", thresholds=[{"at": 80}, {"at": 80, "basis": "forecast"}])


def _file(*budgets, **kw):
    return BudgetFile(version=1, budgets=list(budgets), **kw)


def test_budget_file_nesting_and_lookups():
    f = _file(
        {"id": "org", "period": "month", "amount": "50000"},
        {"id": "team", "parent": "org", "period": "month", "amount": "8000"},
        {"id": "wf", "parent": "team", "period": "day", "amount": "400"},
    )
    assert list(f.budgets_by_id) == ["org", "team", "wf"]
    assert [b.id for b in f.ancestors("wf")] == ["team", "org"]
    assert [b.id for b in f.children("org")] == ["team"]
    assert str(f.tz) == "UTC"


def test_budget_file_rejects_duplicates_unknown_parents_cycles_and_bad_zones():
    with pytest.raises(ValidationError, match="duplicate budget id 'a'"):
        _file({"id": "a", "period": "day", "amount": 1}, {"id": "a", "period": "day", "amount": 1})
    with pytest.raises(ValidationError, match="unknown parent budget 'ghost'"):
        _file({"id": "a", "parent": "ghost", "period": "day", "amount": 1})
    with pytest.raises(ValidationError, match="cycle: a > b > a"):
        _file({"id": "a", "parent": "b", "period": "day", "amount": 1},
              {"id": "b", "parent": "a", "period": "day", "amount": 1})
    with pytest.raises(ValidationError, match="unknown time zone"):
        _file(timezone="Europe/Atlantis")
    with pytest.raises(ValidationError):
        BudgetFile(version=2, budgets=[])
