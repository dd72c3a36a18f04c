"""GET /v1/decisions/{workflow} at the speed of a lookup: answered before FastAPI's machinery from
pre-encoded bytes, never through the pipeline thread; and the decision process (api.decisions_port,
costwarden/api/decision_process.py) that answers the same from a process of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from api_helpers import usage
from costwarden.budgets.controls import Control, State


def wait_for(pred, timeout: float = 5.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


@pytest.fixture
def dapi(api):
    """The `api` fixture's app with a decision process too (a free port)."""
    from costwarden.api.decision_process import DecisionProcess

    dp = DecisionProcess(api.app).start()
    try:
        yield api, dp
    finally:
        dp.stop()


def _get(base: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(base + path, headers=headers, timeout=10)


def test_the_decision_port_answers_exactly_as_the_api_port(dapi):
    api, dp = dapi
    gw = api.tokens["gateway"]
    api.client().post("/v1/events", json=usage("b-1", "lite-agent"))  # blocked by any spend
    api.client().post("/v1/events", json=usage("t-1", "runaway", input_tokens=4_000_000))  # throttled (50%)
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/runaway", gw).json()["action"] == "throttle", 2)
    cases = [("/v1/decisions/runaway", gw), ("/v1/decisions/lite-agent", gw), ("/v1/decisions/ünïcode-wf", gw),
             ("/v1/decisions/rag", api.tokens["finance"]),                 # 200 for every reading role
             ("/v1/decisions/rag", None), ("/v1/decisions/rag", "cw_unknown"),  # 401
             ("/v1/decisions/rag", api.tokens["viewer"]),                   # 403
             ("/v1/decisions/" + "x" * 257, gw),                            # 422
             ("/v1/decisions/support/triage", gw), ("/v1/decisions/", gw),    # a "/" in the name; 422
             ("/v1/nothing", gw)]                                           # 404
    for path, token in cases:
        mine, theirs = _get(dp.url, path, token), _get(api.url, path, token)
        assert (mine.status_code, mine.json()) == (theirs.status_code, theirs.json()), (path, mine.text, theirs.text)
        assert mine.headers.get("www-authenticate") == theirs.headers.get("www-authenticate")
        assert mine.headers["content-type"] == "application/json"
    assert _get(dp.url, "/v1/decisions/runaway", gw).json()["rate_per_min"] == "600"
    assert _get(dp.url, "/v1/decisions/lite-agent", gw).json()["action"] == "block"


def test_decisions_never_wait_for_the_pipeline_thread(dapi):
    """The pipeline thread busy for 2 s (a long batch): decisions on both ports still answer at once."""
    api, dp = dapi
    gw = api.tokens["gateway"]
    busy = threading.Event()
    api.runtime.thread.submit(lambda: (busy.set(), time.sleep(2.0)))
    assert busy.wait(5)
    since = time.monotonic()
    with httpx.Client(headers={"Authorization": f"Bearer {gw}"}, timeout=10) as c:
        for base in (api.url, dp.url):
            c.get(base + "/v1/decisions/rag")  # connected
            t0 = time.perf_counter()
            for _ in range(20):
                assert c.get(base + "/v1/decisions/rag").status_code == 200
            assert (time.perf_counter() - t0) / 20 < 0.05, base
    assert time.monotonic() - since < 2.0  # all answered while the pipeline thread was still busy


def test_a_change_reaches_the_decision_process_at_once_and_expiry_is_honoured(dapi):
    api, dp = dapi
    gw = api.tokens["gateway"]
    cache = api.runtime.cache
    now = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    cache.apply(Control("exp-wf", State.block, None, "a short block", "b", now, now, now + timedelta(seconds=1.0)))
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/exp-wf", gw).json()["action"] == "block", 1, 0.001)
    print(f"\ncache -> decision process: {1000 * (time.perf_counter() - t0):.1f} ms (polled over HTTP)")
    assert _get(api.url, "/v1/decisions/exp-wf", gw).json()["action"] == "block"
    time.sleep(1.05)  # expired: allow on both ports, nothing sent
    for base in (dp.url, api.url):
        assert _get(base, "/v1/decisions/exp-wf", gw).json() == {
            "workflow": "exp-wf", "action": "allow", "rate_per_min": None, "reason": "", "budget_id": "",
            "expires_at": None}
    cache.apply(Control("exp-wf", State.throttle, Decimal("30"), "slow down", "b", now, now, None))
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/exp-wf", gw).json()["rate_per_min"] == "30", 1)
    cache.replace([])  # a feed that re-read its source: everything goes
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/exp-wf", gw).json()["action"] == "allow", 1)


def test_tokens_created_and_revoked_through_the_api_apply_to_the_decision_process_at_once(dapi):
    api, dp = dapi
    adm = api.client("admin")
    created = adm.post("/v1/tokens", json={"name": "late-gw", "role": "gateway", "reason": "t"}).json()
    assert _get(dp.url, "/v1/decisions/rag", created["token"]).status_code == 200
    r = adm.post(f"/v1/tokens/{created['sha256_prefix']}/revoke", json={"reason": "rotated"})
    assert r.status_code == 200, r.text
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/rag", created["token"]).status_code == 401, 1)


def test_a_token_added_in_the_store_is_seen_after_the_next_reload(dapi):
    """Created elsewhere (another replica, the store): the decision process waits for the API's next
    token reload, as the API port does, instead of refusing a token that is about to be known."""
    from costwarden.api import create_token

    api, dp = dapi
    token = api.runtime.thread.call(lambda: create_token(api.runtime.store, "other-replica-gw", "gateway"))
    t0 = time.monotonic()
    assert _get(dp.url, "/v1/decisions/rag", token).status_code == 200
    assert time.monotonic() - t0 < 2.0


def test_the_decision_process_comes_back_with_the_whole_state_when_killed(dapi):
    api, dp = dapi
    gw = api.tokens["gateway"]
    api.client().post("/v1/events", json=usage("b-2", "lite-agent"))
    assert wait_for(lambda: _get(dp.url, "/v1/decisions/lite-agent", gw).json()["action"] == "block", 2)
    old = dp.proc.pid
    os.kill(old, signal.SIGKILL)
    # the next change (or the token book's next reload tick, every 0.5 s) finds it gone
    assert wait_for(lambda: dp.proc.pid != old and dp.restarts == 1, 10, 0.05)
    assert _get(dp.url, "/v1/decisions/lite-agent", gw).json()["action"] == "block"


def test_serve_with_a_decisions_port_and_its_process_ends_with_the_api(tmp_path):
    """`costwarden serve` with COSTWARDEN_API__DECISIONS_PORT: both ports answer; SIGKILL the API
    process and the decision process exits too (its stdin closes)."""
    from costwarden.api.server import free_port

    port, dport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTWARDEN_")}
    env.update(COSTWARDEN_DATA_DIR=str(tmp_path / "data"), COSTWARDEN_API__DECISIONS_PORT=str(dport),
               PYTHONUNBUFFERED="1")
    token = subprocess.run([sys.executable, "-m", "costwarden.cli", "tokens", "create", "--name", "gw", "--role",
                            "gateway"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "costwarden.cli", "serve", "--port", str(port), "--no-alerts"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:  # (the decision process listens first, then the API)
            try:
                return all(_get(f"http://127.0.0.1:{p}", "/v1/decisions/rag", token).status_code == 200
                           for p in (dport, port))
            except httpx.HTTPError:
                return False
        assert wait_for(up, 90, 0.1), (tmp_path / "serve.log").read_text()
        text = (tmp_path / "serve.log").read_text()
        child = int(text.split("their own: pid ", 1)[1].split(",", 1)[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            try:  # a zombie until init reaps it: as good as gone
                return open(f"/proc/{child}/stat").read().split(") ", 1)[1].startswith("Z")
            except OSError:
                return True
        assert wait_for(gone, 5, 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_fast_path_requests_are_counted_in_metrics(api):
    gw = api.client()
    for _ in range(3):
        assert gw.get("/v1/decisions/rag").status_code == 200
    text = api.client("viewer").get("/metrics").text
    line = next(x for x in text.splitlines()
                if x.startswith("costwarden_http_requests_total{") and "/v1/decisions/{workflow}" in x
                and 'status="200"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= 3


def test_the_decision_process_takes_the_priority_it_may_and_says_which(api):
    """api.decisions_priority: realtime (SCHED_FIFO) where the process may (root, CAP_SYS_NICE),
    else high, else normal; /healthz says which. A wrong value is a configuration error."""
    from costwarden.api.decision_process import PRIORITIES, DecisionProcess
    from costwarden.errors import ConfigError

    dp = DecisionProcess(api.app, priority="realtime").start()
    try:
        got = httpx.get(dp.url + "/healthz").json()["priority"]
        assert got in PRIORITIES
        if got == "realtime":
            assert os.sched_getscheduler(dp.proc.pid) == os.SCHED_FIFO
        assert _get(dp.url, "/v1/decisions/rag", api.tokens["gateway"]).json()["action"] == "allow"
    finally:
        dp.stop()
    with pytest.raises(ConfigError):
        DecisionProcess(api.app, priority="urgent")
