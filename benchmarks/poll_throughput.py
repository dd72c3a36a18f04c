"""Poller throughput: buckets/s for a first poll, an idempotent re-poll and a revision pass.

A local HTTP server plays the OpenAI Usage API (hourly buckets, `groups` results each, 24 buckets
per page); the real poller, store comparison and embedded pipeline (chDB in a temp dir) run.
    python benchmarks/poll_throughput.py [days] [groups]
"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from costwarden.config import PollerSettings, load_settings
from costwarden.connectors.poll import SOURCES, Poller
from costwarden.embedded import EmbeddedPipeline

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def buckets(days: int, groups: int, grow: int = 0) -> list[dict]:
    out = []
    for h in range(days * 24):
        t = int((START + timedelta(hours=h)).timestamp())
        rows = [{"object": "organization.usage.completions.result", "input_tokens": 1000 + g + grow,
                 "input_cached_tokens": 100, "output_tokens": 300 + g, "num_model_requests": 5 + g,
                 "project_id": f"proj_{g % 7}", "user_id": None, "api_key_id": f"key_{g}",
                 "model": "gpt-4o-mini" if g % 2 else "gpt-4.1", "batch": False, "service_tier": None}
                for g in range(groups)]
        out.append({"object": "bucket", "start_time": t, "end_time": t + 3600, "results": rows})
    return out


def serve(state: dict) -> str:
    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            q = parse_qs(urlsplit(self.path).query)
            lo, hi = int(q["start_time"][0]), int(q["end_time"][0])
            rows = [b for b in state["buckets"] if lo <= b["start_time"] < hi]
            off = int(q.get("page", ["0"])[0])
            more = off + 24 < len(rows)
            body = json.dumps({"object": "page", "data": rows[off:off + 24], "has_more": more,
                               "next_page": str(off + 24) if more else None}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 14
    groups = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    state = {"buckets": buckets(days, groups)}
    url = serve(state)
    s = load_settings()
    s.data_dir = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    p = EmbeddedPipeline(s, deliver=False)
    now = START + timedelta(days=days, hours=2)
    ps = PollerSettings(base_url=url, api_key="k", start=START.isoformat(), settle_s=3600,
                        lookback_hours=days * 24, options={"endpoints": ["completions"]})
    poller = Poller(SOURCES["openai-usage"], p, ps, clock=lambda: now)
    n = days * 24 * groups
    print(f"{days} days x 24 hourly buckets x {groups} groups = {n} bucket results")
    print(f"{'pass':<28}{'seconds':>10}{'results/s':>12}{'new':>8}{'revised':>9}{'unchanged':>11}")
    for label, grow in (("first poll", None), ("re-poll, nothing changed", None), ("re-poll, every bucket grew", 10)):
        if grow:
            state["buckets"] = buckets(days, groups, grow)
        t0 = time.perf_counter()
        r = poller.run_once(start=START)
        dt = time.perf_counter() - t0
        print(f"{label:<28}{dt:>10.2f}{n / dt:>12,.0f}{r.new_buckets:>8}{r.revised_buckets:>9}{r.unchanged_buckets:>11}")
    p.close(flush_alerts=False)


if __name__ == "__main__":
    main()
