"""Fixtures of the SDK tests: `sdk_api(port=None, start=True)` builds an in-thread API server
(embedded runtime on the session's chDB, budgets of sdk_helpers.BUDGETS); closed after the test."""
from __future__ import annotations

import pytest

from sdk_helpers import InThreadApi


@pytest.fixture
def sdk_api(settings, tmp_path):
    made: list[InThreadApi] = []

    def make(port: int | None = None, start: bool = True) -> InThreadApi:
        api = InThreadApi(settings, tmp_path, port)
        made.append(api)
        return api.start() if start else api

    yield make
    for api in made:
        api.close()
