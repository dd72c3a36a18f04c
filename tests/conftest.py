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


@pytest.fixture(scope="session")
def chdb_root(tmp_path_factory) -> str:
    """chDB opens one data directory per process: every test shares it, with a database each."""
    from costwarden.store import chdb_store

    if chdb_store._SESSIONS:
        path = next(iter(chdb_store._SESSIONS))
        return path[: -len("/chdb")] if path.endswith("/chdb") else path
    return str(tmp_path_factory.mktemp("cw-data"))


@pytest.fixture
def settings(chdb_root, request):
    """Settings for an embedded pipeline on the shared chDB directory and a fresh database."""
    import uuid
    from pathlib import Path

    from costwarden.config import load_settings

    s = load_settings()
    s.data_dir = Path(chdb_root)
    s.store.database = f"t_{uuid.uuid4().hex[:12]}"
    s.pipeline.batch_size = 2000
    return s
