"""The gateway side against a running API: the SDK guard is stopped by a tripped budget, follows
releases, fails open/closed by policy, and reserve-then-settle refuses what a hard budget can't pay."""
from __future__ import annotations

import time

import pytest

from api_helpers import BUDGETS, serve_api, usage
from costwarden.api.server import free_port
from costwarden.sdk import Costwarden, Refused


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_sdk_guard_is_stopped_by_a_tripped_budget_and_sees_the_release(api):
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10) and guard.check("runaway").allowed
        for i in range(4):  # 4 x $0.30 = $1.20 against a $1.00 hard budget
            assert guard.report(usage(f"sdk-{i}", "runaway", input_tokens=2_000_000))
        assert guard.pending > 0
        assert guard.flush(10) and guard.pending == 0
        assert wait_for(lambda: guard.check("runaway").action == "block")
        d = guard.check("runaway")
        assert not d.allowed and d.budget_id == "runaway-cap" and "actual:100" in d.reason
        assert guard.check("rag").allowed  # other workflows unaffected
        api.client("admin").post("/v1/controls/runaway/release", json={"reason": "approved overrun"})
        assert wait_for(lambda: guard.check("runaway").allowed)
    finally:
        assert guard.close()


def test_throttle_is_enforced_locally_at_the_decided_rate(api):
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10)
        guard.report(usage("half", "runaway", input_tokens=4_000_000))  # $0.60: past the 50% throttle
        guard.flush()
        assert wait_for(lambda: guard.check("runaway").action == "throttle")
        results = [guard.check("runaway").allowed for _ in range(50)]
        assert 1 <= sum(results) <= 11  # 600/min = 10/s bucket: a burst is capped, not all 50
    finally:
        guard.close()


def test_unreachable_api_follows_the_fail_policy():
    url = f"http://127.0.0.1:{free_port()}"
    guard = Costwarden(url, "cw_x", fail_open={"chat": True}, default_fail_open=False)
    try:
        assert not guard.wait_ready(0.3)
        chat, other = guard.check("chat"), guard.check("batch-job")
        assert chat.allowed and chat.source == "fail-open"
        assert not other.allowed and other.source == "fail-closed"
        guard.report(usage("kept", "chat"))
        assert guard.pending == 1  # kept for retry, never silently dropped
    finally:
        assert guard.close(timeout=0.3) is False  # says it could not deliver


def test_bounded_buffer_says_what_it_refused():
    guard = Costwarden(f"http://127.0.0.1:{free_port()}", "cw_x", max_buffer=2, wait_ready_s=0)
    try:
        assert [guard.report(usage(f"b{i}", "w")) for i in range(3)] == [True, True, False]
        assert guard.stats["dropped"] == 1 and guard.pending == 2
    finally:
        guard.close(timeout=0.1)


def test_batch_decisions_and_the_stream_resume_from_a_version(api):
    import httpx

    gw = api.client()
    first = gw.post("/v1/decisions", json={"workflows": ["runaway", "rag"]}).json()
    assert [d["action"] for d in first["decisions"]] == ["allow", "allow"]
    gw.post("/v1/events", json=usage("trip", "runaway", input_tokens=10_000_000))
    lines = []
    assert first["cursor"] == f'{first["epoch"]}:{first["version"]}'
    with httpx.Client(base_url=api.url, headers=gw.headers, timeout=10) as c:
        with c.stream("GET", "/v1/controls/stream", params={"since": first["cursor"]}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("data:") and '"block"' in line:
                    break
    assert any(line.startswith("event: control") for line in lines)
    assert not any(line.startswith("event: snapshot") for line in lines)


def test_reserve_then_settle_refuses_what_the_hard_budget_cannot_pay(api):
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10)
        # gpt-4o-mini: 1M input + 1M output = $0.75 max per call against $1.00
        first = guard.reserve("runaway", "gpt-4o-mini", "openai", 1_000_000, 1_000_000)
        assert str(first.estimate_usd) == "0.750000000"
        with pytest.raises(Refused, match="runaway-cap"):
            guard.reserve("runaway", "gpt-4o-mini", "openai", 1_000_000, 1_000_000)
        assert guard.reserve("rag", "gpt-4o-mini", "openai", 1_000_000, 1_000_000)  # no hard budget
        out = guard.settle(first, usage("settled-1", "runaway", input_tokens=100_000, output_tokens=10_000))
        assert out["hold"] == "released" and out["cost_usd"] == "0.021000000"
        second = guard.reserve("runaway", "gpt-4o-mini", "openai", 1_000_000, 1_000_000)  # $0.021 + $0.75 fits
        guard.release(second)
        holds = api.client("viewer").get("/v1/reservations").json()["holds"]
        assert [h["workflow"] for h in holds] == ["rag"]
        r = api.client().post("/v1/reservations", json={"workflow": "runaway", "model": "no-such-model",
                                                         "provider": "openai", "max_input_tokens": 1,
                                                         "max_output_tokens": 1})
        assert r.status_code == 422 and r.json()["error"] == "unpriced"
    finally:
        guard.close()


