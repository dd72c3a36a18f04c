"""Overshoot of a hard budget through the real LiteLLM proxy: check-only vs reserve-then-settle.

One `costwarden serve` (subprocess) and three `litellm --config` proxies (mock_response model,
master key, no database), each with the costwarden callback in one mode:

    check-only         the cached decision, usage reported after the call
    reserve (worst)    holds of the worst case: the prompt + max_tokens at output prices
    reserve (p99)      holds of min(worst case, the workflow's recent p99 cost per call)

Each proxy gets `threads` client threads (the official openai client, no retries), calling until
the proxy answers 402 budget_exceeded. Every workflow has the same hard budget and the same
history (yesterday's calls, which size the p99 holds). Printed: calls admitted, spend, overshoot.

    python benchmarks/proxy_overshoot.py [--threads 16] [--budget-nanos 200000] [--max-tokens 256]
(bench_gateway.py runs it too.)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from costwarden.api.server import free_port  # noqa: E402
from costwarden.money import to_nanos  # noqa: E402

MODES = {"check-only": ("px-check", "check", "quantile"), "reserve (worst)": ("px-worst", "reserve", "worst"),
         "reserve (p99)": ("px-p99", "reserve", "quantile")}
CALL_NANOS = 13_500  # the mock usage: 10 prompt + 20 completion tokens of gpt-4o-mini, exactly $0.0000135
CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-fake, mock_response: "hi there"}
litellm_settings:
  callbacks: costwarden.integrations.litellm_proxy.callback
  num_retries: 0
general_settings:
  master_key: sk-bench
"""


def budgets_yaml(nanos: int) -> str:
    amount = str(Decimal(nanos) / Decimal(1_000_000_000))
    return "version: 1\nbudgets:" + "".join(f"""
  - id: {wf}
    scope: {{workflow: {wf}}}
    period: day
    amount: "{amount}"
    thresholds:
      - {{at: 100, actions: [{{block: true}}]}}""" for wf, _, _ in MODES.values()) + "\n"


class LiteLLMProxy:
    def __init__(self, workdir: Path, env: dict) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logpath = workdir / "proxy.log"
        self.log = open(self.logpath, "w")
        exe = Path(sys.executable).with_name("litellm")
        self.proc = subprocess.Popen([str(exe), "--config", str(workdir / "config.yaml"), "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=workdir, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
                                              **env))

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/health/liveliness", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.log.flush()
        raise SystemExit("the LiteLLM proxy did not start:\n" + self.logpath.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def drive(url: str, workflow: str, threads: int, max_tokens: int, timeout_s: float = 60) -> Counter:
    """`threads` openai clients calling until each is told budget_exceeded (402)."""
    import openai

    out: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s

    def worker():
        c = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=30)
        while time.monotonic() < deadline:
            try:
                c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=max_tokens,
                                          extra_body={"metadata": {"tags": [f"workflow:{workflow}"]}})
                key = "ok"
            except openai.APIStatusError as e:
                key = str(e.code or e.status_code)
            except openai.APIError as e:
                key = type(e).__name__
            with lock:
                out[key] += 1
            if key == "budget_exceeded":
                return
            if key != "ok":
                time.sleep(0.02)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def run(srv_url: str, tokens: dict, threads: int, budget_nanos: int, max_tokens: int) -> dict:
    """Per mode: (outcomes, spend n$, max open holds seen)."""
    gw = httpx.Client(base_url=srv_url, headers={"Authorization": f"Bearer {tokens['gateway']}"}, timeout=30)
    adm = httpx.Client(base_url=srv_url, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=30)
    at = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    for wf, _, _ in MODES.values():  # yesterday's calls: the same history for every workflow
        hist = [{"event_id": f"{wf}-hist-{i}", "occurred_at": at, "source": "bench", "provider": "openai",
                 "model": "gpt-4o-mini", "tokens": {"input": 10, "output": 20},
                 "attribution": {"tags": {"workflow": wf}}} for i in range(100)]
        gw.post("/v1/events", json=hist).raise_for_status()
    tmp = Path(tempfile.mkdtemp(prefix="cw-proxy-bench-"))
    proxies = {name: LiteLLMProxy(tmp / wf, {"COSTWARDEN_URL": srv_url, "COSTWARDEN_TOKEN": tokens["gateway"],
                                             "COSTWARDEN_LITELLM_MODE": mode, "COSTWARDEN_LITELLM_SIZING": sizing})
               for name, (wf, mode, sizing) in MODES.items()}
    results = {}
    try:
        for p in proxies.values():
            p.wait()
        time.sleep(1.0)  # the proxies' guards have their control streams
        for name, (wf, _, _) in MODES.items():
            holds_max = [0]
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    n = sum(h["workflow"] == wf for h in adm.get("/v1/reservations").json()["holds"])
                    holds_max[0] = max(holds_max[0], n)
                    time.sleep(0.005)
            w = threading.Thread(target=watch)
            w.start()
            t0 = time.monotonic()
            outcomes = drive(proxies[name].url, wf, threads, max_tokens)
            took = time.monotonic() - t0
            stop.set()
            w.join()
            spend, prev, deadline = None, -1, time.monotonic() + 30
            while time.monotonic() < deadline:  # reports are batched: wait until the spend is still
                spend = to_nanos(adm.get(f"/v1/budgets/{wf}").json()["spend_usd"])
                if spend == prev and spend >= outcomes["ok"] * CALL_NANOS:
                    break
                prev = spend
                time.sleep(1.0)
            results[name] = (outcomes, spend, holds_max[0], took)
    finally:
        for p in proxies.values():
            p.stop()
        gw.close()
        adm.close()
    return results


