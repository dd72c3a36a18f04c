"""Bodies of the pytest fixtures the server-backed suites share (each suite keeps its own session
fixture, so each gets its own broker and topics stay isolated between suites)."""
from __future__ import annotations

import os
from typing import Iterator

from costwarden.testing.kafka_broker import BrokerUnavailable, kafka_broker_session


def kafka_broker_fixture() -> Iterator:
    """Yield a running broker (`.bootstrap`, `.restart()` when it is ours). Without one, the test
    fails under CI ($CI set) and is skipped elsewhere."""
    import pytest

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
