"""The two stages of a distributed worker, in process on chDB (no Kafka): what a worker stores
and sends for a slice of partition records, on a replay, and when budgets span workers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dist_harness as h
from costwarden.distributed.budget_stage import BudgetStage
from costwarden.distributed.raw_stage import RawStage, Slice
from costwarden.distributed.state import Core, control_from_message


@pytest.fixture
def core(settings):
    settings.budgets.budgets_file = Path(h.BUDGETS)
    settings.budgets.rules_file = Path(h.RULES)
    return Core.load(settings)


@pytest.fixture(scope="module")
def lines():
    return h.demo_lines(4000)


def slices_of(lines, size=700, partition=0):
    return [Slice("usage.raw", partition, i, i + len(lines[i:i + size]) - 1, lines[i:i + size])
            for i in range(0, len(lines), size)]


def test_stored_totals_equal_truth_and_a_replay_counts_nothing_twice(core, lines):
    store = core.open_store(migrate_schema=True)
    stage = RawStage(core, store)
    first = [stage.handle([s]) for s in slices_of(lines)]
    truth = h.truth(lines)
    assert h.totals(store)["raw"] == (truth["events"], truth["cost_micros"])
    assert sum(r.accepted for r in first) == truth["events"]
    assert sum(sum(r.dead_reasons.values()) for r in first) == truth["dead"]
    # A crashed worker's successor (fresh state from the store) re-reads everything in other batch shapes.
    again = RawStage(core, store)
    replay = [again.handle([s]) for s in slices_of(lines, size=333)]
    t = h.totals(store)
    assert t["raw"] == t["minute"] == t["hour"] == t["day"] == (truth["events"], truth["cost_micros"])
    assert sum(r.accepted for r in replay) == 0
    # ...but still asks stage 2 to look at the budgets those events touch (cost 0).
    assert any(json.loads(v)["budget_id"] for r in replay for _, v in r.budget_usage)
    assert all(not json.loads(v)["points"] for r in replay for _, v in r.budget_usage)


def test_a_retried_slice_after_a_failed_write_is_stored_once(core, lines):
    store = core.open_store(migrate_schema=True)
    stage = RawStage(core, store)
    sl = slices_of(lines[:500])[0]
    real_insert = store.insert
    calls = []

    def failing_once(table, rows, dedup_token=None):  # the store accepted it but the answer was lost
        real_insert(table, rows, dedup_token)
        if not calls:
            calls.append(table)
            raise ConnectionError("connection reset")
    store.insert = failing_once
    with pytest.raises(ConnectionError):
        stage.handle([sl])
    store.insert = real_insert
    res = stage.handle([sl])  # the retry: same slice, same token
    truth = h.truth(lines[:500])
    assert h.totals(store)["minute"] == (truth["events"], truth["cost_micros"])
    assert res.accepted == truth["events"] and len(res.processed) == truth["events"]


def test_a_replayed_slice_in_another_shape_is_sent_on_but_not_stored_or_counted_again(core, lines):
    store = core.open_store(migrate_schema=True)
    RawStage(core, store).handle(slices_of(lines[:600]))
    res = RawStage(core, store).handle(slices_of(lines[:600], size=250))  # a new worker after a crash
    truth = h.truth(lines[:600])
    assert h.totals(store)["hour"] == (truth["events"], truth["cost_micros"])
    assert res.accepted == 0
    # its earlier sends may have been lost: every event is sent on again (at least once)
    assert {json.loads(v)["event_id"] for _, v in res.processed} == set(
        store.query("SELECT DISTINCT event_id FROM {db}.usage_events")[i]["event_id"] for i in range(truth["events"]))


def test_processed_rows_are_keyed_by_workflow_and_dead_letters_keep_payload_and_reason(core, lines):
    store = core.open_store(migrate_schema=True)
    res = RawStage(core, store).handle(slices_of(lines))
    for key, value in res.processed[:50]:
        assert json.loads(value)["workflow"].encode() == key
    assert res.dead
    for key, value in res.dead:
        d = json.loads(value)
        assert key == b"kafka:usage.raw" and d["reason"] and d["payload"]


def test_budget_totals_are_exact_when_usage_arrives_through_several_workers(core, lines):
    """Two raw workers store halves of the stream; the budget owner's totals are the store's."""
    store = core.open_store(migrate_schema=True)
    a, b = RawStage(core, store), RawStage(core, store)
    half = len(lines) // 2
    usage = a.handle(slices_of(lines[:half], partition=0)).budget_usage
    usage += b.handle(slices_of(lines[half:], partition=1)).budget_usage
    usage += a.handle(slices_of(lines[:half], partition=0)).budget_usage  # a replay after a crash
    owner = BudgetStage(core, store)
    owner.handle([json.loads(v) for _, v in usage])
    status = {}
    for proc in owner._own.values():
        for pt in proc.ledger.totals.values():
            status[(pt.budget_id, pt.start)] = pt.spend
    expected = core.budgets.budgets
    assert status
    from costwarden.store.queries import SpendSeedQuery
    for (budget_id, start), spend in status.items():
        budget = next(x for x in expected if x.id == budget_id)
        end = owner.owner(budget_id).ledger.totals[(budget_id, start)].end
        rows = store.query(SpendSeedQuery(start, end).to_sql())
        assert spend == sum(r["cost_micros"] for r in rows if budget.scope.matches(r))


def test_a_crossed_block_threshold_is_a_control_on_the_topic_once(core, lines, tmp_path):
    from costwarden.budgets.loader import load_budgets

    f = tmp_path / "tight.yaml"
    f.write_text("version: 1\nbudgets:\n  - id: tight\n    scope: {}\n    period: month\n    amount: '1.00'\n"
                 "    thresholds:\n      - at: 100\n        actions: [{block: true}]\n")
    core.budgets = load_budgets(f)
    store = core.open_store(migrate_schema=True)
    usage = RawStage(core, store).handle(slices_of(lines[:1500])).budget_usage
    stage = BudgetStage(core, store)
    res = stage.handle([json.loads(v) for _, v in usage])
    assert [json.loads(v)["budget_id"] for _, v in res.budget_events] == ["tight"]
    blocked = {control_from_message(v).workflow: control_from_message(v).state.value for _, v in res.controls}
    assert blocked and set(blocked.values()) == {"block"}
    # the same records again (a replay), and a restarted owner: no second crossing
    assert not stage.handle([json.loads(v) for _, v in usage]).budget_events
    assert not BudgetStage(core, store).handle([json.loads(v) for _, v in usage]).budget_events
