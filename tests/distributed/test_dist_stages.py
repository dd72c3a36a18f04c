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
    assert h.totals(store)["raw"] == (truth["events"], truth["cost_nanos"])
    assert sum(r.accepted for r in first) == truth["events"]
    assert sum(sum(r.dead_reasons.values()) for r in first) == truth["dead"]
    # A crashed worker's successor (fresh state from the store) re-reads everything in other batch shapes.
    again = RawStage(core, store)
    replay = [again.handle([s]) for s in slices_of(lines, size=333)]
    t = h.totals(store)
    assert t["raw"] == t["minute"] == t["hour"] == t["day"] == (truth["events"], truth["cost_nanos"])
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
    assert h.totals(store)["minute"] == (truth["events"], truth["cost_nanos"])
    assert res.accepted == truth["events"] and len(res.processed) == truth["events"]


def test_a_replayed_slice_in_another_shape_is_sent_on_but_not_stored_or_counted_again(core, lines):
    store = core.open_store(migrate_schema=True)
    RawStage(core, store).handle(slices_of(lines[:600]))
    res = RawStage(core, store).handle(slices_of(lines[:600], size=250))  # a new worker after a crash
    truth = h.truth(lines[:600])
    assert h.totals(store)["hour"] == (truth["events"], truth["cost_nanos"])
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
        assert spend == sum(r["cost_nanos"] for r in rows if budget.scope.matches(r))


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


# --- one core, one writer: the journal in the store, partitions taken over ---------------------
def _fail_usage_insert_once(store, after_store: bool):
    """The next usage_events insert fails (after the server stored it, when after_store)."""
    real = store.insert
    state = {"failed": False}

    def insert(table, rows, dedup_token=None):
        if table == "usage_events" and not state["failed"]:
            state["failed"] = True
            if after_store:
                real(table, rows, dedup_token)
            from costwarden.errors import StoreError
            raise StoreError("connection reset")
        return real(table, rows, dedup_token)
    store.insert = insert
    return lambda: setattr(store, "insert", real)


@pytest.mark.parametrize("after_store", [False, True])
def test_a_failed_slice_is_finished_from_the_journal_and_sent_on_once(core, lines, after_store):
    from costwarden.errors import StoreError

    store = core.open_store(migrate_schema=True)
    stage = RawStage(core, store)
    sl = slices_of(lines[:700])[0]
    restore = _fail_usage_insert_once(store, after_store)
    with pytest.raises(StoreError):
        stage.handle([sl])
    restore()
    res = stage.handle([sl])  # the runtime's retry: the journalled commit first, then the slice
    truth = h.truth(lines[:700])
    t = h.totals(store)
    assert t["raw"] == t["minute"] == t["hour"] == t["day"] == (truth["events"], truth["cost_nanos"])
    assert res.accepted == truth["events"] and res.cost_nanos == truth["cost_nanos"]
    assert len({json.loads(v)["event_id"] for _, v in res.processed}) == len(res.processed) == truth["events"]
    assert sum(len(json.loads(v)["points"]) for _, v in res.budget_usage) > 0


def test_a_partition_taken_over_after_its_owner_died_mid_commit(core, lines):
    """Worker A journals a slice's commit and dies inside the write; worker B, assigned the
    partition, replays A's journal before anything else, then re-reads the same records."""
    from costwarden.errors import StoreError

    store = core.open_store(migrate_schema=True)
    a = RawStage(core, store)
    b = RawStage(core, store)  # started before A wrote: its window does not know A's events
    sl = slices_of(lines[:900], size=900, partition=2)[0]
    restore = _fail_usage_insert_once(store, after_store=True)
    with pytest.raises(StoreError):
        a.handle([sl])
    restore()
    assert b.take_over("usage.raw", 2) == 1
    res = b.handle(slices_of(lines[:900], size=400, partition=2))  # another batch shape
    truth = h.truth(lines[:900])
    t = h.totals(store)
    assert t["raw"] == t["minute"] == t["hour"] == t["day"] == (truth["events"], truth["cost_nanos"])
    assert res.accepted == truth["events"]  # A never sent them: B sends them on, with their cost


def test_redeliveries_older_than_the_window_are_counted_once_in_every_rollup(core, lines):
    core.settings.pipeline.dedupe_max_entries = 1000
    core.settings.pipeline.dedupe_horizon_hours = 1
    store = core.open_store(migrate_schema=True)
    valid = [ln for ln in lines[:1500] if b'"event_id"' in ln]
    stream = list(lines)
    for i, ln in enumerate(valid[::10]):  # a copy ~1,500-2,500 lines (half a day) later
        stream.insert(min(len(stream), 1500 + 10 * i + 900), ln)
    a, b = RawStage(core, store), RawStage(core, store)
    accepted = 0
    for i, sl in enumerate(slices_of(stream, size=250)):
        stage, part = (a, 0) if i % 2 == 0 else (b, 1)  # alternate workers and partitions
        accepted += stage.handle([Slice(sl.topic, part, sl.first, sl.last, sl.payloads)]).accepted
    truth = h.truth(lines)
    t = h.totals(store)
    assert t["raw"] == t["minute"] == t["hour"] == t["day"] == (truth["events"], truth["cost_nanos"])
    assert accepted == truth["events"]


def _tight(core, tmp_path):
    from costwarden.budgets.loader import load_budgets

    f = tmp_path / "tight.yaml"
    f.write_text("version: 1\nbudgets:\n  - id: tight\n    scope: {}\n    period: month\n    amount: '2.00'\n"
                 "    thresholds:\n      - at: 25\n        actions: [{throttle: {rate_per_min: '5'}}]\n"
                 "      - at: 100\n        actions: [{block: true}]\n")
    core.budgets = load_budgets(f)


