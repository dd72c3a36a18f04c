"""Unpriced usage is news: an alert once per (model, UTC day) when a model the catalogue cannot price
appears (to a real Apprise json:// receiver, across a restart), and the `block` policy blocks the
workflow that used it until a person releases it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from pydantic import SecretStr

from costwarden.budgets.loader import load_budgets_text
from costwarden.embedded import EmbeddedPipeline
from costwarden.testing.receiver import HookReceiver

DAY = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
NO_BUDGETS = "version: 1\nbudgets: []\n"


def ev(i: int, model: str, at: datetime, workflow: str = "agent") -> bytes:
    return json.dumps({"event_id": f"u{i}", "occurred_at": at.isoformat(), "source": "gateway",
                       "provider": "openai", "model": model, "tokens": {"input": 1_000, "output": 200},
                       "attribution": {"tags": {"workflow": workflow, "team": "growth"}}}).encode()


def open_pipeline(settings, hooks: HookReceiver, now: datetime) -> EmbeddedPipeline:
    settings.alerts.channels = {"ops": SecretStr(hooks.url("ops"))}
    settings.pricing.unpriced.notify = ["ops"]
    return EmbeddedPipeline(settings, budgets=load_budgets_text(NO_BUDGETS, "budgets.yaml"), clock=lambda: now)


def test_an_alert_once_per_model_and_day_across_batches_and_a_restart(settings):
    with HookReceiver() as hooks:
        p = open_pipeline(settings, hooks, DAY + timedelta(hours=1))
        p.ingest([ev(i, "mystery-model-x", DAY + timedelta(seconds=i), f"wf{i % 3}") for i in range(40)])
        p.ingest([ev(100 + i, "mystery-model-x", DAY + timedelta(minutes=5, seconds=i)) for i in range(10)]
                 + [ev(200, "gpt-4o-mini", DAY), ev(201, "another-unknown", DAY + timedelta(minutes=7))])
        p.close()  # delivers what is due
        assert sorted(hooks.titles("ops")) == [
            "[costwarden] Unpriced model in use: openai/another-unknown on 2026-11-20",
            "[costwarden] Unpriced model in use: openai/mystery-model-x on 2026-11-20"]
        body = next(p.fields["message"] for p in hooks.posts if "mystery" in p.fields["title"])
        assert "policy fallback (provider_max:openai)" in body and "catalogue lookup" in body
        assert "Action taken: notify only" in body

        # a restart, more of the same model that day: no second alert; the next day: one more
        p = open_pipeline(settings, hooks, DAY + timedelta(days=1, hours=2))
        p.ingest([ev(300 + i, "mystery-model-x", DAY + timedelta(hours=3, seconds=i)) for i in range(5)])
        p.ingest([ev(400 + i, "mystery-model-x", DAY + timedelta(days=1, seconds=i)) for i in range(5)])
        p.close()
        assert len(hooks.titles("ops")) == 3
        assert hooks.titles("ops")[-1] == "[costwarden] Unpriced model in use: openai/mystery-model-x on 2026-11-21"
        rows = p.store.query("SELECT key, workflow, spend_nanos FROM {db}.budget_events FINAL "
                             "WHERE kind = 'unpriced' ORDER BY key")
        assert [r["key"] for r in rows] == ["unpriced:openai/another-unknown:2026-11-20",
                                            "unpriced:openai/mystery-model-x:2026-11-20",
                                            "unpriced:openai/mystery-model-x:2026-11-21"]
        assert all(r["spend_nanos"] > 0 for r in rows)  # charged by the fallback, never free


def test_usage_older_than_two_days_is_charged_but_not_announced(settings):
    with HookReceiver() as hooks:
        p = open_pipeline(settings, hooks, DAY + timedelta(days=10))
        report = p.ingest([ev(i, "mystery-model-x", DAY + timedelta(seconds=i)) for i in range(5)])
        p.close()
        assert report.accepted == 5 and report.cost_nanos > 0
        assert hooks.titles() == []


def test_the_block_policy_blocks_the_workflow_until_a_person_releases_it(settings):
    settings.pricing.unpriced.provider_cost = False
    settings.pricing.unpriced.fallback = []
    settings.pricing.unpriced.block = True
    with HookReceiver() as hooks:
        now = DAY + timedelta(hours=1)
        p = open_pipeline(settings, hooks, now)
        report = p.ingest([ev(1, "gpt-4o-mini", DAY, "support"), ev(2, "mystery-model-x", DAY, "agent"),
                           ev(3, "mystery-model-x", DAY + timedelta(seconds=1), "agent")])
        assert [(c.after.workflow, c.after.state.value) for c in report.changes] == [("agent", "block")]
        assert p.check("agent", now).action.value == "block"
        assert p.check("support", now).action.value == "allow"
        assert "unpriced model openai/mystery-model-x" in p.check("agent", now).reason
        p.close()
        body = hooks.posts[0].fields["message"]
        assert "Action taken: workflow agent blocked" in body and "costwarden controls release agent" in body

        # released by a person with a reason: more calls of that model the same day do not block again
        p = open_pipeline(settings, hooks, now)
        p.change_control(lambda book: book.release("agent", reason="priced by hand, override coming",
                                                   by="ann@example.com", at=now))
        report = p.ingest([ev(4, "mystery-model-x", DAY + timedelta(minutes=30), "agent")])
        assert report.changes == [] and p.check("agent", now).action.value == "allow"
        audit = p.store.query("SELECT to_state, reason FROM {db}.control_audit WHERE workflow = 'agent' ORDER BY seq")
        assert [r["to_state"] for r in audit] == ["block", "allow"]
        p.close()
