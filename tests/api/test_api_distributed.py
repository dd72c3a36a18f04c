"""`costwarden api --mode distributed` against real servers: a Kafka broker, a `costwarden worker`
subprocess, the ClickHouse HTTP test adapter, and TWO API replicas (uvicorn on free ports).

A budget tripped by events posted to replica A blocks the workflow on replica B (and on an SDK
guard following B's stream); a person's release through B is audited and seen by A, and the
worker honours it for the rest of the budget period."""
from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))

import dist_harness as h  # noqa: E402
from api_helpers import BUDGETS, usage  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.integration]
CHATTY_BUDGET = """\
  - id: chatty-cap
    scope: {workflow: chatty}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 50, actions: [{throttle: {rate_per_min: "60"}}]}
      - {at: 100, actions: [{block: true}]}
"""
RUNAWAY_060 = {"workflow": "runaway", "input_tokens": 200_000, "output_tokens": 10_000, "model": "gpt-4o"}  # $0.60


def _settings(env: dict, data_dir: Path, monkeypatch):
    from costwarden.config import Settings

    with monkeypatch.context() as m:
        for k, v in env.items():
            if k.startswith("COSTWARDEN_") and k != "COSTWARDEN_KAFKA__METRICS_PORT":
                m.setenv(k, v)
        m.setenv("COSTWARDEN_DATA_DIR", str(data_dir))
        m.setenv("COSTWARDEN_API__STREAM_HEARTBEAT_S", "1")
        return Settings()


def _action(client: httpx.Client, wf: str = "runaway") -> str:
    return client.get(f"/v1/decisions/{wf}").json()["action"]