def test_holds_expire_after_their_ttl(api):
    c = api.client()
    body = {"workflow": "runaway", "model": "gpt-4o-mini", "provider": "openai",
            "max_input_tokens": 1_000_000, "max_output_tokens": 1_000_000}
    assert c.post("/v1/reservations", json={**body, "ttl_s": 0.2}).status_code == 201
    assert c.post("/v1/reservations", json=body).status_code == 409
    time.sleep(0.3)
    assert c.post("/v1/reservations", json=body).status_code == 201


SLASHED = BUDGETS + """\
  - id: triage-cap
    scope: {workflow: support/triage}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: urgent-cap
    scope: {workflow: support/escalate/urgent}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 100, actions: [{block: true}]}
"""


@pytest.fixture
def api_slashed(settings, tmp_path):
    yield from serve_api(settings, tmp_path, SLASHED)


def test_a_workflow_named_with_a_slash_is_blocked_and_released_like_any_other(api_slashed):
    """'support/triage' is a workflow name like any other: its decision, the SDK's check, an admin's
    release through the API and through the console all reach it (a '/' is not a path separator)."""
    import httpx

    api = api_slashed
    guard = Costwarden(api.url, api.tokens["gateway"])
    gw, admin = api.client(), api.client("admin")
    try:
        assert guard.wait_ready(10)
        for i, (wf, budget) in enumerate((("support/triage", "triage-cap"), ("support/escalate/urgent", "urgent-cap"))):
            assert guard.check(wf).allowed
            r = gw.post("/v1/events", json=usage(f"slash-{i}", wf, input_tokens=10_000_000))  # $1.50 > $1.00
            assert r.status_code == 200 and r.json()["control_changes"] == [{"workflow": wf, "state": "block"}]
            quoted = wf.replace("/", "%2F")
            r = gw.get(f"/v1/decisions/{quoted}")
            assert r.status_code == 200 and r.json()["action"] == "block" and r.json()["budget_id"] == budget
            assert gw.get(f"/v1/decisions/{wf}").json()["action"] == "block"
            assert gw.get("/v1/decisions/support").json()["action"] == "allow"  # another workflow
            assert wait_for(lambda: guard.check(wf).action == "block")
            if i == 0:  # released through the API
                r = admin.post(f"/v1/controls/{quoted}/release", json={"reason": "triage backlog approved"})
                assert r.status_code == 200 and r.json()["workflow"] == wf and r.json()["to"] == "allow"
            else:  # through the console: an admin's cookie, the page's form token, the form's own action
                with httpx.Client(base_url=api.url, cookies={"cw_console": api.tokens["admin"]}) as c:
                    page = c.get("/ui/controls").text
                    assert f'action="/ui/controls/{wf}/release"' in page
                    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                    r = c.post(f"/ui/controls/{wf}/release", data={"reason": "urgent approved", "csrf": token})
                    assert r.status_code in (200, 303)
            assert gw.get(f"/v1/decisions/{quoted}").json()["action"] == "allow"
            assert wait_for(lambda: guard.check(wf).allowed)
        entries = api.client("viewer").get("/v1/audit").json()["entries"]
        people = [(e["workflow"], e["why"]) for e in entries if e["kind"] == "control" and e["actor_kind"] == "person"]
        assert people[-2:] == [("support/triage", "triage backlog approved"),
                               ("support/escalate/urgent", "urgent approved")]
    finally:
        guard.close()
