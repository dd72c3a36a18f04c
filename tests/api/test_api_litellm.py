"""The LiteLLM callback through real litellm calls (mock_response: no network): usage reaches the
API through the SDK, trips the workflow's hard budget, and the next call is refused before it runs."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the remote price map
litellm = pytest.importorskip("litellm")

from costwarden.integrations.litellm import CostwardenCallback, WorkflowBlocked, workflow_of  # noqa: E402
from costwarden.sdk import Costwarden  # noqa: E402

MSG = [{"role": "user", "content": "hello"}]


def test_workflow_comes_from_tags_or_spend_logs_metadata():
    assert workflow_of({"metadata": {"tags": ["team:search", "workflow:rag"]}}) == "rag"
    assert workflow_of({"metadata": {"spend_logs_metadata": {"workflow": "triage"}}}) == "triage"
    assert workflow_of({"litellm_params": {"metadata": {"tags": ["workflow:x"]}}}) == "x"
    assert workflow_of({"metadata": {"tags": ["team:a"]}}) is None


@pytest.fixture
def hooked(api):
    guard = Costwarden(api.url, api.tokens["gateway"])
    assert guard.wait_ready(10)
    cb = CostwardenCallback(guard)
    saved = list(litellm.callbacks)
    litellm.callbacks = [cb]
    try:
        yield cb, guard
    finally:
        litellm.callbacks = saved
        guard.close()


def test_litellm_calls_are_reported_and_a_tripped_budget_stops_the_next_call(api, hooked):
    cb, guard = hooked
    meta = {"tags": ["workflow:lite-agent", "team:agents"], "spend_logs_metadata": {"cost_center": "cc-7"}}
    r = litellm.completion(model="gpt-4o-mini", messages=MSG, mock_response="hi", metadata=meta)
    assert r.choices[0].message.content == "hi"
    deadline = time.monotonic() + 5
    while cb.reported == 0 and time.monotonic() < deadline:  # LiteLLM logs success in a thread
        time.sleep(0.02)
    assert cb.reported == 1 and not cb.rejects
    assert guard.flush(10)
    rows = api.runtime.thread.call(lambda: api.runtime.store.query(
        "SELECT workflow, team, tags['cost_center'] AS cc, source, cost_nanos FROM {db}.usage_events"))
    assert rows and rows[0]["workflow"] == "lite-agent" and rows[0]["team"] == "agents"
    assert rows[0]["cc"] == "cc-7" and rows[0]["source"] == "litellm" and rows[0]["cost_nanos"] > 0
    deadline = time.monotonic() + 5
    while guard.check("lite-agent").allowed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert guard.check("lite-agent").action == "block"

    with pytest.raises(WorkflowBlocked, match="lite-agent"):  # the SDK's async path: deployment hook
        asyncio.run(litellm.acompletion(model="gpt-4o-mini", messages=MSG, mock_response="hi", metadata=meta))
    with pytest.raises(WorkflowBlocked):  # sync callers: check, then litellm.completion
        cb.completion(model="gpt-4o-mini", messages=MSG, mock_response="hi", metadata=meta)
    with pytest.raises(WorkflowBlocked):  # the LiteLLM proxy's pre-call hook
        asyncio.run(cb.async_pre_call_hook(None, None, {"model": "gpt-4o-mini", "metadata": meta}, "completion"))
    other = {"tags": ["workflow:rag"]}
    assert litellm.completion(model="gpt-4o-mini", messages=MSG, mock_response="ok", metadata=other)
    data = asyncio.run(cb.async_pre_call_hook(None, None, {"metadata": other}, "completion"))
    assert data == {"metadata": other}
