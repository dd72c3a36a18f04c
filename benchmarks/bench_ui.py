"""The web console's server time per page with a large store: each page <= 200 ms at 10M events?

    python benchmarks/bench_ui.py [--rows 10000000] [--runs 1000000] [--dir DIR] [--requests 20]

Preloads DIR (default: a new temporary directory; a store already holding the rows is reused)
with --rows synthetic events over the last 90 days: --rows minus --runs of them from
benchmarks/preload.py (made by ClickHouse, every rollup filled by the views), the other --runs
agent calls in runs of 20 (a `run_id` tag each, priced by their source too, as LiteLLM reports
them) with the provider's daily cost report for their project 3 % below ours, so the Spend page
counts 50,000 runs and the Sources page reconciles every day. Writes budgets over the preloaded
teams and workflows (an org budget, one per team, one per workflow: 15, nested), then runs the
API as `costwarden serve` does
(the embedded runtime + uvicorn on loopback, in this process) and asks every console page
--requests times with a finance token (so the Sources page computes the reconciliation too),
after two warm-up requests. Server time is the page's `Server-Timing: app;dur=` header (request
in to response out, measured by the route); the client time around each request on loopback is
printed beside it. Prints median and p95 per page, and which pages are over the 200 ms goal.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DB = "ui"
GOAL_MS = 200.0



def pages(now: datetime) -> list[str]:
    """Every page; Spend and Sources also for last month and this quarter (periods full of the
    preloaded history, whatever day of the month it is)."""
    last = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    return ["/ui/budgets", "/ui/spend", f"/ui/spend?period={last}", f"/ui/spend?period={quarter}",
            f"/ui/spend?period={last}&by=model", f"/ui/spend?period={last}&by=team&team=research",
            f"/ui/spend?period={last}&by=team&team=research&workflow=eval-runner", f"/ui/spend.csv?period={last}",
            "/ui/controls", "/ui/alerts", "/ui/sources", f"/ui/sources?period={last}", f"/ui/sources?period={quarter}"]


def budgets_yaml() -> str:
    """An org budget, a month budget per preloaded team and a day budget per workflow (nested)."""
    from preload import MIX

    lines = ["version: 1", "budgets:", "  - {id: acme, name: ACME all AI, scope: {org: acme}, period: month, "
             "amount: \"2000000.00\", thresholds: [{at: 80}, {at: 100, basis: forecast}]}"]
    for team in dict.fromkeys(m[0] for m in MIX):
        lines.append(f"  - {{id: team-{team}, parent: acme, scope: {{org: acme, team: {team}}}, period: month, "
                     f"amount: \"300000.00\", thresholds: [{{at: 50}}, {{at: 90}}]}}")
    for team, wf, *_ in MIX:
        lines.append(f"  - {{id: {wf}, parent: team-{team}, scope: {{team: {team}, workflow: {wf}}}, period: day, "
                     f"amount: \"9000.00\", thresholds: [{{at: 90, actions: [{{throttle: {{rate_per_min: \"60\"}}}}]}}]"
                     "}")
    return "\n".join(lines) + "\n"


RUN_CALLS = 20


def add_runs(store, n: int, end: datetime) -> int:
    """Add agent calls in runs (source `bench-runs`) until the store holds `n`; and the provider's
    daily cost lines for their project. Returns the number added."""
    have = int(store.query("SELECT count() AS c FROM {db}.usage_events WHERE source = 'bench-runs'")[0]["c"])
    if have >= n:
        return 0
    end_ms, span = int(end.timestamp() * 1000), 90 * 86_400_000
    at = (f"fromUnixTimestamp64Milli(toInt64({end_ms} - sipHash64(intDiv(number, {RUN_CALLS})) % {span} "
          f"+ (number % {RUN_CALLS}) * 1000), 'UTC')")  # runs scattered over the 90 days, a call a second
    store.command(f"""
INSERT INTO {{db}}.usage_events (event_id, occurred_at, ingested_at, source, provider, model, priced_model,
    operation, service_tier, requests, input_tokens, output_tokens, api_key_id, project_id, tags, team, workflow,
    cost_center, env, rule_id, cost_nanos, unpriced, catalogue_version, provider_cost, provider_cost_currency)
