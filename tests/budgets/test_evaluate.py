from datetime import datetime, timedelta, timezone

from costwarden.budgets.controls import ControlBook, State
from costwarden.budgets.evaluate import BudgetLedger
from costwarden.budgets.loader import load_budgets_text

NESTED = """version: 1
timezone: Europe/Berlin
budgets:
  - id: org
    scope: {}
    period: month
    amount: "10"
    thresholds: [{at: 100, actions: [{block: true}]}]
  - id: team
    parent: org
    scope: {team: search}
    period: month
    amount: "4"
    thresholds:
      - {at: 50, actions: [{notify: [ops]}]}
      - {at: 100, actions: [{throttle: {rate_per_min: "10"}}]}
  - id: wf
    parent: team
    scope: {workflow: "rag-*"}
    period: day
    amount: "1"
    thresholds: [{at: 100, actions: [{throttle: {rate_per_min: "30"}}]}]
"""
T = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
DIMS = {"team": "search", "workflow": "rag-answer", "model": "gpt-4.1", "provider": "openai"}


def ledger():
    return BudgetLedger(load_budgets_text(NESTED, "b.yaml"))


def keys(results):
    return [s.key for s, _, _ in results if s is not None]


def test_threshold_fires_at_exactly_the_amount_not_one_nano_before():
    lg, dims = ledger(), {**DIMS, "workflow": "batch"}
    assert keys(lg.charge(dims, 1_999_999_999, T)) == []
    assert keys(lg.charge(dims, 1, T)) == ["team:2026-11:actual:50"]  # 2.000000000 >= 4 * 50%


def test_every_matching_budget_is_charged_and_each_key_fires_once():
    lg = ledger()
    got = keys(lg.charge(DIMS, 1_000_000_000, T))
    assert got == ["wf:2026-11-10:actual:100"]
    got = keys(lg.charge({**DIMS, "workflow": "other"}, 3_000_000_000, T))
    assert got == ["team:2026-11:actual:50", "team:2026-11:actual:100"]
    assert keys(lg.charge(DIMS, 1, T)) == []  # nothing fires twice
    totals = {b: pt.spend for (b, _), pt in lg.totals.items()}
    assert totals == {"org": 4_000_000_001, "team": 4_000_000_001, "wf": 1_000_000_001}


def test_periods_follow_the_budget_time_zone_and_roll_over():
    lg = ledger()
    late_evening_utc = datetime(2026, 11, 10, 23, 30, tzinfo=timezone.utc)  # already Nov 11 in Berlin
    assert keys(lg.charge(DIMS, 1_000_000_000, late_evening_utc)) == ["wf:2026-11-11:actual:100"]
    nov30_utc = datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc)  # December in Berlin
    lg.charge({**DIMS, "workflow": "x"}, 3_000_000_000, T)
    res = lg.charge({**DIMS, "workflow": "x"}, 2_000_000_000, nov30_utc)
    assert "team:2026-12:actual:50" in keys(res)  # a new period starts from zero


def test_strictest_control_via_the_processor_rules():
    lg, book = ledger(), ControlBook()
    for s, pt, b in lg.charge(DIMS, 4_000_000_000, T):  # wf (throttle 30), team 50% + 100% (throttle 10)
        for _, action in pt.control_actions:
            state = State.block if action.block else State.throttle
            rate = None if action.block else action.throttle.rate_per_min
            book.apply_rule("rag-answer", state, rate_per_min=rate, budget_id=b.id, period_start=pt.start,
                            expires_at=pt.end, reason="", at=T)
    d = book.check("rag-answer", T)
    assert (d.action, d.rate_per_min, d.budget_id) == (State.throttle, 10, "team")
    for s, pt, b in lg.charge(DIMS, 6_000_000_000, T + timedelta(minutes=1)):  # org hits 100%: block
        for _, action in pt.control_actions:
            if action.block:
                book.apply_rule("rag-answer", State.block, rate_per_min=None, budget_id=b.id,
                                period_start=pt.start, expires_at=pt.end, reason="", at=T)
    assert book.check("rag-answer", T + timedelta(minutes=2)).action is State.block
