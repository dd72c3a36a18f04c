"""Re-pricing: recompute stored events' cost with the catalogue version in force at each event's
time, and switch raw events and rollups over per month partition, atomically per table.

Why not insert corrected rows into `usage_events` directly: the materialized views add every
insert to the rollups (SummingMergeTree), so a corrected row would be counted on top of the old
one, and the rollups' UInt64 counters cannot take compensating negative rows. Instead, for each
month partition P that has at least one changed event:

1. copy P of `usage_events` FINAL (one row per event_id) into a staging table of the same
   structure, then insert the corrected rows there with a newer `ingested_at` (the
   ReplacingMergeTree keeps the newest row per event_id);
2. build P of every rollup (each materialized view's target: the report, budget, run and source
   rollups) from the staging events FINAL, with the view's own SELECT (read from the store, so a
   rollup added by a later migration is rebuilt too), into staging rollup tables;
3. check that nothing was written to P meanwhile (row count and newest ingested_at unchanged),
   else give up on P without touching it (run again; `reprice` is idempotent);
4. `ALTER TABLE ... REPLACE PARTITION P FROM staging` for every rollup and then the raw table;
   each REPLACE swaps the whole partition in one step, so a query on one table sees either all
   of P's old prices or all of its new ones, never half. Staging tables are dropped.

A report spanning several months may, while `reprice` runs, see one month re-priced and the next
not yet (each month consistent). Writers to the re-priced months must be paused in distributed
mode (step 3 detects them and refuses); in embedded mode chDB's one-process rule already does.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from costwarden.errors import StoreError
from costwarden.events import Attribution, Compute, Tokens, UsageEvent
from costwarden.store import Store
from costwarden.store.queries import lit, ts
from costwarden.streams.pricing import Pricer

_VIEW_TARGET = re.compile(r"\bTO\s+`?[\w.]+?`?\.`?(\w+)`?")


def _from_raw(store: Store) -> re.Pattern:
    """`FROM <db>.usage_events` in a view's SELECT."""
    return re.compile(rf"\bFROM\s+`?{re.escape(store.database)}`?\.`?usage_events`?(?=\s|$)")


def rollup_views(store: Store) -> list[tuple[str, str]]:
    """(target table, SELECT) of every materialized view over `usage_events`, target names sorted."""
    out = []
    raw = _from_raw(store)
    for r in store.query("SELECT as_select, create_table_query FROM system.tables "
                         "WHERE database = '{db}' AND engine = 'MaterializedView'"):
        target = _VIEW_TARGET.search(r["create_table_query"])
        if target and raw.search(r["as_select"]):
            out.append((target.group(1), r["as_select"]))
    return sorted(out)


STAGE = "reprice_stage_"


@dataclass
class Change:
    events: int = 0
    old_nanos: int = 0
    new_nanos: int = 0


@dataclass
class RepriceResult:
    scanned: int = 0
    changed: int = 0
    old_nanos: int = 0  # of the changed events
    new_nanos: int = 0
    by_model_team: dict[tuple[str, str], Change] = field(default_factory=lambda: defaultdict(Change))
    partitions: list[str] = field(default_factory=list)  # switched (or, dry run, that would be)


PRICE_COLUMNS = ("event_id, occurred_at, source, provider, model, requests, service_tier, input_tokens, "
                 "cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens, "
                 "input_audio_tokens, output_audio_tokens, input_image_tokens, output_image_tokens, gpu_hours, gpu_type, tags, team, cost_nanos, unpriced, priced_model")


def event_from_row(r: dict) -> UsageEvent:
    """The canonical event a stored row was priced from: everything pricing reads is stored (a row
    with only PRICE_COLUMNS is enough)."""
    gpu = r["gpu_hours"]
    return UsageEvent(
        event_id=r["event_id"], occurred_at=r["occurred_at"], source=r["source"], provider=r["provider"],
        model=r["model"], requests=r["requests"], service_tier=r["service_tier"],
        tokens=Tokens(input=r["input_tokens"], cache_read=r["cache_read_tokens"],
                      cache_write=r["cache_write_tokens"], cache_write_1h=r["cache_write_1h_tokens"],
                      output=r["output_tokens"], reasoning=r["reasoning_tokens"],
                      input_audio=r["input_audio_tokens"], output_audio=r["output_audio_tokens"],
                      input_image=r["input_image_tokens"], output_image=r["output_image_tokens"]),
        compute=Compute(gpu_hours=gpu, gpu_type=r["gpu_type"] or None) if gpu or r["gpu_type"] else None,
        attribution=Attribution(tags=r["tags"] or {}))


