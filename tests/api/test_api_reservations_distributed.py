"""Reservations in distributed mode: two API replicas with `api.replicas`, one owner per workflow,
a real Kafka broker, a `costwarden worker` and the ClickHouse HTTP test adapter.

Concurrent reservations spread over both replicas never admit more than the hard budget; the
non-owner's answers come from the owner; settled spend is counted once, before and after a worker
stored it; an unreachable owner fails closed (503)."""
from __future__ import annotations

import json
import time
import sys
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))

import dist_harness as h  # noqa: E402
from api_helpers import BUDGETS, usage  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.integration]
OWNER = "X-Costwarden-Owner"
DIME = {"model": "gpt-4o", "provider": "openai", "max_input_tokens": 40_000, "max_output_tokens": 0}  # $0.10


def _settings(env: dict, data_dir: Path, monkeypatch, replicas: list[str], me: str):
    from costwarden.config import Settings

    with monkeypatch.context() as m:
        for k, v in env.items():
            if k.startswith("COSTWARDEN_") and k != "COSTWARDEN_KAFKA__METRICS_PORT":
                m.setenv(k, v)
        m.setenv("COSTWARDEN_DATA_DIR", str(data_dir))
        m.setenv("COSTWARDEN_API__REPLICAS", json.dumps(replicas))
        m.setenv("COSTWARDEN_API__SELF_URL", me)
        m.setenv("COSTWARDEN_API__OWNER_TIMEOUT_S", "3")
        return Settings()


def _burst(clients: list[httpx.Client], wf: str, n: int, **over) -> list[httpx.Response]:
    body = {**DIME, "workflow": wf, **over}
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: clients[i % len(clients)].post("/v1/reservations", json=body), range(n)))


def test_one_owner_per_workflow_admits_within_the_hard_budget(kafka_broker, clickhouse_url, tmp_path,
                                                               monkeypatch):
    from costwarden.api import ApiServer, DistributedRuntime, create_app, create_token
    from costwarden.api.owner import ReplicaRouter
    from costwarden.api.server import free_port

    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    router = ReplicaRouter(urls, urls[0])
    wf = next(f"agent-{i}" for i in range(100) if router.owner(f"agent-{i}") == urls[0])  # owned by A
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS + f"""\
  - id: agent-cap
    scope: {{workflow: {wf}}}
    period: day
    amount: "1.00"
    thresholds:
      - {{at: 100, actions: [{{block: true}}]}}
""")
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("resd"), tmp_path / "w", h.unique("cwres"),
                       COSTWARDEN_BUDGETS__BUDGETS_FILE=str(budgets))
    worker = h.Worker(env, tmp_path / "worker.log").start()
    runtimes, servers, clients = [], [], []
    try:
        worker.metrics_port()
        for name, url in zip("ab", urls):
            runtimes.append(DistributedRuntime.open(_settings(env, tmp_path / name, monkeypatch, urls, url)))
        tokens = {role: runtimes[0].thread.call(lambda role=role: create_token(runtimes[0].store, f"{role}-bot", role))
                  for role in ("gateway", "viewer")}
        for rt, url in zip(runtimes, urls):
            servers.append(ApiServer(create_app(rt), port=int(url.rsplit(":", 1)[1])).start())
        a, b, viewer_a, viewer_b = (
            httpx.Client(base_url=s.url, timeout=10, headers={"Authorization": f"Bearer {tokens[role]}"})
            for role, s in (("gateway", servers[0]), ("gateway", servers[1]), ("viewer", servers[0]),
                            ("viewer", servers[1])))
        clients += [a, b, viewer_a, viewer_b]

        # 24 concurrent $0.10 reservations, half through the non-owner B, against a $1.00 hard budget
        rs = _burst([a, b], wf, 24)
        ok = [r for r in rs if r.status_code == 201]
        assert sorted({r.status_code for r in rs}) == [201, 409], [r.text for r in rs]
        assert sum(Decimal(r.json()["estimate_usd"]) for r in ok) == Decimal("1.00") and len(ok) == 10
        assert all(r.headers[OWNER] == urls[0] for r in rs)  # B's answers came from A
        assert all(r.json()["id"].startswith(router.id_prefix) for r in ok)
        assert "hard limit $1" in next(r for r in rs if r.status_code == 409).json()["detail"]
        assert len(viewer_a.get("/v1/reservations").json()["holds"]) == 10
        assert viewer_b.get("/v1/reservations").json()["holds"] == []  # B owns none of them

        # through B: release 5 holds, settle 5 with $0.05 of real usage each ($0.25 in flight)
        ids = [r.json()["id"] for r in ok]
        for hid in ids[:5]:
            r = b.post(f"/v1/reservations/{hid}/release")
            assert r.status_code == 200 and r.headers[OWNER] == urls[0], r.text
        assert b.post(f"/v1/reservations/{ids[0]}/release").status_code == 404
        for hid in ids[5:]:
            ev = usage(h.unique("s"), wf, input_tokens=20_000, output_tokens=0, model="gpt-4o")
            r = b.post(f"/v1/reservations/{hid}/settle", json=ev)
            assert r.status_code == 200 and r.json()["hold"] == "released", r.text
            assert Decimal(r.json()["cost_usd"]) == Decimal("0.05") and r.headers[OWNER] == urls[0]
        assert viewer_a.get("/v1/reservations").json()["holds"] == []

        # the settled $0.25 counts whether or not a worker stored it yet: room for exactly 7 dimes
        spend = lambda: Decimal(viewer_b.get("/v1/budgets/agent-cap").json()["spend_usd"])  # noqa: E731
        stored_then = spend()
        rs = _burst([b, a], wf, 12)
        assert sum(r.status_code == 201 for r in rs) == 7, [r.text for r in rs]

        # once stored it counts once (store, not store + settled): $0.25 + $0.70 + $0.05 fits exactly
        print(f"\nstored spend when the second burst ran: ${stored_then} of the $0.25 settled")
        h.wait_for(lambda: spend() == Decimal("0.25"), 45, 0.2, f"the settled usage stored\n{worker.tail()}")
        r = b.post("/v1/reservations", json={**DIME, "workflow": wf, "max_input_tokens": 20_000})
        assert r.status_code == 201, r.text
        assert b.post("/v1/reservations", json={**DIME, "workflow": wf, "max_input_tokens": 1000}).status_code == 409

        # the owner gone: the non-owner fails closed and says why
        servers[0].stop()
        r = b.post("/v1/reservations", json={**DIME, "workflow": wf})
        assert r.status_code == 503 and urls[0] in r.json()["detail"] and "failed closed" in r.json()["detail"]
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()
        for rt in runtimes:
            rt.close()
        worker.kill()


