"""Gateway benchmarks against a real `costwarden serve` (subprocess, loopback):

1. SDK cached check latency (p50/p99, microseconds)
2. HTTP decision latency at a sustained request rate (p50/p99)
3. Overshoot of a $X hard budget under N concurrent gateway workers: reserve-then-settle vs
   check-then-report, side by side
4. Time from the crossing event to every SDK replica's cache seeing the block
5. Overshoot of a hard budget through the real LiteLLM proxy with the costwarden callback, 16
   openai-client threads: check-only vs reserve-then-settle (worst-case and p99 holds), side by
   side (benchmarks/proxy_overshoot.py; needs the proxy's dependencies, `pip install -e '.[test]'`)

    python benchmarks/bench_gateway.py [--workers 32] [--budget 1.00] [--rate 500] [--replicas 3]
    python benchmarks/bench_gateway.py --proxy-only [--proxy-threads 16]     # section 5 alone
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from costwarden.api.server import free_port  # noqa: E402
from costwarden.sdk import Costwarden  # noqa: E402

MODEL, PROVIDER = "gpt-4o-mini", "openai"  # $0.15 / M input, $0.60 / M output
MAX_IN, MAX_OUT = 1_000_000, 200_000  # reservation: $0.27
ACT_IN, ACT_OUT = 800_000, 150_000  # actual call: $0.21
ACTUAL = Decimal("0.21")


def budgets_yaml(amount: str) -> str:
    blocks = "".join(f"""
  - id: {wf}
    scope: {{workflow: {wf}}}
    period: day
    amount: "{amount}"
    thresholds:
      - {{at: 100, actions: [{{block: true}}]}}""" for wf in ("ctr", "rts", "lat-0", "lat-1", "lat-2", "lat-3", "lat-4"))
    return "version: 1\nbudgets:" + blocks + "\n"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def event(wf: str, n_in: int = ACT_IN, n_out: int = ACT_OUT) -> dict:
    return {"event_id": uuid.uuid4().hex, "occurred_at": datetime.now(timezone.utc).isoformat(),
            "source": "bench", "provider": PROVIDER, "model": MODEL, "tokens": {"input": n_in, "output": n_out},
            "attribution": {"tags": {"workflow": wf}}}


class Server:
    def __init__(self, amount: str, budgets: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cw-bench-"))
        (self.dir / "budgets.yaml").write_text(budgets or budgets_yaml(amount))
        self.port = free_port()
        base = [sys.executable, "-m", "costwarden.cli", "--data-dir", str(self.dir / "data"),
                "--budgets", str(self.dir / "budgets.yaml")]
        env = dict(os.environ, COSTWARDEN_API__STREAM_HEARTBEAT_S="2")
        self.tokens = {role: json.loads(subprocess.check_output(
            base + ["tokens", "create", "--name", f"bench-{role}", "--role", role, "--json"], env=env))["token"]
            for role in ("gateway", "admin")}
        self.proc = subprocess.Popen(base + ["serve", "--port", str(self.port), "--no-alerts"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def bench_cached_check(guard: Costwarden, n: int = 200_000) -> tuple[float, float]:
    samples = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        guard.check("rag")
        samples.append(clock() - t0)
    return pct(samples, 50) / 1000, pct(samples, 99) / 1000


def bench_http_decisions(url: str, token: str, rate: int, seconds: float,
                         clients: int = 4) -> tuple[float, float, float]:
    """`clients` keep-alive connections, each paced at rate/clients (open loop: late requests are
    sent at once, so queueing shows up in the latency)."""
    samples: list[float] = []
    n = int(rate * seconds / clients)
    start = time.perf_counter() + 0.2

    def client(k: int) -> None:
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            c.get("/v1/decisions/rag")
            for i in range(n):
                delay = start + (i + k / clients) * clients / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.perf_counter()
                c.get("/v1/decisions/rag")
                mine.append(time.perf_counter() - t0)
        samples.extend(mine)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    achieved = len(samples) / (time.perf_counter() - start)
    return pct(samples, 50) * 1000, pct(samples, 99) * 1000, achieved


def overshoot(url: str, token: str, guard: Costwarden, mode: str, workers: int, seconds: float,
              call_s: float) -> tuple[Decimal, int, int]:
    """Admitted spend of `workers` threads calling the model for `seconds` (each call `call_s`)."""
    wf = "rts" if mode == "reserve" else "ctr"
    spent, calls, refused = [Decimal(0)], [0], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker():
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            while time.monotonic() < deadline:
                if mode == "reserve":
                    r = c.post("/v1/reservations", json={"workflow": wf, "model": MODEL, "provider": PROVIDER,
                                                         "max_input_tokens": MAX_IN, "max_output_tokens": MAX_OUT})
                    if r.status_code == 409:
                        with lock:
                            refused[0] += 1
                        time.sleep(call_s)
                        continue
                    hold = r.json()["id"]
                else:
                    if not guard.check(wf).allowed:
                        with lock:
                            refused[0] += 1
                        time.sleep(call_s)
                        continue
                time.sleep(call_s)  # the model call
                with lock:
                    spent[0] += ACTUAL
                    calls[0] += 1
                if mode == "reserve":
                    c.post(f"/v1/reservations/{hold}/settle", json=event(wf))
                else:
                    c.post("/v1/events", json=event(wf))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return spent[0], calls[0], refused[0]


def propagation(url: str, token: str, guards: list[Costwarden], rounds: int = 5) -> tuple[list[float], list[float]]:
    """(ms from sending the crossing event to the last replica blocking, ms the POST itself took)."""
    out, posts = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for k in range(rounds):
            wf = f"lat-{k}"
            assert all(g.check(wf).allowed for g in guards)
            seen: list[float] = []
            t0 = [0.0]

            def watch(g):
                while g.check(wf).allowed:
                    time.sleep(0.0002)
                seen.append(time.perf_counter())

            ts = [threading.Thread(target=watch, args=(g,)) for g in guards]
            for t in ts:
                t.start()
            t0[0] = time.perf_counter()
            c.post("/v1/events", json=event(wf, 10_000_000, 0))  # $1.50: crosses the $1.00 block at once
            posts.append((time.perf_counter() - t0[0]) * 1000)
            for t in ts:
                t.join(10)
            out.append((max(seen) - t0[0]) * 1000)
    return out, posts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=32, help="concurrent gateway workers (N)")
    ap.add_argument("--budget", default="1.00", help="hard budget $X per workflow")
    ap.add_argument("--rate", type=int, default=200, help="HTTP decisions per second")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--call-ms", type=float, default=50.0, help="simulated model call latency")
    ap.add_argument("--replicas", type=int, default=3, help="SDK guards watching for the block")
    ap.add_argument("--proxy-threads", type=int, default=16, help="client threads per LiteLLM proxy (section 5)")
    ap.add_argument("--proxy-only", action="store_true", help="run section 5 only")
    ap.add_argument("--no-proxy", action="store_true", help="skip section 5")
    a = ap.parse_args()
    if a.proxy_only:
        return bench_proxy(a.proxy_threads)
    srv = Server(a.budget)
    guards = []
    try:
        guards = [Costwarden(srv.url, srv.tokens["gateway"]) for _ in range(a.replicas)]
        for g in guards:  # decisions loaded before measuring (the constructor does not wait)
            g.wait_ready(10)
        p50, p99 = bench_cached_check(guards[0])
        h50, h99, achieved = bench_http_decisions(srv.url, srv.tokens["gateway"], a.rate, a.seconds)
        ctr = overshoot(srv.url, srv.tokens["gateway"], guards[0], "check", a.workers, a.seconds, a.call_ms / 1000)
        rts = overshoot(srv.url, srv.tokens["gateway"], guards[0], "reserve", a.workers, a.seconds,
                        a.call_ms / 1000)
        lat, posts = propagation(srv.url, srv.tokens["gateway"], guards)
    finally:
        for g in guards:
            g.close(timeout=1)
        srv.stop()
    x = Decimal(a.budget)
    print(f"costwarden gateway benchmarks (loopback, embedded `costwarden serve`, {os.cpu_count()} cores)")
    print(f"  SDK cached check             p50 {p50:8.2f} us   p99 {p99:8.2f} us")
    print(f"  HTTP GET /v1/decisions/{{wf}}  p50 {h50:8.2f} ms   p99 {h99:8.2f} ms   at {achieved:.0f} req/s "
          f"(target {a.rate})")
    print(f"\n  overshoot: {a.workers} concurrent workers x {a.seconds:.0f}s, ${x} hard budget, "
          f"call {a.call_ms:.0f} ms, actual ${ACTUAL}/call (reservation max $0.27)")
    print(f"  {'':24}{'check-then-report':>20}{'reserve-then-settle':>22}")
    print(f"  {'calls admitted':24}{ctr[1]:>20}{rts[1]:>22}")
    print(f"  {'spend admitted':24}{'$' + str(ctr[0]):>20}{'$' + str(rts[0]):>22}")
    print(f"  {'past the budget':24}{'$' + str(max(ctr[0] - x, Decimal(0))):>20}"
          f"{'$' + str(max(rts[0] - x, Decimal(0))):>22}")
    print(f"  {'x budget':24}{str((ctr[0] / x).quantize(Decimal('0.01'))):>20}"
          f"{str((rts[0] / x).quantize(Decimal('0.01'))):>22}")
    print(f"\n  crossing event -> all {a.replicas} SDK caches block: "
          f"median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms ({len(lat)} rounds)")
    print(f"    of which the crossing event's POST /v1/events (parse, price, evaluate, chDB flush): median "
          f"{statistics.median(posts):.1f} ms; controls are published after the flush")
    if not a.no_proxy:
        bench_proxy(a.proxy_threads)


def bench_proxy(threads: int, budget_micros: int = 200, max_tokens: int = 256) -> None:
    import proxy_overshoot as px

    srv = Server("1.00", budgets=px.budgets_yaml(budget_micros))
    try:
        results = px.run(srv.url, srv.tokens, threads, budget_micros, max_tokens)
    finally:
        srv.stop()
    px.report(results, threads, budget_micros, max_tokens)


if __name__ == "__main__":
    main()
