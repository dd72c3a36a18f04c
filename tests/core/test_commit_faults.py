"""A store that fails a write of the commit: memory stays exactly as before the batch (no phantom
spend, no used-up threshold, no control), the caller gets a retryable error, and the retry is exact.
Also: re-deliveries hours to days late are counted once, whatever the dedupe window holds."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from costwarden.alerts.notifier import LogNotifier
from costwarden.budgets.loader import load_budgets_text
from costwarden.embedded import EmbeddedPipeline
from costwarden.errors import StoreError
from costwarden.reports import spend_report
from costwarden.testing.faults import FaultyStore

BUDGETS = """version: 1
budgets:
  - id: wf
    scope: {workflow: w}
    period: month
    amount: "10"
    thresholds:
      - {at: 50, actions: [{notify: [ops]}]}
      - {at: 80, actions: [{throttle: {rate_per_min: "30"}}]}
      - {at: 100, actions: [{notify: [ops]}, {block: true}]}
"""
T0 = datetime(2026, 11, 3, 8, tzinfo=timezone.utc)
WRITES = ("usage_events", "dead_letters", "budget_events", "alert_outbox", "controls", "control_audit")


def ev(i: int, at: datetime, output: int = 1_000_000) -> bytes:  # gpt-4o-mini output: $0.60 per 1M tokens
    return json.dumps({"event_id": f"e{i}", "occurred_at": at.isoformat(), "source": "t", "provider": "openai",
                       "model": "gpt-4o-mini", "tokens": {"output": output},
                       "attribution": {"tags": {"workflow": "w", "team": "t"}}}).encode()


def open_pipeline(settings) -> EmbeddedPipeline:
    return EmbeddedPipeline(settings, budgets=load_budgets_text(BUDGETS, "budgets.yaml"), notifier=LogNotifier(),
                            deliver=False, clock=lambda: T0 + timedelta(days=3))


def batch() -> list[bytes]:
    return [ev(i, T0 + timedelta(seconds=i)) for i in range(20)] + [b'{"not": "an event"}']  # $12.00


def stored(p) -> dict:
    q = p.store.query
    return {"events": q("SELECT count() AS n, sum(cost_nanos) AS c FROM {db}.usage_events FINAL")[0],
            "hour": q("SELECT sum(events) AS n, sum(cost_nanos) AS c FROM {db}.usage_rollup_hour")[0],
            "fired": sorted(r["key"] for r in q("SELECT key FROM {db}.budget_events")),
            "outbox": q("SELECT count() AS n FROM {db}.alert_outbox FINAL")[0]["n"],
            "controls": [(r["workflow"], r["state"]) for r in q("SELECT * FROM {db}.controls FINAL")],
            "audit": [(r["from_state"], r["to_state"]) for r in q("SELECT * FROM {db}.control_audit ORDER BY at, seq")],
            "dead": q("SELECT count() AS n FROM {db}.dead_letters FINAL")[0]["n"]}


@pytest.mark.parametrize("nth", range(1, len(WRITES) + 1), ids=WRITES)
def test_a_failed_write_changes_nothing_in_memory_and_the_retry_is_exact(settings, nth):
    p = open_pipeline(settings)
    real = p.writer.store
    p.writer.store = FaultyStore(real, "fail", nth, nth)
    at = T0 + timedelta(minutes=5)
    before = p.status(at)
    with pytest.raises(StoreError):
        p.process_batch(batch())
    # memory exactly as before the batch: no phantom spend, no threshold used up, no control
    assert p.status(at) == before and before[0]["spend_nanos"] == 0
    assert p.processor.ledger.fired == set()
    assert p.check("w", at).action.value == "allow"
    assert len(p.processor.dedupe) == 0 and p.processor.metrics.processed == 0

    # the store is back; the client sends the same batch again (retry)
    p.writer.store = real
    p.process_batch(batch())
    [row] = p.status(at)
    assert row["spend_nanos"] == 12_000_000_000 and str(row["pct_used"]) == "120.0"
    assert p.check("w", at).action.value == "block"
    got = stored(p)
    assert got["events"] == {"n": 20, "c": 12_000_000_000} and got["hour"] == {"n": 20, "c": 12_000_000_000}
    assert got["fired"] == ["wf:2026-11:actual:100", "wf:2026-11:actual:50", "wf:2026-11:actual:80"]
    assert got["outbox"] == 2 and got["dead"] == 1
    assert got["controls"] == [("w", "block")]
    assert got["audit"] == [("allow", "throttle"), ("throttle", "block")]

    # and a third delivery of the same events counts nothing
    again = p.process_batch(batch())
    assert again.accepted == 0 and again.duplicates == 20
    assert p.status(at)[0]["spend_nanos"] == 12_000_000_000
    p.close()


def test_a_restart_after_a_failed_write_repairs_it_from_the_journal(settings):
    p = open_pipeline(settings)
    p.writer.store = FaultyStore(p.writer.store, "fail", 3, 6)  # usage + dead letters stored, marks not
    with pytest.raises(StoreError):
        p.process_batch(batch())
    p.close()
    p = open_pipeline(settings)  # start-up re-applies the journalled commit before reading state
    got = stored(p)
    assert got["fired"] == ["wf:2026-11:actual:100", "wf:2026-11:actual:50", "wf:2026-11:actual:80"]
    assert got["controls"] == [("w", "block")] and got["outbox"] == 2
    assert p.check("w", T0 + timedelta(minutes=5)).action.value == "block"
    report = p.process_batch(batch())
    assert report.accepted == 0 and report.duplicates == 20 and not report.signals
    p.close()


def test_late_redeliveries_are_counted_once_whatever_the_window_holds(settings):
    """Hours-to-days-late re-sends, with a window far smaller than the data (bound 1,000)."""
    settings.pipeline.dedupe_max_entries = 1000
    settings.pipeline.dedupe_horizon_hours = 1
    settings.pipeline.batch_size = 250
    p = open_pipeline(settings)
    first = [ev(i, T0 + timedelta(minutes=i), 10_000) for i in range(3000)]  # ~2 days, $0.006 each
    resend = [first[i] for i in range(0, 3000, 29)]                        # 104 re-sends, hours to days late
    report = p.ingest(first[:1500] + resend[:40] + first[1500:] + resend)
    assert report.accepted == 3000 and report.duplicates == 144
    p.close()
    p = open_pipeline(settings)                                             # and after a restart
    assert p.ingest(resend).duplicates == len(resend)
    rows, _ = spend_report(p.store, ["team"], T0 - timedelta(days=1), T0 + timedelta(days=5))
    assert [(r["team"], r["requests"], r["cost_nanos"]) for r in rows] == [("t", 3000, 18_000_000_000), ("TOTAL", 3000, 18_000_000_000)]
    p.close()
