"""Fixtures for tests that need a real Kafka broker (see costwarden/testing/kafka_broker.py)."""
from __future__ import annotations


import pytest

from costwarden.testing.fixtures import kafka_broker_fixture


@pytest.fixture(scope="session")
def kafka_broker():
    yield from kafka_broker_fixture()
