"""Fixtures of the console tests: one real API server for the module's click-throughs (`console`),
a headless Chromium per test (`driver`), and the distributed mode's servers."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ui_helpers import NO_BROWSER, browser, serve_console


@pytest.fixture(scope="module")
def console(chdb_root, tmp_path_factory):
    from costwarden.config import load_settings

    s = load_settings()
    s.data_dir = Path(chdb_root)
    s.store.database = f"t_{uuid.uuid4().hex[:12]}"
    yield from serve_console(s, tmp_path_factory.mktemp("ui"))


@pytest.fixture
def driver():
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    d = browser()
    try:
        yield d
    finally:
        d.quit()


# --- distributed mode: a real broker and the ClickHouse HTTP test adapter
@pytest.fixture(scope="session")
def kafka_broker():
    from costwarden.testing.fixtures import kafka_broker_fixture

    yield from kafka_broker_fixture()


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory):
    from costwarden.testing.clickhouse_http import serve_clickhouse_http

    with serve_clickhouse_http(tmp_path_factory.mktemp("ch-http-ui")) as url:
        yield url
