"""Reserve-then-settle through the LiteLLM SDK (litellm.acompletion / litellm.completion with
mock_response, no network) against the real API: the deployment hook holds, the success hook
settles (spend recorded, hold dropped), a failed call's hold is released, check mode holds nothing."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

from costwarden.integrations.litellm import CostwardenCallback, WorkflowBlocked  # noqa: E402
from costwarden.sdk import Costwarden  # noqa: E402

MSG = [{"role": "user", "content": "hello"}]
META = {"tags": ["workflow:runaway", "team:agents"]}


@pytest.fixture
def guard(api):
    g = Costwarden(api.url, api.tokens["gateway"])
    deadline = time.monotonic() + 10
    while not g.ready and time.monotonic() < deadline:
        time.sleep(0.02)
    yield g
    g.close()


def use(cb):
    saved = list(litellm.callbacks)
    litellm.callbacks = [cb]
    return saved


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def call(cond, **kw):
    """litellm.acompletion, then keep the loop running until cond() (LiteLLM logs success and
    failure in tasks of the caller's loop, which asyncio.run would cancel on return)."""
    async def go():
        try:
            return await litellm.acompletion(model="gpt-4o-mini", messages=MSG, **kw)
        finally:
            deadline = time.monotonic() + 10
            while not cond() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
    return asyncio.run(go())


def spent(api, workflow):
    rows = api.runtime.thread.call(lambda: api.runtime.store.query(
        f"SELECT count() AS n, sum(cost_nanos) AS c FROM {{db}}.usage_events WHERE workflow = '{workflow}'"))
    return int(rows[0]["n"]), int(rows[0]["c"] or 0)


def test_acompletion_holds_then_settles(api, guard):
    cb = CostwardenCallback(guard)
    saved = use(cb)
    try:
        r = call(lambda: cb.stats["settled"] >= 1, mock_response="hi", max_tokens=100, metadata=META)
        assert r.choices[0].message.content == "hi"
        assert wait_for(lambda: cb.stats["settled"] == 1), cb.stats
        assert cb.stats["reserved"] == 1 and not api.client("viewer").get("/v1/reservations").json()["holds"]
        assert spent(api, "runaway")[0] == 1  # settled once, although LiteLLM may call both success hooks
    finally:
        litellm.callbacks = saved
        cb.close()


def test_a_failed_call_releases_and_check_mode_holds_nothing(api, guard):
    cb = CostwardenCallback(guard)
    saved = use(cb)
    try:
        with pytest.raises(litellm.InternalServerError):
            call(lambda: cb.stats["released"] >= 1, max_tokens=100, metadata=META,
                 mock_response="litellm.InternalServerError")
        assert wait_for(lambda: cb.stats["released"] >= 1), cb.stats
        assert not api.client("viewer").get("/v1/reservations").json()["holds"]
    finally:
        litellm.callbacks = saved
        cb.close()
    chk = CostwardenCallback(guard, mode="check")
    saved = use(chk)
    try:
        call(lambda: chk.reported >= 1, mock_response="hi", metadata=META)
        assert wait_for(lambda: chk.reported >= 1) and chk.stats["reserved"] == 0
    finally:
        litellm.callbacks = saved
        chk.close()


def test_a_refused_reservation_is_a_402_the_sdk_caller_sees(api, guard):
    cb = CostwardenCallback(guard)
    saved = use(cb)
    try:  # $0.000001 hard budget: a hold of even one call's input passes it
        with pytest.raises(WorkflowBlocked) as err:
            call(lambda: True, mock_response="hi", max_tokens=10, metadata={"tags": ["workflow:lite-agent"]})
        e = err.value
        assert e.status_code == 402 and e.error_code == "budget_exceeded" and e.retry_after_s is None
        assert e.headers["x-should-retry"] == "false" and "lite-cap" in str(e)
    finally:
        litellm.callbacks = saved
        cb.close()
