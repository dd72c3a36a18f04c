"""Budget simulation against a hand-checked scenario; nothing live is written or changed."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from costwarden.budgets.loader import load_budgets
from costwarden.embedded import EmbeddedPipeline
from costwarden.finance.simulate import simulate

PROPOSED = """version: 1
timezone: UTC
budgets:
  - id: wf-a-daily
    scope: {workflow: wf-a}
    period: day
    amount: "10"
    thresholds:
      - {at: 30, actions: [{notify: [ops]}, {throttle: {rate_per_min: "2"}}]}
      - {at: 100, actions: [{notify: [ops]}, {block: true}]}
  - id: team-t
    scope: {team: t}
    period: month
    amount: "100"
    thresholds:
      - {at: 10, actions: [{notify: [finance]}]}
      - {at: 50, actions: [{notify: [finance]}]}
"""


def ev(i: int, at: str, workflow: str = "wf-a") -> bytes:
    # gpt-4o input at $2.50 per 1M tokens: 400,000 tokens cost exactly $1.00
    return json.dumps({"event_id": f"sim-{i}", "occurred_at": at, "source": "gateway", "provider": "openai",
                       "model": "gpt-4o", "requests": 1, "tokens": {"input": 400_000},
                       "attribution": {"tags": {"team": "t", "workflow": workflow}}}).encode()


SCENARIO = [
    "2026-10-05T10:00:00Z", "2026-10-05T10:01:00Z", "2026-10-05T10:02:00Z",  # $3: 30% -> throttle 2/min
    "2026-10-05T10:03:00Z", "2026-10-05T10:03:10Z", "2026-10-05T10:03:20Z",  # the 3rd in the minute refused
    "2026-10-05T10:04:00Z", "2026-10-05T10:05:00Z", "2026-10-05T10:06:00Z", "2026-10-05T10:07:00Z",
    "2026-10-05T10:08:00Z",  # charged spend reaches $10: 100% -> block
    "2026-10-05T10:09:00Z", "2026-10-05T10:10:00Z",  # refused by the block
    "2026-10-06T09:00:00Z",  # the next day: the block expired at midnight
]


def test_thresholds_controls_and_refused_spend_match_the_hand_checked_replay(settings, tmp_path):
    p = EmbeddedPipeline(settings, deliver=False)  # live: no budgets at all
    payloads = [ev(i, at) for i, at in enumerate(SCENARIO)] + [ev(99, "2026-10-05T10:09:30Z", "wf-b")]
    assert p.ingest(payloads).accepted == 15
    f = tmp_path / "proposed.yaml"
    f.write_text(PROPOSED)
    live_before = [p.store.query(f"SELECT count() AS n FROM {{db}}.{t}")[0]["n"]
                   for t in ("controls", "control_audit", "budget_events", "alert_outbox", "usage_events")]

    sim = simulate(p.store, load_budgets(f), datetime(2026, 10, 1, tzinfo=timezone.utc),
                   datetime(2026, 11, 1, tzinfo=timezone.utc))

    utc = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    wf = sim.budgets["wf-a-daily"]
    assert [(f.at, f.threshold, f.spend_nanos) for f in wf.fired] == [
        (utc("2026-10-05T10:02:00Z"), "30%", 3_000_000_000), (utc("2026-10-05T10:08:00Z"), "100%", 10_000_000_000)]
    assert [(t.at, t.state, t.rate_per_min, t.expires_at) for t in wf.tripped] == [
        (utc("2026-10-05T10:02:00Z"), "throttle", Decimal("2"), utc("2026-10-06T00:00:00Z")),
        (utc("2026-10-05T10:08:00Z"), "block", None, utc("2026-10-06T00:00:00Z"))]
    assert wf.refused_throttle_nanos == 1_000_000_000
    assert wf.refused_block_nanos == 2_000_000_000
    assert wf.refused_events == 3 and dict(wf.refused_by_workflow) == {"wf-a": 3_000_000_000}
    assert wf.charged_nanos == 11_000_000_000  # $10 on the 5th + $1 on the 6th
    team = sim.budgets["team-t"]
    assert [(f.at, f.threshold, f.spend_nanos) for f in team.fired] == [
        (utc("2026-10-05T10:08:00Z"), "10%", 10_000_000_000)]
    assert team.charged_nanos == 12_000_000_000 and team.refused_nanos == 0
    assert sim.events == 15 and sim.spend_nanos == 15_000_000_000 and sim.refused_nanos == 3_000_000_000

    live_after = [p.store.query(f"SELECT count() AS n FROM {{db}}.{t}")[0]["n"]
                  for t in ("controls", "control_audit", "budget_events", "alert_outbox", "usage_events")]
    assert live_after == live_before == [0, 0, 0, 0, 15]
    assert p.check("wf-a", utc("2026-10-05T10:09:00Z")).allowed  # live controls untouched
    p.close()