def test_a_moved_budget_partition_fires_nothing_again_and_resends_its_controls(core, lines, tmp_path):
    _tight(core, tmp_path)
    store = core.open_store(migrate_schema=True)
    late = BudgetStage(core, store)  # the worker that gets the partition later: state from its start
    usage = RawStage(core, store).handle(slices_of(lines[:3000])).budget_usage
    records = [json.loads(v) for _, v in usage]
    first = BudgetStage(core, store).handle(records)
    assert sorted(json.loads(v)["threshold"] for _, v in first.budget_events) == ["100%", "25%"]
    p = late.partition_of("tight")
    moved = late.take_over(p)  # assigned: marks and controls from the store, controls sent again
    assert {control_from_message(v).state.value for _, v in moved.controls} == {"block"}
    again = late.handle(records)
    assert not again.budget_events and not again.controls
    audit = store.query("SELECT from_state, to_state FROM {db}.control_audit ORDER BY seq")
    assert len(audit) == len({control_from_message(v).workflow for _, v in moved.controls}) * 2


def test_a_failed_budget_write_leaves_memory_as_before_and_the_retry_fires_once(core, lines, tmp_path):
    from costwarden.errors import StoreError

    _tight(core, tmp_path)
    store = core.open_store(migrate_schema=True)
    records = [json.loads(v) for _, v in RawStage(core, store).handle(slices_of(lines[:3000])).budget_usage]
    stage = BudgetStage(core, store)
    real = store.insert

    def refuse(table, rows, dedup_token=None):
        if table == "budget_events":
            raise StoreError("503")
        return real(table, rows, dedup_token)
    store.insert = refuse
    with pytest.raises(StoreError):
        stage.handle(records)
    assert not any(proc.ledger.fired for proc in stage._own.values())
    assert all(c.state.value == "allow" or c.set_by != "rule" for c in stage.controls.all())
    store.insert = real
    res = stage.handle(records)  # the journalled commit is re-applied, its sends handed out
    assert sorted(json.loads(v)["threshold"] for _, v in res.budget_events) == ["100%", "25%"]
    assert not stage.handle(records).budget_events
    keys = store.query("SELECT key, count() AS n FROM {db}.budget_events GROUP BY key")
    assert len(keys) == 2 and all(r["n"] == 1 for r in keys)
    paths = store.query("SELECT workflow, groupArray(to_state) AS s FROM "
                        "(SELECT * FROM {db}.control_audit ORDER BY seq) GROUP BY workflow")
    assert paths and all(r["s"] == ["throttle", "block"] for r in paths)


def test_the_budget_partition_of_an_id_is_the_producers():
    from aiokafka.partitioner import DefaultPartitioner

    from costwarden.distributed.topics import budget_partition

    for bid in ["org-ai", "team-search", "tight", "reconcile", "ünïcode", "x" * 300]:
        for n in (1, 2, 3, 7):
            assert budget_partition(bid, n) == DefaultPartitioner()(bid.encode(), list(range(n)), [])


def test_delivery_sends_only_the_rows_of_budgets_owned_now(core):
    from datetime import datetime, timezone

    from costwarden.alerts.outbox import Outbox

    store = core.open_store(migrate_schema=True)
    now = datetime.now(timezone.utc)
    outbox = Outbox(store)
    rows = [{"key": f"{b}:2026-03:actual:100", "version": i + 1, "created_at": now, "budget_id": b,
             "channel": "ops", "title": b, "body": "", "status": "pending", "attempts": 0,
             "next_attempt_at": now, "last_error": ""} for i, b in enumerate(["a", "b", "c", "reconcile"])]
    store.insert("alert_outbox", rows)
    sent = []

    class Notifier:
        def send(self, channel, title, body):
            sent.append(title)
            if title == "a":
                owned.discard("c")  # ownership taken away during the pass

    owned = {"a", "c", "reconcile"}
    report = outbox.deliver_due(Notifier(), now, owns=lambda b: b in owned)
    assert sorted(sent) == ["a", "reconcile"] and report.sent == 2
    assert outbox.deliver_due(Notifier(), now, owns=lambda b: False).sent == 0
    assert {r["key"].split(":")[0] for r in outbox.rows(status="pending")} == {"b", "c"}


def test_a_copy_on_another_partition_is_forwarded_to_its_ids_partition(core, lines):
    """Two workers must never both find an id absent and store it: the worker routes every copy of
    an id to the id's partition (as the producers key it) and processes only its own."""
    from costwarden.distributed.topics import key_partition

    store = core.open_store(migrate_schema=True)
    stage = RawStage(core, store, route_by_id=True)
    n = core.settings.kafka.partitions
    valid = [ln for ln in lines[:400] if b'"event_id"' in ln][:50]
    home = {ln: key_partition(json.loads(ln)["event_id"].encode(), n) for ln in valid}
    mine = [ln for ln in valid if home[ln] == 0]
    res = stage.handle([Slice("usage.raw", 0, 0, len(valid) - 1, valid)])
    assert sorted(v for _, v in res.forward) == sorted(ln for ln in valid if home[ln] != 0)
    assert all(key_partition(k, n) != 0 for k, _ in res.forward)
    ids = {json.loads(ln)["event_id"] for ln in mine}  # the demo re-sends some lines
    assert res.accepted == len(ids) and h.totals(store)["raw"][0] == len(ids)
