"""Gateway benchmarks against a real `costwarden serve` (subprocess, loopback):

1. SDK cached check latency (p50/p99, microseconds)
2. HTTP decision latency (p50/p99/p99.9/max) at a fixed rate (default 1,000 req/s, open loop: a
   separate process, one thread, raw keep-alive sockets), on the decision process's port
   (api.decisions_port) and on the API port; each quiet, while events are ingested at a paced
   rate (--ingest-rate) and while --ingest-clients post back to back (another process, bodies
   encoded before the clock starts). Latency is counted from each request's due time, so a late
   answer also delays nothing; the generator's own lateness is printed beside it.
   --loadgen-priority (root) runs the generator SCHED_FIFO, so that on a small machine its own
   wait for a CPU is not counted as the server's latency.
3. Overshoot of a $X hard budget under N concurrent gateway workers: reserve-then-settle vs
   check-then-report, side by side
4. Time from the crossing event to every SDK replica's cache seeing the block
5. Overshoot of a hard budget through the real LiteLLM proxy with the costwarden callback, 16
   openai-client threads: check-only vs reserve-then-settle (worst-case and p99 holds), side by
   side (benchmarks/proxy_overshoot.py; needs the proxy's dependencies, `pip install -e '.[test]'`)

    python benchmarks/bench_gateway.py [--workers 32] [--budget 1.00] [--rate 1000] [--replicas 3]
    python benchmarks/bench_gateway.py --decisions-only [--port both|decision|API]  # section 2 alone
    python benchmarks/bench_gateway.py --proxy-only [--proxy-threads 16]     # section 5 alone
    python benchmarks/bench_gateway.py --distributed [--replicas 3]          # section 4, distributed mode

--distributed measures section 4 in distributed mode: a crossing event POSTed to one `costwarden
api --mode distributed` replica -> Kafka -> `costwarden worker` -> the controls topic -> an SDK
guard on every replica blocks (benchmarks/bench_distributed.py, which also prints the worker's
throughput and commit-point times).
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
    def __init__(self, amount: str, budgets: str | None = None, decision_process: bool = True,
                 decisions_priority: str = "normal") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cw-bench-"))
        (self.dir / "budgets.yaml").write_text(budgets or budgets_yaml(amount))
        self.port = free_port()
        self.decisions_port = free_port()  # the decision process (api.decisions_port)
        self.decisions_priority = None
        base = [sys.executable, "-m", "costwarden.cli", "--data-dir", str(self.dir / "data"),
                "--budgets", str(self.dir / "budgets.yaml")]
        env = dict(os.environ, COSTWARDEN_API__STREAM_HEARTBEAT_S="2",
                   COSTWARDEN_API__DECISIONS_PORT=str(self.decisions_port),
                   COSTWARDEN_API__DECISIONS_PRIORITY=decisions_priority)
        self.tokens = {role: json.loads(subprocess.check_output(
            base + ["tokens", "create", "--name", f"bench-{role}", "--role", role, "--json"], env=env))["token"]
            for role in ("gateway", "admin")}
        self.proc = subprocess.Popen(base + ["serve", "--port", str(self.port), "--no-alerts"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        self.decisions_url = f"http://127.0.0.1:{self.decisions_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    if not decision_process:
                        return
                    r = httpx.get(self.decisions_url + "/healthz", timeout=1)
                    if r.status_code == 200:
                        self.decisions_priority = r.json().get("priority", "?")  # what it was allowed
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


# --- section 2: HTTP decisions at a fixed rate, alone and while events are ingested --------------
def loadgen(host: str, port: int, path: str, token: str, rate: float, seconds: float, conns: int = 32,
            warmup_s: float = 0.5) -> dict:
    """Open-loop load at a fixed rate from ONE thread over `conns` keep-alive connections (raw
    sockets, pre-encoded requests: ~20 us of client CPU a request, so the client is never the
    bottleneck). Request i is due at start + i / rate whatever happened before (open loop: a slow
    answer does not slow the schedule); it goes out on an idle connection, or waits for the first
    one to free up. Latency: from the due time (queueing in the generator included, so a late
    server cannot hide behind coordinated omission) and from the actual send ("service")."""
    import selectors
    import socket
    from collections import deque

    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
           f"User-Agent: cw-loadgen\r\n\r\n").encode()
    sel = selectors.SelectSelector()  # select(2) waits with microsecond precision (epoll: 1 ms steps)
    idle: deque = deque()
    for _ in range(conns):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        idle.append(s)
    state: dict = {}  # socket -> [due, sent, buffer]
    clock = time.perf_counter
    total = int(rate * (seconds + warmup_s))
    start = clock() + 0.05
    measure_from = start + warmup_s
    due_lat, svc_lat, lateness, bad = [], [], [], 0
    i = 0
    waiting: deque = deque()  # due times of requests that found no idle connection

    def send(s, due):
        now = clock()
        s.send(req)
        state[s] = [due, now, b""]
        sel.register(s, selectors.EVENT_READ)
        if due >= measure_from:
            lateness.append(now - due)

    done = 0
    while done < total:
        now = clock()
        while i < total and start + i / rate <= now:
            waiting.append(start + i / rate)
            i += 1
        while waiting and idle:
            send(idle.popleft(), waiting.popleft())
        if waiting or i >= total:
            timeout = None if not state else 1.0
        else:
            timeout = max(0.0, start + i / rate - clock())
        if i >= total and not state and not waiting:
            break
        for key, _ in sel.select(timeout if timeout is not None else 1.0):
            s = key.fileobj
            st = state[s]
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("the server closed a connection")
            st[2] += chunk
            head, sep, body = st[2].partition(b"\r\n\r\n")
            if not sep:
                continue
            m = head.lower().split(b"content-length:", 1)
            need = int(m[1].split(b"\r\n", 1)[0]) if len(m) > 1 else 0
            if len(body) < need:
                continue
            t = clock()
            sel.unregister(s)
            due, sent, _ = state.pop(s)
            done += 1
            if due >= measure_from:
                due_lat.append(t - due)
                svc_lat.append(t - sent)
                if not head.startswith(b"HTTP/1.1 200"):
                    bad += 1
            if waiting:
                send(s, waiting.popleft())
            else:
                idle.append(s)
    elapsed = clock() - measure_from
    for s in list(idle) + list(state):
        s.close()
    return {"n": len(due_lat), "rate": len(due_lat) / elapsed, "non_200": bad,
            "p50_ms": pct(due_lat, 50) * 1e3, "p99_ms": pct(due_lat, 99) * 1e3,
            "p999_ms": pct(due_lat, 99.9) * 1e3, "max_ms": max(due_lat) * 1e3,
            "svc_p50_ms": pct(svc_lat, 50) * 1e3, "svc_p99_ms": pct(svc_lat, 99) * 1e3,
            "late_p99_ms": pct(lateness, 99) * 1e3}


def ingest_load(url: str, token: str, clients: int, batch: int, seconds: float, rate: float = 0,
                on_start=None) -> dict:
    """`clients` threads POSTing batches of `batch` events to /v1/events: back to back (rate 0) or
    together `rate` events a second. The bodies are encoded before the clock starts (the client's
    CPU is not the server's). Returns events/s accepted and the POSTs' latency."""
    per_client = int((rate or 4000) * seconds / batch / clients) + 2
    bodies = [[json.dumps([event(f"ing-{k % 4}", 1000, 100) for _ in range(batch)]).encode()
               for _ in range(per_client)] for k in range(clients)]
    stop_at = time.monotonic() + seconds
    counts, lats = [0] * clients, []
    start = time.perf_counter()
    if on_start is not None:
        on_start()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"}, timeout=60) as c:
            n = 0
            while time.monotonic() < stop_at and n < len(bodies[k]):
                if rate:
                    delay = start + (n * clients + k) * batch / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                t0 = time.perf_counter()
                r = c.post("/v1/events", content=bodies[k][n])
                lats.append(time.perf_counter() - t0)
                r.raise_for_status()
                counts[k] += r.json()["accepted"]
                n += 1

    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.perf_counter() - start
    return {"events_per_s": sum(counts) / took, "post_p50_ms": pct(lats, 50) * 1e3 if lats else 0,
            "post_p99_ms": pct(lats, 99) * 1e3 if lats else 0}


LOADGEN_PRIORITY: list[str] = []  # ["--loadgen-priority"] when asked for


def _child(kind: str, args: dict) -> subprocess.Popen:
    """Run loadgen / ingest_load in a separate process (its own GIL and CPU time)."""
    return subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(args), *LOADGEN_PRIORITY],
                            stdout=subprocess.PIPE)


def bench_http_decisions(url: str, token: str, rate: int, seconds: float, ingest_clients: int = 0,
                         ingest_batch: int = 50, ingest_rate: float = 0, workflow: str = "rag",
                         decisions_url: str | None = None) -> dict:
    """The decision load (a separate process) at `rate` req/s for `seconds`, optionally while
    `ingest_clients` (another process) post events; both measured together."""
    target = httpx.URL(decisions_url or url)
    ing = None
    if ingest_clients:
        ing = _child("ingest", {"url": url, "token": token, "clients": ingest_clients, "batch": ingest_batch,
                                "seconds": seconds + 2.5, "rate": ingest_rate})
        assert ing.stdout.readline().strip() == b"started"  # its bodies are encoded
        time.sleep(1.0)  # ingestion under way before the decisions are measured
    lg = _child("loadgen", {"host": target.host, "port": target.port, "path": f"/v1/decisions/{workflow}",
                            "token": token, "rate": rate, "seconds": seconds})
    load0 = os.getloadavg()[0]
    out = json.loads(lg.communicate()[0])
    out["loadavg"] = (load0, os.getloadavg()[0])  # the machine's load (1 min) around the run
    if ing is not None:
        out["ingest"] = json.loads(ing.communicate()[0].strip().splitlines()[-1])
    return out


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


def print_decisions(label: str, r: dict) -> None:
    ing = r.get("ingest")
    extra = (f"; ingesting {ing['events_per_s']:.0f} events/s (POST p50 {ing['post_p50_ms']:.0f} ms)"
             if ing else "")
    print(f"  {label:42} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  p99.9 {r['p999_ms']:6.2f} ms  "
          f"max {r['max_ms']:6.1f} ms  at {r['rate']:.0f} req/s ({r['n']} requests, {r['non_200']} not 200){extra}")
    print(f"  {'':42} (from the actual send: p99 {r['svc_p99_ms']:.2f} ms; the generator sent late by "
          f"p99 {r['late_p99_ms']:.2f} ms; load average {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f})")


def run_decisions(srv: "Server", a) -> list[tuple[str, dict]]:
    """Each port (the API's, the decision process's): quiet, while events are ingested at a paced
    rate, while `ingest_clients` post back to back."""
    tok, out = srv.tokens["gateway"], []
    for port, durl in ((f"decision port ({srv.decisions_priority})", srv.decisions_url), ("API port", srv.url)):
        if a.port != "both" and not port.startswith(a.port):
            continue
        out.append((f"{port}, quiet", bench_http_decisions(srv.url, tok, a.rate, a.decision_seconds,
                                                           decisions_url=durl)))
        if a.ingest_rate:
            out.append((f"{port}, ingest {a.ingest_rate:.0f} ev/s", bench_http_decisions(
                srv.url, tok, a.rate, a.decision_seconds, a.ingest_clients, a.ingest_batch, a.ingest_rate,
                decisions_url=durl)))
        if a.ingest_clients:
            out.append((f"{port}, ingest flat out", bench_http_decisions(
                srv.url, tok, a.rate, a.decision_seconds, a.ingest_clients, a.ingest_batch, decisions_url=durl)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=32, help="concurrent gateway workers (N)")
    ap.add_argument("--budget", default="1.00", help="hard budget $X per workflow")
    ap.add_argument("--rate", type=int, default=1000, help="HTTP decisions per second (section 2)")
    ap.add_argument("--decision-seconds", type=float, default=10.0, help="how long each decision run lasts")
    ap.add_argument("--ingest-clients", type=int, default=8, help="clients posting events during section 2")
    ap.add_argument("--ingest-batch", type=int, default=50, help="events per POST /v1/events")
    ap.add_argument("--ingest-rate", type=float, default=500,
                    help="events/s of the paced ingest run (0: only the flat-out run)")
    ap.add_argument("--port", choices=("both", "decision", "API"), default="both",
                    help="where section 2 asks: the decision process (api.decisions_port), the API port, both")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--call-ms", type=float, default=50.0, help="simulated model call latency")
    ap.add_argument("--replicas", type=int, default=3, help="SDK guards watching for the block")
    ap.add_argument("--proxy-threads", type=int, default=16, help="client threads per LiteLLM proxy (section 5)")
    ap.add_argument("--proxy-only", action="store_true", help="run section 5 only")
    ap.add_argument("--distributed", action="store_true", help="section 4 in distributed mode (see above)")
    ap.add_argument("--rounds", type=int, default=60, help="crossing events of --distributed")
    ap.add_argument("--decisions-only", action="store_true", help="run section 2 only")
    ap.add_argument("--no-proxy", action="store_true", help="skip section 5")
    ap.add_argument("--decisions-priority", choices=("normal", "high", "realtime"), default="normal",
                    help="api.decisions_priority of the decision process (high, realtime: root or CAP_SYS_NICE)")
    ap.add_argument("--loadgen-priority", action="store_true",
                    help="run the decision load generator SCHED_FIFO (root): on a small machine it otherwise "
                         "waits for a CPU behind the server and the ingest clients, and its lateness is counted")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        if a.child[0] == "loadgen" and a.loadgen_priority:
            try:  # the measuring tool first (root only): its own lateness is not the server's
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            except (OSError, AttributeError) as e:
                print(f"note: the load generator runs at normal priority ({e})", file=sys.stderr)
        kw = json.loads(a.child[1])
        if a.child[0] == "ingest":
            kw["on_start"] = lambda: print("started", flush=True)
        fn = {"loadgen": loadgen, "ingest": ingest_load}[a.child[0]]
        print(json.dumps(fn(**kw)))
        return
    if a.proxy_only:
        return bench_proxy(a.proxy_threads)
    if a.distributed:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_distributed

        return bench_distributed.main(["--events", "2000", "--controls", "0", "--replicas", str(a.replicas),
                                       "--rounds", str(a.rounds)])
    if a.loadgen_priority:
        LOADGEN_PRIORITY.append("--loadgen-priority")
    srv = Server(a.budget, decision_process=a.port != "API", decisions_priority=a.decisions_priority)
    head = f"costwarden gateway benchmarks (loopback, embedded `costwarden serve`, {os.cpu_count()} cores)"
    if a.decisions_only:
        try:
            dec = run_decisions(srv, a)
        finally:
            srv.stop()
        print(head)
        print(f"  HTTP GET /v1/decisions/{{wf}}, open loop at {a.rate} req/s for {a.decision_seconds:.0f} s "
              f"(latency from each request's due time):")
        for label, r in dec:
            print_decisions(label, r)
        return
    guards = []
    try:
        guards = [Costwarden(srv.url, srv.tokens["gateway"]) for _ in range(a.replicas)]
        for g in guards:  # decisions loaded before measuring (the constructor does not wait)
            g.wait_ready(10)
        p50, p99 = bench_cached_check(guards[0])
        dec = run_decisions(srv, a)
        ctr = overshoot(srv.url, srv.tokens["gateway"], guards[0], "check", a.workers, a.seconds, a.call_ms / 1000)
        rts = overshoot(srv.url, srv.tokens["gateway"], guards[0], "reserve", a.workers, a.seconds,
                        a.call_ms / 1000)
        lat, posts = propagation(srv.url, srv.tokens["gateway"], guards)
    finally:
        for g in guards:
            g.close(timeout=1)
        srv.stop()
    x = Decimal(a.budget)
    print(head)
    print(f"  SDK cached check             p50 {p50:8.2f} us   p99 {p99:8.2f} us")
    print(f"  HTTP GET /v1/decisions/{{wf}}, open loop at {a.rate} req/s for {a.decision_seconds:.0f} s "
          f"(latency from each request's due time):")
    for label, r in dec:
        print_decisions(label, r)
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


def bench_proxy(threads: int, budget_nanos: int = 200_000, max_tokens: int = 256) -> None:
    import proxy_overshoot as px

    srv = Server("1.00", budgets=px.budgets_yaml(budget_nanos))
    try:
        results = px.run(srv.url, srv.tokens, threads, budget_nanos, max_tokens)
    finally:
        srv.stop()
    px.report(results, threads, budget_nanos, max_tokens)


if __name__ == "__main__":
    main()
