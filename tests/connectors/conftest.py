"""Fixtures on disk for the connector tests."""
from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fx():
    def read(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()
    return read
