"""The console of a distributed API replica (`costwarden api --mode distributed`: a real Kafka broker
for the controls feed, the ClickHouse HTTP test adapter for the store) in a real browser: the
Budgets page shows the replica's own GET /v1/budgets figures, nested, with a chart each."""
from __future__ import annotations

import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from ui_helpers import sign_in, table

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

pytestmark = [pytest.mark.kafka, pytest.mark.integration]
BUDGETS = """\
version: 1
budgets:
  - {id: acme, scope: {org: acme}, period: month, amount: "900.00", thresholds: [{at: 80}]}
  - {id: team-search, parent: acme, scope: {org: acme, team: search}, period: month, amount: "100.00"}
  - {id: rag-answer, parent: team-search, scope: {team: search, workflow: rag-answer}, period: week, amount: "5.00",
     thresholds: [{at: 50}, {at: 100, actions: [{block: true}]}]}
  - {id: team-support, parent: acme, scope: {team: support}, period: quarter, amount: "250.00"}
"""


def _settings(tmp_path: Path, bootstrap: str, url: str):
    from costwarden.config import load_settings

    s = load_settings()
    app = f"cwui{uuid.uuid4().hex[:8]}"
    s.data_dir = tmp_path / "replica"
    s.store.url = SecretStr(url)
    s.store.database = app
    s.kafka.bootstrap_servers = bootstrap
    s.kafka.app_id = app
    for topic in ("topic_raw", "topic_dead_letter", "topic_processed", "topic_budget_usage", "topic_budget_events",
                  "topic_controls"):
        setattr(s.kafka, topic, f"{app}.{topic[6:]}")
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    s.budgets.budgets_file = budgets
    s.alerts.channels = {}
    return s


def test_a_distributed_replica_renders_the_budgets_page(kafka_broker, clickhouse_url, tmp_path, driver):
    from preload import preload

    from costwarden.api import ApiServer, DistributedRuntime, create_app, create_token

    rt = DistributedRuntime.open(_settings(tmp_path, kafka_broker.bootstrap, clickhouse_url))
    srv = None
    try:
        assert rt.mode == "distributed"
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        rt.thread.call(lambda: preload(rt.store, 20_000, end=end))  # what the workers would have stored
        viewer = rt.thread.call(lambda: create_token(rt.store, "viewer-bot", "viewer"))
        srv = ApiServer(create_app(rt)).start()
        sign_in(driver, srv.url, viewer)
        shown = {r["data-budget"]: r for r in table(driver, "budgets")}
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {viewer}"}, timeout=10) as api:
            expected = {b["budget"]: b for b in api.get("/v1/budgets").json()["budgets"]}
        assert list(shown) == ["acme", "team-search", "rag-answer", "team-support"]
        assert {b: int(r["data-depth"]) for b, r in shown.items()} == {
            "acme": 0, "team-search": 1, "rag-answer": 2, "team-support": 1}
        for bid, e in expected.items():
            s = shown[bid]
            assert (s["spend_usd@"], s["amount_usd@"], s["pct_used@"], s["state"]) == (
                e["spend_usd"], e["amount_usd"], e["pct_used"], e["state"]), bid
            gap = abs(Decimal(s["forecast_usd@"]) - Decimal(e["forecast_usd"]))
            assert gap <= max(Decimal("0.01"), Decimal(e["forecast_usd"]) / 1000), (bid, s, e)
        assert Decimal(expected["acme"]["spend_usd"]) > 0 and Decimal(expected["team-support"]["spend_usd"]) > 0
        charts = driver.find_elements("css selector", "figure.burn svg polyline.actual")
        assert len(charts) == 4
        points = driver.execute_script("return document.querySelector('#chart-team-support polyline.actual')"
                                       ".getAttribute('points').trim().split(' ').length")
        assert points > 4  # a quarter's spend, day by day, from the budget rollup
    finally:
        if srv is not None:
            srv.stop()
        rt.close()
