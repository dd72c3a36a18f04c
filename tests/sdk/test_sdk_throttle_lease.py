"""A throttle holds across replicas: guards lease tokens of one bucket per workflow from the API
(POST /v1/throttle/{workflow}/lease; costwarden/api/throttle.py, costwarden/sdk/client.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.api.throttle import LEASE_VALID_S, ThrottleBook
from costwarden.sdk import Costwarden
from sdk_helpers import usage

RATE_S = 10.0      # runaway's throttle: 600/min (sdk_helpers.BUDGETS, at 50% of $1.00)
CAPACITY = 10.0    # one second of the rate
WANT = 2           # a guard's lease: 0.2 s of the rate


def throttle_runaway(api) -> None:
    with api.client() as c:
        r = c.post("/v1/events", json=usage("half", "runaway", input_tokens=4_000_000))  # $0.60 of $1.00
        assert r.status_code == 200, r.text
        assert c.get("/v1/decisions/runaway").json()["action"] == "throttle"


def test_three_guards_in_separate_processes_together_admit_the_configured_rate(sdk_api):
    """3 gateway replicas (processes), 4 threads each calling check() every ms for 10 s against a
    600/min throttle: together within rate x time + the bucket + one lease per guard, not 3x."""
    api = sdk_api()
    throttle_runaway(api)
    seconds, guards = 10.0, 3
    start = time.time() + 4.0  # every process imported and loaded its decisions by then
    script = Path(__file__).with_name("throttle_guard.py")
    procs = [subprocess.Popen([sys.executable, str(script), api.url, api.tokens["gateway"], "runaway", str(start),
                               str(seconds), "4"], stdout=subprocess.PIPE, text=True) for _ in range(guards)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=90)
        assert p.returncode == 0
        outs.append(json.loads(out.strip().splitlines()[-1]))
    window = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    total = sum(o["admitted"] for o in outs)
    bound = CAPACITY + RATE_S * window + guards * WANT
    print(f"\n3 guards x {seconds:.0f} s at 600/min: admitted {[o['admitted'] for o in outs]} = {total} "
          f"(bound {bound:.0f}; 3 local buckets would admit ~{guards * (CAPACITY + RATE_S * window):.0f}); "
          f"checks {sum(o['checks'] for o in outs)}, leases {[o['stats']['leases'] for o in outs]}")
    assert total <= bound
    assert total >= 0.8 * RATE_S * seconds  # and the rate is used, not starved
    assert all(o["admitted"] > 0.15 * RATE_S * seconds for o in outs)  # every replica gets a share
    assert all(o["stats"]["lease_fallbacks"] == 0 for o in outs)
    # leases, not a round trip per check: a few per second per guard
    assert all(o["stats"]["leases"] < 0.1 * o["checks"] for o in outs)


def test_the_api_unreachable_each_guard_falls_back_to_its_share_of_the_rate(sdk_api):
    """Three guards leased (the API counts 3); the API goes away: each guard admits at rate / 3
    from a bucket of its own, so together they stay within the rate while the decisions are fresh."""
    api = sdk_api()
    throttle_runaway(api)
    gs = [Costwarden(api.url, api.tokens["gateway"], stale_after_s=60) for _ in range(3)]
    try:
        assert all(g.wait_ready(10) for g in gs)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:  # traffic: every guard leases, and hears of the others
            for g in gs:
                g.check("runaway")
            time.sleep(0.002)
        assert all(g._leases["runaway"].guards == 3 for g in gs)
        api.server.stop()
        api.server = None
        time.sleep(LEASE_VALID_S)  # what they leased is no longer valid
        t0 = time.monotonic()
        admitted = 0
        while time.monotonic() - t0 < 3.0:
            admitted += sum(g.check("runaway").allowed for g in gs)
            time.sleep(0.002)
        took = time.monotonic() - t0
        share = RATE_S / 3
        assert admitted <= 3 * (max(1.0, share) + share * took) + 1
        assert admitted >= 0.7 * RATE_S * took
        assert all(g.stats["lease_fallbacks"] > 0 for g in gs)
        d = gs[0].check("runaway")
        assert d.action == "throttle" and d.source == "cache"
    finally:
        for g in gs:
            g.close(timeout=0.5)


def test_a_refused_throttle_says_when_to_retry_and_asks_the_api_once_per_token(sdk_api):
    api = sdk_api()
    throttle_runaway(api)
    g = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert g.wait_ready(10)
        results = [g.check("runaway") for _ in range(200)]
        admitted = sum(d.allowed for d in results)
        assert 1 <= admitted <= CAPACITY + 1  # the bucket's burst, then refused
        refused = [d for d in results if not d.allowed]
        assert refused and all(d.action == "throttle" and 0 < d.retry_after_s <= 0.2 for d in refused)
        assert g.stats["leases"] <= CAPACITY / WANT + 2  # refusals are answered from memory
    finally:
        g.close(timeout=0.5)


def test_the_bucket_grants_at_the_rate_and_counts_guards():
    now = [0.0]
    book = ThrottleBook(clock=lambda: now[0])
    rate = Decimal(600)  # 10/s: capacity 10
    got = [book.lease("w", rate, 4, f"g{i % 3}")["granted"] for i in range(5)]
    assert got == [4, 4, 2, 0, 0]
    refused = book.lease("w", rate, 1, "g0")
    assert refused["granted"] == 0 and refused["retry_after_s"] == pytest.approx(0.1)
    assert refused["guards"] == 3 and refused["valid_s"] == LEASE_VALID_S
    now[0] = 0.35  # 3.5 tokens later
    assert book.lease("w", rate, 10, "g1")["granted"] == 3
    now[0] = 100.0  # refilled to the capacity, never past it
    assert book.lease("w", rate, 1000, "g1")["granted"] == 10
    assert book.lease("w", rate, 1, "g1")["guards"] == 1  # the others have not leased for 10 s
    assert book.lease("w", Decimal(60), 5, "g1")["granted"] == 1  # a new rate: a new bucket (1 s of it)
    book.drop("w")
    assert book.lease("w", Decimal(60), 5, "g1")["granted"] == 1


def test_a_hung_api_stalls_only_the_one_caller_that_asks_it_again(sdk_api):
    """The API accepts but never answers (a lease request times out): while one caller waits for
    it, the others take the guard's own bucket at once."""
    from costwarden.sdk.client import _NoLease

    api = sdk_api()
    throttle_runaway(api)
    g = Costwarden(api.url, api.tokens["gateway"], stale_after_s=60)
    try:
        assert g.wait_ready(10)

        def hung(workflow: str, want: int) -> dict:
            time.sleep(1.0)
            raise _NoLease(False, "ReadTimeout")
        g._ask_lease = hung
        g.check("runaway")  # asks, hangs 1 s, falls back to its own bucket
        time.sleep(1.05)    # the fallback's second is over: the next caller asks again
        lat: list[float] = []

        def call() -> None:
            t0 = time.perf_counter()
            g.check("runaway")
            lat.append(time.perf_counter() - t0)
        ts = []
        for _ in range(8):
            ts.append(threading.Thread(target=call))
            ts[-1].start()
            time.sleep(0.01)
        for t in ts:
            t.join()
        lat.sort()
        assert lat[-1] >= 0.9 and lat[-2] < 0.1, lat  # one caller waited for the API, no other
        assert g.stats["lease_fallbacks"] == 2
    finally:
        g.close(timeout=0.5)
