"""The whole embedded loop on a synthetic month with a runaway agent."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from costwarden.components import load_catalogue
from costwarden.config import load_settings
from costwarden import demo as gen
from costwarden.alerts.notifier import LogNotifier
from costwarden.budgets.controls import State
from costwarden.embedded import EmbeddedPipeline
from costwarden.events import parse_event
from costwarden.errors import InvalidEventError
from costwarden.reports import spend_report
from costwarden.store.queries import TOTALS_SQL

START = datetime(2026, 10, 1, tzinfo=timezone.utc)
END = datetime(2026, 10, 22, 12, tzinfo=timezone.utc)


def independent_total(payloads) -> tuple[int, int]:
    """Ground truth without the pipeline: unique valid events priced one by one."""
    cat = load_catalogue(load_settings())  # with the default unpriced policy, as the pipeline
    seen, total = set(), 0
    for p in payloads:
        try:
            ev = parse_event(p)
        except InvalidEventError:
            continue
        if ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        total += cat.price(ev).cost_nanos
    return len(seen), total


@pytest.fixture(scope="module")
def month():
    return list(gen.events(START, END, seed=3))


@pytest.fixture
def pipeline(settings):
    settings.budgets.budgets_file = Path(gen.demo_file("demo-budgets.yaml"))
    settings.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    notifier = LogNotifier()
    p = EmbeddedPipeline(settings, notifier=notifier, deliver=False)
    yield p, notifier
    p.close()


def test_synthetic_month_with_a_runaway_agent(pipeline, month):
    p, notifier = pipeline
    report = p.ingest(month, "test")
    n_events, truth = independent_total(month)

    # every unique valid event stored once, totals exact to the nano-dollar
    assert report.accepted == n_events
    stored = p.store.query(TOTALS_SQL)[0]
    assert stored["events"] == n_events and stored["cost_nanos"] == truth
    rows, _ = spend_report(p.store, ["team"], START, END)
    assert rows[-1]["team"] == "TOTAL" and rows[-1]["cost_nanos"] == truth
    assert sum(r["cost_nanos"] for r in rows[:-1]) == truth
    assert "unallocated" in {r["team"] for r in rows}  # the unmapped key is visible, not hidden
    assert report.duplicates > 0 and set(report.dead) == {"content_field", "negative_value"}

    # each alert key once
    keys = [s.key for s in report.signals]
    assert len(keys) == len(set(keys))
    kinds = Counter(k.split(":", 2)[0] for k in keys)
    assert kinds["agent-loop-daily"] >= 3  # spike, 50% (throttle), 100% (block)
    runaway_day = (END - timedelta(days=2)).strftime("%Y-%m-%d")
    assert f"agent-loop-daily:{runaway_day}:actual:100" in keys

    # the block was set by the very event that crossed the hard limit
    crossing = next(s for s in report.signals if s.key.endswith(f"{runaway_day}:actual:100"))
    block = next(c for c in report.changes if c.after.state is State.block)
    assert block.at == crossing.at and block.after.workflow == "agent-loop"
    assert crossing.spend_nanos >= 150_000_000_000 > crossing.spend_nanos - 10_000_000_000
    assert p.check("agent-loop", crossing.at + timedelta(seconds=1)).action is State.block
    # ... a throttle came first, at 50%
    throttle = next(c for c in report.changes if c.after.state is State.throttle)
    assert throttle.at < block.at
    # ... and the block expires with the day (period roll-over)
    next_day = crossing.period_end
    assert p.check("agent-loop", next_day).action is State.allow
    assert p.check("rag-answer", crossing.at).action is State.allow

    # alerts went out once each, through the outbox
    p.outbox.deliver_due(notifier, datetime.now(timezone.utc) + timedelta(days=1))
    sent = Counter((ch, body.rsplit("Alert key: ", 1)[-1].strip()) for ch, _, body in notifier.sent)
    assert sent == Counter({(ch, s.key): 1 for s in report.signals for ch in a_channels(s)})
    assert p.outbox.deliver_due(notifier, datetime.now(timezone.utc) + timedelta(days=2)).sent == 0
    assert any("blocked agent-loop" in body for _, _, body in notifier.sent)


def a_channels(signal):
    return {ch for a in signal.actions for ch in (getattr(a, "notify", None) or [])}


def test_reingesting_the_same_month_changes_nothing(settings, month):
    settings.budgets.budgets_file = Path(gen.demo_file("demo-budgets.yaml"))
    settings.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    p = EmbeddedPipeline(settings, notifier=LogNotifier(), deliver=False)
    first = p.ingest(month[:20000], "test")
    before = p.store.query(TOTALS_SQL)[0]
    p.close()
    # a new process (state rebuilt from the store) re-reads the same file
    p2 = EmbeddedPipeline(settings, notifier=LogNotifier(), deliver=False)
    again = p2.ingest(month[:20000], "test")
    assert again.accepted == 0 and again.signals == [] and again.changes == []
    assert p2.store.query(TOTALS_SQL)[0] == before
    rollup = p2.store.query("SELECT sum(cost_nanos) AS c, sum(events) AS n FROM {db}.usage_rollup_hour")[0]
    assert rollup == {"c": before["cost_nanos"], "n": before["events"]}
    assert first.accepted == before["events"]
    p2.close()
