"""Fixtures of the API tests: a real uvicorn server on 127.0.0.1 over an EmbeddedPipeline whose
budgets block `runaway` at $1.00 a day and `lite-agent` at $0.000001."""
from __future__ import annotations

import pytest

from api_helpers import serve_api


@pytest.fixture
def api(settings, tmp_path):
    yield from serve_api(settings, tmp_path)


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
