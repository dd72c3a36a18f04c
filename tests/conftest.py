"""Shared fixtures. Server-backed tests are marked `integration` / `kafka`; with
COSTWARDEN_REQUIRE_SERVERS=1 (set by .ci/run) a skipped server test fails the run."""
from __future__ import annotations

import os

import pytest

REQUIRE = os.environ.get("COSTWARDEN_REQUIRE_SERVERS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE and rep.skipped and (item.get_closest_marker("kafka") or item.get_closest_marker("integration")):
        rep.outcome = "failed"
        rep.longrepr = f"server-backed test skipped while COSTWARDEN_REQUIRE_SERVERS=1: {rep.longrepr}"