SELECT concat('bench-run-', toString(number)), least({at}, fromUnixTimestamp64Milli(toInt64({end_ms}), 'UTC')) AS o,
       o, 'bench-runs', 'openai', 'gpt-4o-mini', 'gpt-4o-mini', 'chat', 'standard', 1,
       500 + (number * 37) % 4000 AS input_tokens, 50 + (number * 13) % 600 AS output_tokens, 'key_research',
       'proj-agents', map('org', 'acme', 'run_id', concat('run-', toString(intDiv(number, {RUN_CALLS})))),
       'research', 'eval-runner', 'cc-research', 'prod', 'tags',
       toInt64(input_tokens * 150 + output_tokens * 600) AS cost, 0, 'preload',
       toDecimal128(cost, 12) / 1000000000, 'USD'
FROM numbers({have}, {n - have})""")
    store.command("TRUNCATE TABLE {db}.provider_cost_lines")
    store.command("""
INSERT INTO {db}.provider_cost_lines (source, day, provider, project_id, workspace_id, api_key_id, line_item, model,
    service_tier, amount, currency, quantity, polled_at)
SELECT 'openai-costs', toDate(occurred_at) AS d, 'openai', 'proj-agents', '', '', 'completions', '', '',
       toDecimal128(intDiv(sum(cost_nanos) * 97, 100), 12) / 1000000000, 'USD', NULL, now64(3)
FROM {db}.usage_events WHERE source = 'bench-runs' GROUP BY d""")
    return n - have


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=1_000_000, help="of --rows: agent calls in runs of 20")
    ap.add_argument("--dir", type=Path, default=None, help="data directory (kept; default: a new temporary one)")
    ap.add_argument("--requests", type=int, default=20)
    a = ap.parse_args()

    import logging

    import httpx

    from preload import preload, stored

    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token
    from costwarden.config import load_settings
    from costwarden.store import migrate, open_store

    logging.getLogger("costwarden").setLevel(logging.ERROR)
    data = a.dir or Path(tempfile.mkdtemp(prefix="cw-ui-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    store = open_store(None, str(data), DB)
    migrate(store)
    t = time.perf_counter()
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    added = preload(store, a.rows - a.runs, end=end, progress=lambda n: print(f"  preloaded {n:,} rows", flush=True))
    added += add_runs(store, a.runs, end)
    print(f"{data}: {stored(store):,} events stored ({added:,} added in {time.perf_counter() - t:.0f} s)")

    budgets = data / "budgets-ui.yaml"
    budgets.write_text(budgets_yaml())
    s = load_settings()
    s.data_dir, s.store.database = data, DB
    s.budgets.budgets_file = budgets
    s.alerts.channels = {}
    t = time.perf_counter()
    rt = EmbeddedRuntime.open(s, deliver=False)
    print(f"embedded runtime open in {time.perf_counter() - t:.1f} s")
    token = rt.thread.call(lambda: create_token(rt.store, "bench-finance", "finance"))
    srv = ApiServer(create_app(rt)).start()
    rows = []
    try:
        with httpx.Client(base_url=srv.url, cookies={"cw_console": token}, timeout=60) as c:
            for page in pages(datetime.now(timezone.utc)):
                server, client = [], []
                for i in range(a.requests + 2):
                    t0 = time.perf_counter()
                    r = c.get(page)
                    took = (time.perf_counter() - t0) * 1000
                    assert r.status_code == 200, (page, r.status_code, r.text[:300])
                    if i >= 2:  # two warm-up requests
                        client.append(took)
                        server.append(float(r.headers["server-timing"].split("dur=")[1]))
                rows.append((page, statistics.median(server), pct(server, 0.95), statistics.median(client),
                             pct(client, 0.95), len(r.content)))
    finally:
        srv.stop()
        rt.close()
    now = datetime.now(timezone.utc)
    print(f"\n{a.rows:,} events, {a.requests} requests per page, {now:%Y-%m-%d %H:%M} UTC")
    print(f"{'page':<66} {'server p50':>10} {'p95':>8} {'client p50':>11} {'p95':>8} {'bytes':>8}")
    for page, sm, sp, cm, cp, size in rows:
        flag = "  OVER 200 ms" if sp > GOAL_MS else ""
        print(f"{page:<66} {sm:8.1f}ms {sp:6.1f}ms {cm:9.1f}ms {cp:6.1f}ms {size:8,}{flag}")
    over = [p for p, _, sp, *_ in rows if sp > GOAL_MS]
    print("every page within 200 ms (p95, server)" if not over else f"over 200 ms (p95): {', '.join(over)}")


if __name__ == "__main__":
    main()
