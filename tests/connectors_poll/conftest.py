"""Fixtures for the poller tests (helpers in poll_helpers.py)."""
from __future__ import annotations

import pytest

from poll_helpers import FakeProvider, Receiver


@pytest.fixture
def provider():
    p = FakeProvider().start()
    yield p
    p.stop()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def pipeline(settings):
    from costwarden.embedded import EmbeddedPipeline

    p = EmbeddedPipeline(settings, deliver=False)
    yield p
    p.close(flush_alerts=False)