def test_throttle_leases_come_from_the_owner_replicas_one_bucket(kafka_broker, clickhouse_url, tmp_path,
                                                                  monkeypatch):
    """A throttle on the controls topic reaches both replicas; leases through either are granted
    from the owner's one bucket (the non-owner forwards), so together they get the rate, not 2x;
    the owner gone, the non-owner answers 503 (the SDK then falls back to rate / guards)."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    from costwarden.api import ApiServer, DistributedRuntime, create_app, create_token
    from costwarden.api.owner import ReplicaRouter
    from costwarden.api.server import free_port
    from costwarden.budgets.controls import ControlBook, State
    from costwarden.distributed.state import to_json
    from costwarden.persist import change_rows

    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    router = ReplicaRouter(urls, urls[0])
    wf = next(f"tagent-{i}" for i in range(100) if router.owner(f"tagent-{i}") == urls[0])  # owned by A
    env = h.worker_env(kafka_broker.bootstrap, clickhouse_url, h.unique("thr"), tmp_path / "w", h.unique("cwthr"))
    runtimes, servers, clients = [], [], []
    try:
        for name, url in zip("ab", urls):
            runtimes.append(DistributedRuntime.open(_settings(env, tmp_path / name, monkeypatch, urls, url)))
        token = runtimes[0].thread.call(lambda: create_token(runtimes[0].store, "gateway-bot", "gateway"))
        for rt, url in zip(runtimes, urls):
            servers.append(ApiServer(create_app(rt), port=int(url.rsplit(":", 1)[1])).start())
        a, b = (httpx.Client(base_url=s.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
                for s in servers)
        clients += [a, b]

        # a worker's throttle, as it would put it on the controls topic: 600/min
        now = datetime.now(timezone.utc)
        change = ControlBook([]).apply_rule(wf, State.throttle, rate_per_min=Decimal(600), budget_id="agent-cap",
                                            period_start=now.replace(hour=0, minute=0, second=0, microsecond=0),
                                            expires_at=now + timedelta(hours=1), reason="test throttle", at=now)
        rows, _ = change_rows([change])
        asyncio.run(runtimes[0].producer.send_all([(h.topic(env, "controls"), wf.encode(), to_json(rows[0]))]))
        for c in (a, b):
            h.wait_for(lambda c=c: c.get(f"/v1/decisions/{wf}").json()["action"] == "throttle", 30, 0.05,
                       "the throttle on both replicas")

        t0 = time.monotonic()
        rs = [(a, b)[i % 2].post(f"/v1/throttle/{wf}/lease", json={"want": 3, "guard": f"g{i % 2}"})
              for i in range(40)]
        took = time.monotonic() - t0
        assert all(r.status_code == 200 and r.headers[OWNER] == urls[0] for r in rs), [r.text for r in rs]
        granted = sum(r.json()["granted"] for r in rs)
        assert 10 <= granted <= 10 + 10 * took + 1  # one bucket: its burst + the rate, through both
        assert rs[-1].json()["guards"] == 2 and rs[-1].json()["rate_per_min"] == "600"

        servers[0].stop()  # the owner gone: the non-owner says so (the guards fall back, sdk/client.py)
        r = b.post(f"/v1/throttle/{wf}/lease", json={"want": 1})
        assert r.status_code == 503 and urls[0] in r.json()["detail"]
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()
        for rt in runtimes:
            rt.close()
