"""Fixtures of the API tests: a real uvicorn server on 127.0.0.1 over an EmbeddedPipeline whose
budgets block `runaway` at $1.00 a day and `lite-agent` at $0.000001."""
from __future__ import annotations

import pytest

from api_helpers import BUDGETS, Api


@pytest.fixture
def api(settings, tmp_path):
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token

    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    settings.budgets.budgets_file = budgets
    settings.api.stream_heartbeat_s = 1.0
    rt = EmbeddedRuntime.open(settings, deliver=False)
    tokens = {role: rt.thread.call(lambda role=role: create_token(rt.store, f"{role}-bot", role))
              for role in ("gateway", "viewer", "finance", "admin")}
    app = create_app(rt)
    srv = ApiServer(app).start()
    try:
        yield Api(srv.url, rt, app, tokens)
    finally:
        srv.stop()
        rt.close()


# --- distributed mode (test_api_distributed.py): a real broker and the ClickHouse HTTP test adapter
@pytest.fixture(scope="session")
def kafka_broker():
    from costwarden.testing.fixtures import kafka_broker_fixture

    yield from kafka_broker_fixture()


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory):
    from costwarden.testing.clickhouse_http import serve_clickhouse_http

    with serve_clickhouse_http(tmp_path_factory.mktemp("ch-http-api")) as url:
        yield url
