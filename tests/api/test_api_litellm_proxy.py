"""The costwarden callback inside the real LiteLLM proxy server (`litellm --config`, mock_response
models, a master key, no database), driven by the official openai and anthropic clients.

- reserve-then-settle bounds a hard budget under 16 concurrent client threads;
- a kill switch is one HTTP attempt (402 budget_exceeded, x-should-retry: false) for both clients;
- a throttle is 429 budget_throttled with Retry-After, which the openai client honours;
- a failed call releases its hold.

Attempts are counted at the proxy (a second callback, listed first, appends every request that
reaches the pre-call hooks to a file) and at the client (an httpx event hook)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api_helpers import usage

pytestmark = pytest.mark.integration

openai = pytest.importorskip("openai")
PROXY_MODULES = ("websockets", "orjson", "backoff", "apscheduler", "jwt", "semver", "multipart", "expression",
                 "fastapi_sso", "mcp", "soundfile", "uvloop")

BUDGETS = """\
version: 1
budgets:
  - id: burst-cap
    scope: {workflow: burst}
    period: day
    amount: "0.000200"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: kill-cap
    scope: {workflow: kill}
    period: day
    amount: "0.000010"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: slow-cap
    scope: {workflow: slow}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 1, actions: [{throttle: {rate_per_min: "60"}}]}
      - {at: 100, actions: [{block: true}]}
  - id: flaky-cap
    scope: {workflow: flaky}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 100, actions: [{block: true}]}
"""

CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-fake, mock_response: "hi there"}
  - model_name: broken
    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-fake, mock_response: "litellm.InternalServerError"}
litellm_settings:
  callbacks: ["hits.counter", "costwarden.integrations.litellm_proxy.callback"]
  num_retries: 0
general_settings:
  master_key: sk-master-test
"""

COUNTER = '''\
import json, os
from litellm.integrations.custom_logger import CustomLogger

class Hits(CustomLogger):
    """Every request that reaches the proxy's pre-call hooks: one line with its tags."""
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        tags = []
        for m in (data.get("metadata"), data.get("litellm_metadata")):
            if isinstance(m, dict) and isinstance(m.get("tags"), list):
                tags += m["tags"]
        with open(os.path.join(os.path.dirname(__file__), "hits.log"), "a") as f:
            f.write(json.dumps(tags) + "\\n")
        return data

counter = Hits()
'''

MOCK_COST_NANOS = 13_500  # the mock's usage, 10 prompt + 20 completion tokens of gpt-4o-mini: $0.0000135, exactly


class Proxy:
    def __init__(self, tmp: Path, cw_url: str, token: str) -> None:
        from costwarden.api.server import free_port

        self.dir = tmp
        (tmp / "config.yaml").write_text(CONFIG)
        (tmp / "hits.py").write_text(COUNTER)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("litellm")
        env = dict(os.environ, COSTWARDEN_URL=cw_url, COSTWARDEN_TOKEN=token, LITELLM_LOCAL_MODEL_COST_MAP="True",
                   LITELLM_LOG="ERROR", PYTHONUNBUFFERED="1")
        self.log = open(tmp / "proxy.log", "w")
        self.proc = subprocess.Popen([str(exe), "--config", str(tmp / "config.yaml"), "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=tmp, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the LiteLLM proxy exited:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health/liveliness", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the LiteLLM proxy did not start:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        self.log.flush()
        return "\n".join((self.dir / "proxy.log").read_text(errors="replace").splitlines()[-n:])

    def hits(self, workflow: str) -> int:
        p = self.dir / "hits.log"
        if not p.exists():
            return 0
        return sum(f"workflow:{workflow}" in json.loads(line) for line in p.read_text().splitlines() if line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def stack(chdb_root, tmp_path_factory):
    """costwarden's API (uvicorn, embedded runtime) and the LiteLLM proxy with the callback."""
    missing = [m for m in PROXY_MODULES if importlib.util.find_spec(m) is None]
    if missing or not Path(sys.executable).with_name("litellm").exists():
        pytest.skip(f"the LiteLLM proxy cannot run here (missing {missing}): pip install -e '.[test]'")
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token
    from costwarden.config import load_settings

    tmp = tmp_path_factory.mktemp("litellm-proxy")
    s = load_settings()
    s.data_dir = Path(chdb_root)
    s.store.database = f"t_{uuid.uuid4().hex[:12]}"
    (tmp / "budgets.yaml").write_text(BUDGETS)
    s.budgets.budgets_file = tmp / "budgets.yaml"
    s.api.stream_heartbeat_s = 1.0
    rt = EmbeddedRuntime.open(s, deliver=False)
    tokens = {role: rt.thread.call(lambda role=role: create_token(rt.store, f"{role}-bot", role))
              for role in ("gateway", "viewer")}
    srv = ApiServer(create_app(rt)).start()
    proxy = None
    try:
        proxy = Proxy(tmp, srv.url, tokens["gateway"])
        cw = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tokens['gateway']}"}, timeout=10)
        viewer = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tokens['viewer']}"}, timeout=10)
        yield {"proxy": proxy, "cw": cw, "viewer": viewer, "rt": rt}
        cw.close()
        viewer.close()
    finally:
        if proxy is not None:
            proxy.stop()
        srv.stop()
        rt.close()


def client(stack, retries: int = 2, attempts: list | None = None):
    hooks = {"request": [lambda request: attempts.append(request.url.path)]} if attempts is not None else {}
    return openai.OpenAI(base_url=stack["proxy"].url, api_key="sk-master-test", max_retries=retries,
                         http_client=openai.DefaultHttpxClient(event_hooks=hooks), timeout=30)


def chat(c, workflow: str, model: str = "gpt-4o-mini", max_tokens: int = 256):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}],
                                     max_tokens=max_tokens, extra_body={"metadata": {"tags": [f"workflow:{workflow}"]}})


