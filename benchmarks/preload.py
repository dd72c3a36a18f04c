"""Preload a store with N synthetic usage events, for the scale benchmarks (bench_scale.py,
bench_ui.py).

    python benchmarks/preload.py --dir DATA_DIR --rows 10000000 [--database costwarden]

Rows are made by ClickHouse itself (INSERT ... SELECT FROM numbers(), in chunks of 2M rows, so
memory stays bounded and no Python runs per row) into `usage_events`; the materialized views fill
every report and budget rollup exactly as a real ingest does. The shape follows the demo: six
teams, their workflows and api keys, OpenAI / Anthropic / Gemini models with their list prices
(10-2,000 input and 20-800 output tokens a call), in time order (as a live stream arrives, so
parts hold contiguous time) and evenly spaced up to `end`: over the 90 days before it, or, with
`per_day`, at that rate (N / per_day days of history: stores of different sizes then differ in
history only, not in how busy their recent hours are). Event ids are random (a hash of the row
number and the seed). Re-running with a larger N adds the missing rows only.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

from costwarden.store import Store, migrate, open_store

CHUNK = 2_000_000
DAYS = 90
# (team, workflow, api key, provider, model, USD per 1M input, per 1M output); the demo's mix
MIX = (
    ("support", "ticket-triage", "key_support_prod", "openai", "gpt-4o-mini", "0.15", "0.60"),
    ("search", "query-rewrite", "key_search_prod", "openai", "gpt-4.1-mini", "0.40", "1.60"),
    ("support", "reply-draft", "key_support_prod", "anthropic", "claude-haiku-4-5", "1.00", "5.00"),
    ("search", "rag-answer", "key_search_prod", "anthropic", "claude-sonnet-4", "3.00", "15.00"),
    ("growth", "email-gen", "key_growth_batch", "openai", "gpt-4.1", "2.00", "8.00"),
    ("research", "eval-runner", "key_research", "gcp.gemini", "gemini-2.5-pro", "1.25", "10.00"),
    ("sales", "lead-score", "key_sales", "openai", "gpt-4o", "2.50", "10.00"),
    ("platform", "doc-index", "key_platform", "openai", "text-embedding-3-small", "0.02", "0"),
)


def _array(i: int) -> str:
    return "[" + ", ".join(f"'{m[i]}'" for m in MIX) + "]"


def _nanos_per_token(i: int) -> str:
    """USD per 1M tokens is nano-dollars per 1,000 tokens: x1000 per token, exact (3 decimals)."""
    return "[" + ", ".join(str(int(Decimal(m[i]) * 1000)) for m in MIX) + "]"


def _insert_sql(start: int, n: int, end: datetime, seed: int, total: int, span_ms: int) -> str:
    k = len(MIX)
    step = span_ms / max(total, 1)  # ms between two events; the newest (number total-1) at `end`
    at = f"fromUnixTimestamp64Milli(toInt64({int(end.timestamp() * 1000)} - ({total - 1} - number) * {step!r}), 'UTC')"
    pick = f"(number % {k}) + 1"
    return f"""
INSERT INTO {{db}}.usage_events (event_id, occurred_at, ingested_at, source, provider, model, priced_model,
    operation, service_tier, requests, input_tokens, output_tokens, api_key_id, tags, team, workflow,
    cost_center, env, rule_id, cost_nanos, unpriced, catalogue_version)
SELECT lower(hex(sipHash128(number, {int(seed)}))), {at} AS occurred, occurred, 'preload',
       arrayElement({_array(3)}, {pick}), arrayElement({_array(4)}, {pick}) AS model, model, 'chat', 'standard', 1,
       10 + (number * 31) % 1991 AS input_tokens, 20 + (number * 17) % 781 AS output_tokens,
       arrayElement({_array(2)}, {pick}), map('org', 'acme', 'env', 'prod'),
       arrayElement({_array(0)}, {pick}) AS team, arrayElement({_array(1)}, {pick}), concat('cc-', team), 'prod',
       'tags', toInt64(input_tokens * arrayElement({_nanos_per_token(5)}, {pick})
                     + output_tokens * arrayElement({_nanos_per_token(6)}, {pick})), 0, 'preload'
FROM numbers({int(start)}, {int(n)})"""


def stored(store: Store) -> int:
    return int(store.query("SELECT count() AS c FROM {db}.usage_events")[0]["c"])


def preload(store: Store, rows: int, *, seed: int = 0, end: datetime | None = None, per_day: int | None = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Add synthetic events until the store holds `rows` (counting what is there). Returns the
    number added. `end`: the newest event time (default: the start of the current hour, UTC);
    `per_day`: events a day (default: `rows` over 90 days)."""
    end = end or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    span_ms = DAYS * 86_400_000 if not per_day else rows * 86_400_000 // per_day
    have = stored(store)
    for start in range(have, rows, CHUNK):
        store.command(_insert_sql(start, min(CHUNK, rows - start), end, seed, rows, span_ms))
        if progress:
            progress(min(start + CHUNK, rows))
    return max(0, rows - have)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="the chDB data directory")
    ap.add_argument("--database", default="costwarden")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-day", type=int, default=None, help="events a day (default: N over 90 days)")
    a = ap.parse_args()
    store = open_store(None, a.dir, a.database)
    migrate(store)
    t = time.perf_counter()
    added = preload(store, a.rows, seed=a.seed, per_day=a.per_day, progress=lambda n: print(f"  {n:,} rows", flush=True))
    took = time.perf_counter() - t
    print(f"added {added:,} rows in {took:.1f}s ({added / took if took else 0:,.0f} rows/s); {stored(store):,} stored")


if __name__ == "__main__":
    main()