def report(results: dict, threads: int, budget_nanos: int, max_tokens: int) -> None:
    fits = budget_nanos // CALL_NANOS          # calls the budget pays for
    crossing = fits + 1                          # the call that passes the limit
    worst = 8 * 150 + max_tokens * 600  # the worst case of one call, n$ (8 prompt tokens)
    print(f"\n  overshoot through the LiteLLM proxy: {threads} openai-client threads, mock gpt-4o-mini "
          f"({CALL_NANOS} n$ a call, worst case ~{worst} n$ with max_tokens {max_tokens}), hard budget "
          f"{budget_nanos} n$ ({fits} calls fit; call {crossing} crosses it)")
    names = list(results)
    print("  " + " " * 30 + "".join(f"{n:>20}" for n in names))

    def row(label, f):
        print(f"  {label:30}" + "".join(f"{f(*results[n]):>20}" for n in names))
    row("calls admitted", lambda o, s, h, t: o["ok"])
    row("spend (n$)", lambda o, s, h, t: s)
    row("past the budget (n$)", lambda o, s, h, t: max(0, s - budget_nanos))
    row("calls admitted past crossing", lambda o, s, h, t: max(0, o["ok"] - crossing))
    row("max open holds seen", lambda o, s, h, t: h)
    row("402 budget_exceeded", lambda o, s, h, t: o["budget_exceeded"])
    row("429 budget_reserved", lambda o, s, h, t: o["budget_reserved"])
    row("seconds", lambda o, s, h, t: f"{t:.1f}")
    other = {n: {k: v for k, v in o.items() if k not in ("ok", "budget_exceeded", "budget_reserved")}
             for n, (o, _, _, _) in results.items()}
    if any(other.values()):
        print(f"  other answers: {json.dumps(other)}")
    chk = results.get("check-only")
    p99 = results.get("reserve (p99)")
    if chk and p99:
        over_c, over_r = max(0, chk[1] - budget_nanos), max(0, p99[1] - budget_nanos)
        ratio = "inf" if over_r == 0 else f"{over_c / over_r:.1f}"
        print(f"  check-only / reserve (p99) overshoot: {over_c} / {over_r} n$ (x{ratio}); bound for reserve: "
              f"overshoot <= sum over the holds open at the last admission of (actual - hold)+ "
              f"(<= {p99[2]} holds x {max(0, worst - CALL_NANOS)} n$; here actual = hold, so 0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--budget-nanos", type=int, default=200_000)
    ap.add_argument("--max-tokens", type=int, default=256)
    a = ap.parse_args()
    from bench_gateway import Server

    srv = Server("1.00", budgets=budgets_yaml(a.budget_nanos))
    try:
        results = run(srv.url, srv.tokens, a.threads, a.budget_nanos, a.max_tokens)
    finally:
        srv.stop()
    report(results, a.threads, a.budget_nanos, a.max_tokens)


if __name__ == "__main__":
    main()
