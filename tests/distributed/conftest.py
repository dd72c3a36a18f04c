"""Fixtures for the distributed tests: the real Kafka broker (the same resolution as
tests/testing/conftest.py: env, testcontainers, Kafka's jars) and the ClickHouse HTTP TEST
ADAPTER (chDB behind ClickHouse's HTTP interface, in its own process)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # dist_harness

from costwarden.testing.fixtures import kafka_broker_fixture  # noqa: E402


@pytest.fixture(scope="session")
def kafka_broker():
    yield from kafka_broker_fixture()


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory):
    from costwarden.testing.clickhouse_http import serve_clickhouse_http

    with serve_clickhouse_http(tmp_path_factory.mktemp("ch-http-dist")) as url:
        yield url


@pytest.fixture
def spawn():
    """spawn(env, log_path) -> a started `costwarden worker` process, stopped at teardown."""
    import dist_harness as h

    started = []

    def start(env, log_path):
        w = h.Worker(env, log_path).start()
        started.append(w)
        return w
    yield start
    for w in started:
        w.kill()
