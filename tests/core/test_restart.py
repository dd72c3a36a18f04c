"""State survives a restart: budget totals, fired marks, controls and spike baselines come back from the store."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from costwarden.alerts.notifier import LogNotifier
from costwarden.budgets.loader import load_budgets_text
from costwarden.embedded import EmbeddedPipeline

BUDGETS = """version: 1
budgets:
  - id: wf
    scope: {workflow: w}
    period: month
    amount: "100"
    thresholds:
      - {at: 50, basis: actual, actions: [{notify: [ops]}]}
      - {at: 100, basis: actual, actions: [{block: true}]}
    spike: {window_minutes: 10, baseline_minutes: 120, factor: "5", min_spend: "1", actions: [{notify: [ops]}]}
"""
T0 = datetime(2026, 11, 3, 8, tzinfo=timezone.utc)


def ev(i: int, at: datetime, output: int) -> bytes:
    # gpt-4o-mini output: $0.60 per 1M tokens
    return json.dumps({"event_id": f"r{i}", "occurred_at": at.isoformat(), "source": "t", "provider": "openai",
                       "model": "gpt-4o-mini", "tokens": {"output": output},
                       "attribution": {"tags": {"workflow": "w"}}}).encode()


def open_pipeline(settings) -> EmbeddedPipeline:
    return EmbeddedPipeline(settings, budgets=load_budgets_text(BUDGETS, "budgets.yaml"), notifier=LogNotifier(), deliver=False)


def test_totals_marks_controls_and_spike_baseline_survive_a_restart(settings):
    # two hours of steady spend: $0.06 a minute ($7.20)
    steady = [ev(i, T0 + timedelta(minutes=i), 100_000) for i in range(120)]
    p = open_pipeline(settings)
    assert p.ingest(steady).signals == []
    p.close()

    # restart; a burst of $0.60 a minute is a spike against the stored baseline
    p = open_pipeline(settings)
    burst_start = T0 + timedelta(minutes=120)
    burst = [ev(1000 + i, burst_start + timedelta(minutes=i), 1_000_000) for i in range(10)]
    report = p.ingest(burst)
    assert [s.kind for s in report.signals] == ["spike"]
    p.close()

    # restart; cross 50% then 100%: the running total was rebuilt ($7.20 + $6.00 = $13.20 so far)
    p = open_pipeline(settings)
    big = [ev(2000 + i, burst_start + timedelta(hours=3, minutes=i), 10_000_000) for i in range(15)]  # $6 each
    report = p.ingest(big)
    fired = {s.key: s.spend_nanos for s in report.signals}
    assert fired["wf:2026-11:actual:50"] == 13_200_000_000 + 7 * 6_000_000_000
    assert fired["wf:2026-11:actual:100"] == 13_200_000_000 + 15 * 6_000_000_000
    assert p.check("w", burst_start + timedelta(hours=4)).action.value == "block"
    p.close()

    # restart: no alert fires twice, the block is still there
    p = open_pipeline(settings)
    more = p.ingest([ev(3000, burst_start + timedelta(hours=5), 10_000_000)])
    assert more.signals == [] and more.changes == []
    assert p.check("w", burst_start + timedelta(hours=5)).action.value == "block"
    p.close()
