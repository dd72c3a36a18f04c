"""`costwarden connectors run` killed with SIGKILL mid-run, then restarted: no gap, no duplicate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import yaml

from costwarden.connectors import normalize
from costwarden.streams.catalogue import PriceCatalogue
from poll_helpers import utc

PATH = "/v1/organization/usage/completions"


def _buckets():
    row = {"object": "organization.usage.completions.result", "input_cached_tokens": 0, "input_cache_write_tokens": 0,
           "project_id": "proj_k", "user_id": None, "api_key_id": "key_k", "model": "gpt-4o-mini-2024-07-18",
           "batch": False, "service_tier": None}
    out = []
    for i in range(72):
        t = int((utc(2025, 6, 1) + timedelta(hours=i)).timestamp())
        out.append({"object": "bucket", "start_time": t, "end_time": t + 3600, "results": [
            {**row, "input_tokens": 1000 * (i + 1), "input_uncached_tokens": 1000 * (i + 1),
             "output_tokens": 100 * (i + 1), "num_model_requests": i + 1}]})
    return out


def _cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "costwarden.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_sigkill_after_the_first_window_then_restart_counts_every_bucket_once(provider, tmp_path):
    provider.buckets[PATH] = _buckets()
    provider.page_size = 12
    day2 = str(int(utc(2025, 6, 2).timestamp()))
    hold = threading.Event()
    provider.gate[PATH] = (lambda q: q.get("start_time") == [day2] and "page" not in q, hold)
    cfg = tmp_path / "costwarden.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "connectors": {"sources": {"openai-usage": {
        "base_url": provider.url + "/v1", "start": "2025-06-01T00:00:00Z", "settle_s": 0, "lookback_hours": 0,
        "options": {"endpoints": ["completions"]}}}}}))
    env = {**os.environ, "COSTWARDEN_CONFIG": str(cfg), "OPENAI_ADMIN_KEY": "sk-test"}
    args = ["connectors", "run", "openai-usage", "--to", "2025-06-04T00:00:00Z", "--json"]

    proc = subprocess.Popen([sys.executable, "-m", "costwarden.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not any(s.params.get("start_time") == [day2] for s in provider.seen) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # killed while fetching the second window
    proc.wait(10)
    hold.set()
    del provider.gate[PATH]

    n = len(provider.seen)
    res = _cli(args, env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["new_buckets"] == 48 and summary["cursor"].startswith("2025-06-04T00:00:00")
    assert provider.seen[n].params["start_time"] == [day2]  # resumed where the checkpoint was

    res = _cli(["report", "--period", "2025-06-01..2025-06-03", "--by", "provider", "--format", "json"], env)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)[0]
    events = normalize("openai-usage", json.dumps({"data": provider.buckets[PATH]})).events
    cat = PriceCatalogue.default()
    assert got["requests"] == sum(e.requests for e in events) == 72 * 73 // 2
    assert got["input_tokens"] == sum(e.tokens.input for e in events)
    assert got["output_tokens"] == sum(e.tokens.output for e in events)
    assert got["cost_nanos"] == sum(cat.price(e).cost_nanos for e in events)