def spent_nanos(stack, workflow: str) -> int:
    rt = stack["rt"]
    start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = rt.thread.call(lambda: rt.store.query(
        f"SELECT sum(cost_nanos) AS c, count() AS n FROM {{db}}.usage_events FINAL WHERE workflow = '{workflow}' "
        f"AND occurred_at >= toDateTime64('{start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"))
    return int(rows[0]["c"] or 0)


def open_holds(stack, workflow: str) -> int:
    return sum(h["workflow"] == workflow for h in stack["viewer"].get("/v1/reservations").json()["holds"])


def wait_for(cond, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_reserve_then_settle_bounds_a_hard_budget_under_16_threads(stack):
    """200,000 n$ hard budget, 13,500 n$ per call, max_tokens 256 (worst case ~155,000 n$ a call): the
    workflow's history (yesterday) sizes each hold at its p99 (13,500 n$), so 14 calls fit and none
    passes the limit; check-only admitted 49 calls past the crossing at 16 threads (issue 10)."""
    cw = stack["cw"]
    at = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    hist = [usage(f"burst-hist-{i}", "burst", 10, 20, occurred_at=at) for i in range(40)]
    assert cw.post("/v1/events", json=hist).json()["accepted"] == 40
    outcomes: Counter = Counter()
    errors: list = []
    lock = threading.Lock()

    def worker():
        c = client(stack, retries=0)
        for _ in range(8):
            try:
                chat(c, "burst")
                key = "ok"
            except openai.APIStatusError as e:
                key = f"{e.status_code} {e.code}"
                if e.code == "budget_exceeded":
                    assert e.response.headers["x-should-retry"] == "false"
            except Exception as e:  # noqa: BLE001
                key = "error"
                errors.append(repr(e))
            with lock:
                outcomes[key] += 1
            if key == "402 budget_exceeded":
                return
            if key.startswith("429"):
                time.sleep(0.05)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    admitted = outcomes["ok"]
    wait_for(lambda: open_holds(stack, "burst") == 0, 15, "every hold settled")
    wait_for(lambda: spent_nanos(stack, "burst") >= admitted * MOCK_COST_NANOS, 15, "the settled usage stored")
    spent = spent_nanos(stack, "burst")
    print(f"\nreserve through the proxy, 16 threads: {dict(outcomes)}; spent {spent} n$ of 200,000")
    assert set(outcomes) <= {"ok", "402 budget_exceeded", "429 budget_reserved"}, outcomes
    assert spent == admitted * MOCK_COST_NANOS  # every admitted call settled, once
    assert spent <= 200_000  # holds at the p99 of a constant cost: no call costs more than its hold
    assert admitted >= 12, outcomes  # worst-case holds (~155,000 n$) would have admitted 4 at most
    assert outcomes["402 budget_exceeded"] == 16  # then every thread was told, once, not to retry


def test_a_thousand_tiny_calls_through_the_proxy_total_what_the_provider_bills(stack):
    """1,000 mock gpt-4o-mini calls (10 + 20 tokens, $0.0000135 each) through the proxy's callback:
    13,500,000 n$ = $0.0135 stored and reported, as the provider bills them (tests/core/
    test_tiny_calls_exact.py has the same flow through `costwarden ingest`); rounded per call to
    14 µ$ they were $0.014."""
    day = datetime.now(timezone.utc).date().isoformat()
    errors: list = []

    def worker(n: int):
        c = client(stack, retries=0)
        for _ in range(n):
            try:
                chat(c, "tiny", max_tokens=32)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(125,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    wait_for(lambda: open_holds(stack, "tiny") == 0 and spent_nanos(stack, "tiny") >= 1000 * MOCK_COST_NANOS, 30,
             "the 1,000 calls settled and stored")
    assert spent_nanos(stack, "tiny") == 13_500_000
    r = stack["viewer"].get("/v1/reports/spend", params={"by": "workflow", "period": day})
    assert r.status_code == 200, r.text
    tiny = next(x for x in r.json()["rows"] if x["workflow"] == "tiny")
    assert (tiny["requests"], tiny["cost_nanos"], tiny["cost_usd"]) == (1000, 13_500_000, "0.013500000")


def test_a_kill_switch_is_one_attempt_for_the_openai_client(stack):
    cw, proxy = stack["cw"], stack["proxy"]
    assert cw.post("/v1/events", json=usage("kill-trip", "kill", 1000, 1000)).json()["accepted"] == 1
    wait_for(lambda: cw.get("/v1/decisions/kill").json()["action"] == "block", 10, "the block")
    probe = client(stack, retries=0)

    def proxy_blocks():
        try:
            chat(probe, "kill")
        except openai.APIStatusError as e:
            return e.status_code == 402
        return False
    wait_for(proxy_blocks, 10, "the proxy's guard to see the block")

    attempts: list = []
    before = proxy.hits("kill")
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        chat(client(stack, retries=2, attempts=attempts), "kill")  # the default: 2 retries
    took = time.monotonic() - t0
    e = err.value
    assert e.status_code == 402 and e.code == "budget_exceeded" and e.type == "budget_exceeded"
    assert not isinstance(e, openai.RateLimitError)
    assert "kill" in e.message and "blocked" in e.message
    assert e.response.headers["x-should-retry"] == "false" and "retry-after" not in e.response.headers
    assert len(attempts) == 1 and proxy.hits("kill") - before == 1, (attempts, proxy.hits("kill") - before)
    assert took < 1.0  # no backoff sleeps


def test_a_kill_switch_is_one_attempt_for_the_anthropic_client(stack):
    anthropic = pytest.importorskip("anthropic")
    cw, proxy = stack["cw"], stack["proxy"]
    cw.post("/v1/events", json=usage("kill-trip-a", "kill", 1000, 1000))
    wait_for(lambda: cw.get("/v1/decisions/kill").json()["action"] == "block", 10, "the block")
    a = anthropic.Anthropic(base_url=proxy.url, api_key="sk-master-test", max_retries=2)
    before = proxy.hits("kill")
    deadline = time.monotonic() + 10
    while True:  # the proxy's guard may still be catching up with the block
        try:
            a.messages.create(model="gpt-4o-mini", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                              extra_body={"metadata": {"tags": ["workflow:kill"]}})
        except anthropic.APIStatusError as e:
            err = e
            break
        assert time.monotonic() < deadline, "the proxy never refused the blocked workflow"
        before = proxy.hits("kill")
    assert err.status_code == 402 and isinstance(err, anthropic.PaymentRequiredError), err
    assert err.error_code == "budget_exceeded" and err.type == "billing_error", err.body
    assert err.response.headers["x-should-retry"] == "false"
    assert proxy.hits("kill") - before == 1


def test_a_throttle_is_429_with_retry_after_which_the_openai_client_honours(stack):
    cw, proxy = stack["cw"], stack["proxy"]
    # $0.015 of $1.00 passes the 1% threshold: throttle to 60 calls a minute (one a second)
    cw.post("/v1/events", json=usage("slow-trip", "slow", 100_000, 0))
    wait_for(lambda: cw.get("/v1/decisions/slow").json()["action"] == "throttle", 10, "the throttle")
    probe = client(stack, retries=0)
    seen: list = []

    def throttled():
        try:
            chat(probe, "slow", max_tokens=16)
        except openai.RateLimitError as e:
            seen.append(e)
            return True
        return False
    wait_for(throttled, 10, "a 429 from the proxy")
    e = seen[-1]
    assert e.status_code == 429 and e.code == "budget_throttled"
    assert e.response.headers["retry-after"] == "1" and e.response.headers["retry-after-ms"] == "1000"
    assert e.response.headers["x-should-retry"] == "true"

    # the openai client waits what Retry-After says, then its retry passes (one call a second)
    time.sleep(1.1)
    attempts: list = []
    c = client(stack, retries=2, attempts=attempts)
    before = proxy.hits("slow")
    chat(c, "slow", max_tokens=16)  # takes the token
    t0 = time.monotonic()
    chat(c, "slow", max_tokens=16)  # 429, Retry-After 1 s, then admitted
    took = time.monotonic() - t0
    assert len(attempts) == 3 and proxy.hits("slow") - before == 3 and took >= 0.9, (attempts, took)


def test_a_failed_call_releases_its_hold(stack):
    c = client(stack, retries=0)
    with pytest.raises(openai.InternalServerError):
        chat(c, "flaky", model="broken")
    wait_for(lambda: open_holds(stack, "flaky") == 0, 10, "the hold released")
    assert chat(c, "flaky").choices[0].message.content == "hi there"
    wait_for(lambda: open_holds(stack, "flaky") == 0 and spent_nanos(stack, "flaky") > 0, 10, "the settle")
