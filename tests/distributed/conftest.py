"""Fixtures for the distributed tests: the real Kafka broker (the same resolution as
tests/testing/conftest.py: env, testcontainers, Kafka's jars) and the ClickHouse HTTP TEST
ADAPTER (chDB behind ClickHouse's HTTP interface, in its own process)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # dist_harness

from costwarden.testing.kafka_broker import BrokerUnavailable, kafka_broker_session  # noqa: E402


@pytest.fixture(scope="session")
def kafka_broker():
    try:
        cm = kafka_broker_session()
        broker = cm.__enter__()
    except BrokerUnavailable as e:
        msg = f"no Kafka broker for the kafka tests: {e}"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        yield broker
    finally:
        cm.__exit__(None, None, None)


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
