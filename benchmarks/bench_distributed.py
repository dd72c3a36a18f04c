"""Distributed runtime figures, side by side in one run (the machine is shared and noisy).

    python benchmarks/bench_distributed.py [--events 20000] [--controls 60]

Servers: a real Kafka broker (KafkaBroker from Kafka's jars, or $KAFKA_BOOTSTRAP_SERVERS) and
ClickHouse through clickhouse-connect: the HTTP TEST ADAPTER over chDB (a real ClickHouse server
would be faster), or $COSTWARDEN_BENCH_CLICKHOUSE_URL. One `costwarden worker` process.

Prints:
  1. end-to-end throughput of one worker: events produced to Kafka -> every event visible in the
     minute rollup in ClickHouse (events/s, from the first produce to the last rollup row);
  2. the raw aiokafka consume rate of the same topic in the same run, and the ratio 1 / 2;
  3. p50 / p99 time from an event produced to the control change it causes being readable on
     the controls topic (each event crosses a one-nano-dollar block budget of its own workflow);
  4. p50 / p99 time from a crossing event POSTed to one `costwarden api --mode distributed`
     replica to the block being seen by an SDK guard on EVERY replica (--replicas processes, each
     guard following its replica's control stream): the gateway's "block visible everywhere".
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "distributed"))
import dist_harness as h  # noqa: E402

from costwarden.distributed.producer import produce  # noqa: E402
from costwarden.store.clickhouse_store import ClickHouseStore  # noqa: E402


@contextlib.contextmanager
def servers(tmp: Path):
    from costwarden.testing.clickhouse_http import serve_clickhouse_http
    from costwarden.testing.kafka_broker import kafka_broker_session

    with kafka_broker_session() as broker:
        url = os.environ.get("COSTWARDEN_BENCH_CLICKHOUSE_URL")
        if url:
            yield broker.bootstrap, url
        else:
            with serve_clickhouse_http(tmp / "ch") as url:
                yield broker.bootstrap, url


def budgets_file(tmp: Path, n: int) -> Path:
    data = yaml.safe_load(Path(h.BUDGETS).read_text())
    for i in range(n):
        data["budgets"].append({"id": f"lat-{i}", "scope": {"workflow": f"lat-{i}"}, "period": "month",
                                "amount": "0.000001", "thresholds": [{"at": 100, "actions": [{"block": True}]}]})
    p = tmp / "budgets.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


async def raw_consume_rate(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                         enable_auto_commit=False)
    await c.start()
    got = 0
    try:
        t = time.perf_counter()
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10000)
            for recs in batch.values():
                got += len(recs)
                for r in recs:
                    json.loads(r.value)  # decode, as the worker does
        return got / (time.perf_counter() - t)
    finally:
        await c.stop()


async def control_latency(bootstrap: str, env: dict, n: int) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    seen: dict[str, float] = {}
    consumer = AIOKafkaConsumer(h.topic(env, "controls"), bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", isolation_level="read_committed")
    await consumer.start()
    await asyncio.sleep(1)

    async def listen():
        async for r in consumer:
            seen.setdefault(json.loads(r.value)["workflow"], time.perf_counter())

    task = asyncio.create_task(listen())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        for i in range(n):
            wf = f"lat-{i}"
            ev = {"event_id": f"lat-{uuid.uuid4().hex}", "occurred_at": datetime.now(timezone.utc).isoformat(),
                  "source": "gateway", "provider": "openai", "model": "gpt-4o-mini", "requests": 1,
                  "tokens": {"input": 1000, "output": 100},
                  "attribution": {"api_key_id": "bench", "tags": {"workflow": wf, "team": "bench", "env": "prod"}}}
            sent[wf] = time.perf_counter()
            await producer.send_and_wait(h.topic(env, "raw"), json.dumps(ev).encode(), key=ev["event_id"].encode())
            await asyncio.sleep(0.25)
        deadline = time.perf_counter() + 30
        while len(seen) < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await producer.stop()
        await consumer.stop()
    return sorted(seen[wf] - sent[wf] for wf in sent if wf in seen)


class Replicas:
    """`costwarden api --mode distributed` processes beside the worker, each with an SDK guard."""

    def __init__(self, env: dict, tmp: Path, n: int, token: str) -> None:
        from costwarden.api.server import free_port
        from costwarden.sdk import Costwarden

        self.procs, self.urls = [], []
        for i in range(n):
            port = free_port()
            renv = dict(env, COSTWARDEN_DATA_DIR=str(tmp / f"api-{i}"), COSTWARDEN_API__STREAM_HEARTBEAT_S="1")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "costwarden.cli", "api", "--mode", "distributed", "--port", str(port)],
                env=renv, stdout=subprocess.DEVNULL, stderr=open(tmp / f"api-{i}.log", "wb")))
            self.urls.append(f"http://127.0.0.1:{port}")
        for u in self.urls:
            h.wait_for(lambda: _ready(u), 90, interval=0.2, what=f"API replica {u}")
        self.guards = [Costwarden(u, token) for u in self.urls]

    def stop(self) -> None:
        for g in self.guards:
            g.close()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def replica_latency(reps: Replicas, token: str, workflows: list[str]) -> list[float]:
    """Seconds from POSTing each crossing event to replica 0 until every replica's guard blocks."""
    import threading

    import httpx

    out = []
    with httpx.Client(base_url=reps.urls[0], headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        for wf in workflows:
            assert all(g.check(wf).allowed for g in reps.guards)
            seen: list[float] = []

            def watch(g, deadline):
                while g.check(wf).allowed and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                seen.append(time.perf_counter())
            t0 = time.perf_counter()
            ts = [threading.Thread(target=watch, args=(g, t0 + 30)) for g in reps.guards]
            for t in ts:
                t.start()
            ev = {"event_id": uuid.uuid4().hex, "occurred_at": datetime.now(timezone.utc).isoformat(),
                  "source": "gateway", "provider": "openai", "model": "gpt-4o-mini",
                  "tokens": {"input": 1000, "output": 100}, "attribution": {"tags": {"workflow": wf, "team": "bench"}}}
            r = c.post("/v1/events", json=ev)
            r.raise_for_status()
            for t in ts:
                t.join()
            out.append(max(seen) - t0)
            time.sleep(0.25)
    return sorted(out)


def stage_seconds(port: int) -> dict[str, tuple[float, float]]:
    """The worker's commit-point histogram: stage -> (seconds, commit points)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, i in (("_sum{", 0), ("_count{", 1)):
            if line.startswith("costwarden_clickhouse_write_seconds" + suffix):
                stage = line.split('stage="')[1].split('"')[0]
                out.setdefault(stage, [0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--controls", type=int, default=60, help="events for the control latency figure")
    ap.add_argument("--replicas", type=int, default=3, help="API replicas for the block-visibility figure")
    ap.add_argument("--rounds", type=int, default=60, help="crossing events for the block-visibility figure")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    lines = h.demo_lines(args.events)
    truth = h.truth(lines)
    with servers(tmp) as (bootstrap, url):
        env = h.worker_env(bootstrap, url, h.unique("bench"), tmp / "w", h.unique("bench"),
                           COSTWARDEN_BUDGETS__BUDGETS_FILE=budgets_file(tmp, args.controls + args.rounds))
        worker = h.Worker(env, tmp / "worker.log").start()
        try:
            port = worker.metrics_port()
            time.sleep(8)  # joined the group and idle
            store = ClickHouseStore.from_url(url, env["COSTWARDEN_STORE__DATABASE"])
            idle = stage_seconds(port)
            t0 = time.perf_counter()
            produce(bootstrap, h.topic(env, "raw"), lines)
            t_produced = time.perf_counter() - t0

            def visible():
                r = store.query("SELECT sum(events) AS n FROM {db}.usage_rollup_minute")[0]["n"] or 0
                return int(r) >= truth["events"]
            h.wait_for(visible, 900, interval=0.25, what="rollups")
            e2e = time.perf_counter() - t0
            busy = stage_seconds(port)
            raw_rate = asyncio.run(raw_consume_rate(bootstrap, h.topic(env, "raw"), len(lines)))
            before = stage_seconds(port)
            lat = asyncio.run(control_latency(bootstrap, env, args.controls)) if args.controls else []
            after = stage_seconds(port)
            rep_lat: list[float] = []
            if args.replicas and args.rounds:
                from costwarden.api.auth import create_token

                token = create_token(store, "bench-gateway", "gateway")
                reps = Replicas(env, tmp, args.replicas, token)
                try:
                    rep_lat = replica_latency(reps, token, [f"lat-{args.controls + i}" for i in range(args.rounds)])
                finally:
                    reps.stop()
        finally:
            worker.stop()
    rate = len(lines) / e2e
    print(f"events produced                {len(lines):>10}  ({truth['events']} distinct valid, {t_produced:.1f}s to produce)")
    print(f"one worker end to end          {rate:>10.0f} events/s  (produced -> minute rollup complete, {e2e:.1f}s)")
    print(f"raw aiokafka consume + decode  {raw_rate:>10.0f} events/s")
    print(f"ratio worker / raw consume     {rate / raw_rate:>10.3f}")
    for stage, (sec, n) in sorted(busy.items()):
        s0, n0 = idle.get(stage, (0.0, 0.0))
        if n > n0:
            print(f"  {stage + ' commit points':<28} {sec - s0:>6.1f} s of the {e2e:.1f} s ({n - n0:.0f} commit points, "
                  f"{(sec - s0) / (n - n0) * 1000:.0f} ms each)")
    if lat:
        print(f"event -> control on topic      p50 {pct(lat, 50) * 1000:.0f} ms   p99 {pct(lat, 99) * 1000:.0f} ms"
              f"   ({len(lat)} of {args.controls} controls seen)")
        for stage, (sec, n) in sorted(after.items()):
            s0, n0 = before.get(stage, (0.0, 0.0))
            if n > n0:
                print(f"  {stage + ' commit point':<28} {(sec - s0) / (n - n0) * 1000:>6.0f} ms mean over "
                      f"{n - n0:.0f} commits during the latency run")
    elif args.controls:
        print(f"event -> control on topic      no control seen (see {tmp / 'worker.log'})")
    if rep_lat:
        print(f"event -> block on all {args.replicas} API replicas (SDK guards)   p50 {pct(rep_lat, 50) * 1000:.0f} ms"
              f"   p99 {pct(rep_lat, 99) * 1000:.0f} ms   max {rep_lat[-1] * 1000:.0f} ms   ({len(rep_lat)} crossings)")


if __name__ == "__main__":
    main()
