"""Health, readiness, Prometheus metrics, and the CLI's `tokens create` (printed once, stored hashed)."""
from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner

from api_helpers import usage


def test_health_readiness_and_metrics(api):
    anon = api.client(role=None)
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/readyz").json()["status"] == "ready"
    api.client().post("/v1/events", json=[usage("m1", "rag"), {"bad": 1}])
    text = api.client("viewer").get("/metrics").text
    assert 'costwarden_api_events_total{status="accepted"} 1.0' in text
    assert 'costwarden_api_events_total{status="rejected"} 1.0' in text
    assert 'costwarden_http_requests_total{route="/v1/events",status="200"}' in text


def test_budget_status_shows_spend_percent_forecast_and_state(api):
    api.client().post("/v1/events", json=usage("b1", "runaway", input_tokens=2_000_000, output_tokens=0))  # $0.30
    b = api.client("viewer").get("/v1/budgets/runaway-cap").json()
    assert b["spend_usd"] == "0.300000000" and b["amount_usd"] == "1.000000000" and b["pct_used"] == "30.0"
    assert b["state"] in ("ok", "at-risk") and b["forecast_usd"]
    assert api.client("viewer").get("/v1/budgets/nope").status_code == 404
    ids = [x["budget"] for x in api.client("finance").get("/v1/budgets").json()["budgets"]]
    assert ids == ["runaway-cap", "lite-cap", "everything"]


def test_cli_tokens_create_prints_the_token_once_and_stores_its_hash(settings, monkeypatch):
    from costwarden.cli import cli
    from costwarden.embedded import EmbeddedPipeline

    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", settings.store.database)
    r = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "tokens", "create", "--name", "ci-bot",
                                 "--role", "viewer", "--json"], obj={})
    assert r.exit_code == 0, r.output
    token = json.loads(r.stdout)["token"]
    store = EmbeddedPipeline(settings, deliver=False).store
    rows = store.query("SELECT token_sha256, name, role FROM {db}.api_tokens")
    assert rows == [{"token_sha256": hashlib.sha256(token.encode()).hexdigest(), "name": "ci-bot", "role": "viewer"}]
    listed = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "tokens", "list", "--json"], obj={})
    assert token not in listed.output and "ci-bot" in listed.output
    bad = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "tokens", "create", "--name", "x",
                                   "--role", "root"], obj={})
    assert bad.exit_code == 2


def test_the_sdk_surface_is_declared():
    import costwarden.sdk as sdk

    assert sorted(sdk.__all__) == ["Blocked", "Costwarden", "GuardDecision", "KafkaReporter", "Refused",
                                   "Reservation", "usage_from_response"]
    assert all(hasattr(sdk, name) for name in sdk.__all__)


def test_decision_cache_takes_controls_from_any_feed_and_expires_them():
    from datetime import datetime, timedelta, timezone

    from costwarden.api.decisions import DecisionCache
    from costwarden.budgets.controls import Control, State

    now = datetime.now(timezone.utc)
    cache = DecisionCache(history=2)
    cache.apply(Control("a", State.block, reason="budget x", budget_id="x", expires_at=now + timedelta(hours=1)))
    cache.apply(Control("b", State.block, expires_at=now - timedelta(seconds=1)))  # already expired
    assert cache.decide("a").action is State.block and cache.decide("b").action is State.allow
    assert [d.workflow for d in cache.active()] == ["a"]
    cache.apply(Control("c", State.allow))
    assert [u.version for u in cache.since(2, cache.epoch)] == [3]
    assert cache.since(0, cache.epoch) is None  # older than the log: the stream sends a snapshot instead
    assert cache.resume(f"{cache.epoch}:2") == cache.since(2, cache.epoch)
    assert cache.since(3, cache.epoch) == []  # up to date
    # a cursor the cache cannot resume: another epoch (a restart), ahead, a bare number, garbage
    assert cache.since(2, "another-start") is None and cache.since(99, cache.epoch) is None
    assert cache.resume("2") is None and cache.resume("x:y") is None and cache.resume(None) is None
    old = cache.epoch
    cache.replace([Control("a", State.allow)])  # a feed that re-read its source: a new epoch
    assert cache.epoch != old and cache.resume(f"{old}:3") is None
    assert [c.workflow for c in cache.controls()] == ["a"] and cache.decide("a").action is State.allow
