"""Both runtimes implement the one interface the routes depend on (costwarden/api/contract.py)."""
from __future__ import annotations

import inspect

import pytest

from costwarden.api.contract import Runtime
from costwarden.api.distributed import DistributedRuntime
from costwarden.api.runtime import EmbeddedRuntime

MEMBERS = [n for n in dir(Runtime) if not n.startswith("_")] + list(Runtime.__annotations__)


@pytest.mark.parametrize("cls", [EmbeddedRuntime, DistributedRuntime], ids=lambda c: c.__name__)
def test_runtime_offers_every_member_the_routes_use(cls):
    missing = [n for n in set(MEMBERS) if not hasattr(cls, n) and n not in _instance_attrs(cls)]
    assert missing == [], f"{cls.__name__} lacks {missing}"
    for name, member in inspect.getmembers(Runtime, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(cls, name)
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(member), name
        want = list(inspect.signature(member).parameters)
        got = list(inspect.signature(mine).parameters)
        assert got[:len(want)] == want, f"{cls.__name__}.{name}{got} does not take {want}"


def _instance_attrs(cls) -> set[str]:
    src = inspect.getsource(cls.__init__)
    return {line.split("self.", 1)[1].split("=")[0].split(":")[0].strip()
            for line in src.splitlines() if "self." in line and "=" in line}
