"""Fixtures for tests that need a real Kafka broker (see costwarden/testing/kafka_broker.py)."""
from __future__ import annotations

import os

import pytest

from costwarden.testing.kafka_broker import BrokerUnavailable, kafka_broker_session


@pytest.fixture(scope="session")
def kafka_broker():
    """A running broker for the whole session: `.bootstrap`, and `.restart()` when it is ours.

    If none can be had, the test fails under CI ($CI set) and is skipped elsewhere."""
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