def month_partitions(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    out = []
    m = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while m < end:
        nxt = (m + timedelta(days=32)).replace(day=1)
        out.append((f"{m:%Y%m}", max(m, start), min(nxt, end)))
        m = nxt
    return out


def reprice(store: Store, pricer: Pricer, start: datetime, end: datetime, *, dry_run: bool = False,
            progress: Callable[[int], None] | None = None,
            clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> RepriceResult:
    res = RepriceResult()
    for part, a, b in month_partitions(start, end):
        before = _fingerprint(store, part)
        changed = []
        t = a
        while t < b:
            u = min(t + timedelta(days=1), b)
            rows = store.query(f"SELECT {PRICE_COLUMNS} FROM {{db}}.usage_events FINAL WHERE occurred_at >= "
                               f"{ts(t)} AND occurred_at < {ts(u)} ORDER BY occurred_at, event_id")
            changed.extend(_reprice_rows(store, rows, pricer, res, clock()))
            if progress:
                progress(len(rows))
            t = u
        if not changed:
            continue
        res.partitions.append(part)
        if not dry_run:
            _switch(store, part, changed, before)
    return res


def _reprice_rows(store: Store, rows: list[dict], pricer: Pricer, res: RepriceResult,
                  now: datetime) -> list[dict]:
    """Price every row; return the full stored rows of the changed events, corrected."""
    new = {}
    for r in rows:
        res.scanned += 1
        p = pricer.price(event_from_row(r))
        if (p.cost_nanos, bool(p.unpriced), p.priced_model) == (r["cost_nanos"], bool(r["unpriced"]),
                                                                 r["priced_model"]):
            continue
        res.changed += 1
        res.old_nanos += r["cost_nanos"]
        res.new_nanos += p.cost_nanos
        c = res.by_model_team[(p.priced_model, r["team"])]
        c.events += 1
        c.old_nanos += r["cost_nanos"]
        c.new_nanos += p.cost_nanos
        new[r["event_id"]] = {"cost_nanos": p.cost_nanos, "unpriced": int(p.unpriced),
                              "priced_model": p.priced_model, "catalogue_version": p.catalogue_version}
    out = []
    ids = list(new)
    for i in range(0, len(ids), 5000):
        full = store.query("SELECT * FROM {db}.usage_events FINAL WHERE event_id IN "
                           f"({', '.join(map(lit, ids[i:i + 5000]))})")
        out.extend(f | new[f["event_id"]] | {"ingested_at": max(now, f["ingested_at"] + timedelta(milliseconds=1))}
                   for f in full)
    return out


def _fingerprint(store: Store, part: str) -> tuple:
    r = store.query(f"SELECT count() AS n, max(ingested_at) AS last FROM {{db}}.usage_events "
                    f"WHERE toYYYYMM(occurred_at) = {int(part)}")
    return (r[0]["n"], r[0]["last"]) if r else (0, None)


def _switch(store: Store, part: str, changed: list[dict], before: tuple) -> None:
    views = rollup_views(store)
    tables = {"events": "usage_events", **{t: t for t, _ in views}}
    for key, table in tables.items():
        store.command(f"DROP TABLE IF EXISTS {{db}}.{STAGE}{key}")
        store.command(f"CREATE TABLE {{db}}.{STAGE}{key} AS {{db}}.{table}")
    try:
        store.command(f"INSERT INTO {{db}}.{STAGE}events SELECT * FROM {{db}}.usage_events FINAL "
                      f"WHERE toYYYYMM(occurred_at) = {int(part)}")
        for i in range(0, len(changed), 10_000):
            store.insert(f"{STAGE}events", changed[i:i + 10_000])
        store.command(f"OPTIMIZE TABLE {{db}}.{STAGE}events PARTITION ID {lit(part)} FINAL")
        raw = _from_raw(store)
        for target, select in views:  # the view's own SELECT over the staged (deduplicated) partition
            staged = raw.sub(f"FROM {store.database}.{STAGE}events FINAL", select, count=1)
            store.command(f"INSERT INTO {{db}}.{STAGE}{target} {staged}")
        if _fingerprint(store, part) != before:
            raise StoreError(f"events were written to {part} while re-pricing it; nothing was changed, "
                             "pause ingestion for that month and run reprice again")
        for key in [*(t for t, _ in views), "events"]:
            if store.query(f"SELECT count() AS n FROM {{db}}.{STAGE}{key}")[0]["n"]:
                store.command(f"ALTER TABLE {{db}}.{tables[key]} REPLACE PARTITION ID {lit(part)} "
                              f"FROM {{db}}.{STAGE}{key}")
            else:  # nothing of P left in this rollup (no run ids that month, say)
                store.command(f"ALTER TABLE {{db}}.{tables[key]} DROP PARTITION ID {lit(part)}")
    finally:
        for key in tables:
            store.command(f"DROP TABLE IF EXISTS {{db}}.{STAGE}{key}")