def test_two_replicas_converge_on_a_tripped_budget_and_a_persons_release(
        kafka_broker, clickhouse_url, tmp_path, monkeypatch):
    from costwarden.api import ApiServer, DistributedRuntime, create_app, create_token
    from costwarden.sdk import Costwarden

    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS + CHATTY_BUDGET)
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("apid"), tmp_path / "w", h.unique("cwapi"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=str(budgets))
    worker = h.Worker(env, tmp_path / "worker.log").start()
    runtimes, servers, clients = [], [], []
    try:
        worker.metrics_port()
        for name in ("a", "b"):
            runtimes.append(DistributedRuntime.open(_settings(env, tmp_path / name, monkeypatch)))
        tokens = {role: runtimes[0].thread.call(lambda role=role: create_token(runtimes[0].store, f"{role}-bot", role))
                  for role in ("gateway", "viewer", "admin")}
        for rt in runtimes:
            servers.append(ApiServer(create_app(rt)).start())
        a, b = (httpx.Client(base_url=s.url, timeout=10, headers={"Authorization": f"Bearer {tokens['gateway']}"})
                for s in servers)
        admin_b = httpx.Client(base_url=servers[1].url, timeout=10,
                               headers={"Authorization": f"Bearer {tokens['admin']}"})
        viewer_a = httpx.Client(base_url=servers[0].url, timeout=10,
                                headers={"Authorization": f"Bearer {tokens['viewer']}"})
        clients += [a, b, admin_b, viewer_a]
        assert a.get("/readyz").json()["mode"] == "distributed"
        assert _action(a) == _action(b) == "allow"

        with Costwarden(servers[1].url, tokens["gateway"]) as guard:
            h.wait_for(lambda: guard.ready, 10, 0.05, "the SDK guard following replica B")
            assert guard.check("runaway").allowed

            # usage in through A: per-event answers after the broker acked; a bad event says why
            r = a.post("/v1/events", json=[usage(h.unique("e"), **RUNAWAY_060), {"event_id": "bad"}])
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["accepted"] == 1 and body["rejected"] == 1
            assert body["results"][1]["status"] == "rejected" and body["results"][1]["reason"]
            h.wait_for(lambda: _action(b) == "throttle", 60, 0.05, "throttle at 50% on B")

            # the crossing event: time until BOTH replicas answer block
            t0 = time.monotonic()
            assert a.post("/v1/events", json=usage(h.unique("e"), **RUNAWAY_060)).json()["accepted"] == 1
            seen: dict[str, float] = {}
            while len(seen) < 2 and time.monotonic() - t0 < 60:
                for name, c in (("a", a), ("b", b)):
                    if name not in seen and _action(c) == "block":
                        seen[name] = time.monotonic() - t0
                time.sleep(0.01)
            assert set(seen) == {"a", "b"}, f"block seen by {seen}\n{worker.tail()}"
            print(f"\ncrossing event post -> block on replica A {seen['a'] * 1000:.0f} ms, "
                  f"on replica B {seen['b'] * 1000:.0f} ms (both: {max(seen.values()) * 1000:.0f} ms)")
            h.wait_for(lambda: guard.check("runaway").action == "block", 10, 0.02, "the SDK guard to block")
            assert not guard.check("runaway").allowed and guard.check("rag").allowed

            # status from the store, whichever replica is asked
            st = viewer_a.get("/v1/budgets/runaway-cap").json()
            assert st["state"] == "over" and Decimal(st["spend_usd"]) == Decimal("1.2")

            # a person's release through B: audited, seen by A and by the guard
            assert admin_b.post("/v1/controls/runaway/release", json={}).status_code == 422  # no reason
            r = admin_b.post("/v1/controls/runaway/release", json={"reason": "INC-7 fixed the retry loop"})
            assert r.status_code == 200, r.text
            assert r.json()["from"] == "block" and r.json()["to"] == "allow"
            assert _action(b) == "allow"
            h.wait_for(lambda: _action(a) == "allow", 10, 0.02, "replica A to see the release")
            h.wait_for(lambda: guard.check("runaway").allowed, 10, 0.02, "the SDK guard to see the release")
            audit = viewer_a.get("/v1/audit", params={"workflow": "runaway"}).json()["entries"]
            assert audit[-1]["to"] == "allow" and audit[-1]["who"] == "admin-bot"
            assert audit[-1]["why"] == "INC-7 fixed the retry loop" and audit[-1]["actor_kind"] == "person"

            # the worker honours a release for the rest of the period (ControlBook): `chatty` is
            # throttled at 50%, released by a person, and then crosses 100% without being blocked
            chatty = dict(RUNAWAY_060, workflow="chatty")
            a.post("/v1/events", json=usage(h.unique("e"), **chatty))
            h.wait_for(lambda: _action(a, "chatty") == "throttle", 60, 0.05, "chatty throttled")
            r = admin_b.post("/v1/controls/chatty/release", json={"reason": "launch day, expected"})
            assert r.status_code == 200 and r.json()["from"] == "throttle", r.text
            h.wait_for(lambda: _action(a, "chatty") == "allow", 10, 0.02, "A to see chatty released")
            a.post("/v1/events", json=usage(h.unique("e"), **chatty))
            spend = lambda: Decimal(viewer_a.get("/v1/budgets/chatty-cap").json()["spend_usd"])  # noqa: E731
            h.wait_for(lambda: spend() == Decimal("1.2"), 60, 0.2, "chatty's second event stored")
            time.sleep(2)  # the budget stage runs after the store write: give it time to (not) block
            assert _action(a, "chatty") == _action(b, "chatty") == "allow"
            assert guard.check("chatty").allowed

        # reservations: not offered in distributed mode, said plainly
        r = b.post("/v1/reservations", json={"workflow": "runaway", "model": "gpt-4o", "provider": "openai",
                                              "max_input_tokens": 10, "max_output_tokens": 10})
        assert r.status_code == 501 and "distributed mode" in r.json()["detail"]
        # throttle leases likewise: no owner replica to hold a workflow's bucket (guards keep their own)
        r = b.post("/v1/throttle/runaway/lease", json={"want": 1})
        assert r.status_code == 501 and "distributed mode" in r.json()["detail"]
        dead = h.json_lines(h.read_topic(kafka_broker.bootstrap, h.topic(env, "dead_letter"), timeout_s=1))
        assert [d["reason"] for d in dead if d["source"] == "api:gateway-bot"]
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()
        for rt in runtimes:
            rt.close()
        worker.kill()
