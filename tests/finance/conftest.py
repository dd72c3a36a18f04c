"""Finance fixtures: one small stored dataset (demo traffic across a month boundary plus workflow
runs), and an independent ground truth computed in Python without the store."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from costwarden import demo as gen
from costwarden.config import load_settings

START = datetime(2026, 9, 30, tzinfo=timezone.utc)
END = datetime(2026, 10, 2, 6, tzinfo=timezone.utc)


def run_events() -> list[bytes]:
    """A batch workflow with a run_id tag: 3 runs of 2 gpt-4o calls of exactly $1.00 + $0.50."""
    out = []
    for run in range(3):
        for step, tokens in enumerate((400_000, 200_000)):
            out.append(json.dumps({
                "event_id": f"run-{run}-{step}", "occurred_at": f"2026-10-01T0{run}:1{step}:00Z",
                "source": "gateway", "provider": "openai", "model": "gpt-4o", "requests": 1,
                "tokens": {"input": tokens},
                "attribution": {"tags": {"team": "data", "workflow": "nightly-etl", "run_id": f"r{run}"}}}).encode())
    return out


def truth(payloads, rules_file: str | None = None, catalogue=None):
    """Per-dimension cost and requests of the unique valid events, priced and attributed in Python."""
    from costwarden.errors import InvalidEventError
    from costwarden.events import parse_event
    from costwarden.streams.attribution import Attributor, default_rules, load_rules
    from costwarden.streams.catalogue import PriceCatalogue

    cat = (catalogue or PriceCatalogue.default()).with_unpriced_policy(load_settings().pricing.unpriced_policy())
    attr = Attributor(load_rules(rules_file) if rules_file else default_rules())
    seen, rows = set(), []
    for p in payloads:
        try:
            ev = parse_event(p)
        except InvalidEventError:
            continue
        if ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        price, a = cat.price(ev), attr.attribute(ev)
        rows.append({"at": ev.occurred_at, "team": a.team, "workflow": a.workflow, "cost_center": a.cost_center,
                     "provider": ev.provider, "model": price.priced_model, "requests": ev.requests,
                     "cost_nanos": price.cost_nanos, "event_id": ev.event_id})
    return rows


def sum_by(rows, dim, start, end) -> dict[str, int]:
    out = defaultdict(int)
    for r in rows:
        if start <= r["at"] < end:
            out[r[dim]] += r["cost_nanos"]
    return dict(out)


@pytest.fixture(scope="session")
def fin_payloads():
    return list(gen.events(START, END, seed=11)) + run_events()


@pytest.fixture(scope="session")
def fin_data(chdb_root, fin_payloads):
    """(store, settings, ground-truth rows) for the shared read-only finance dataset."""
    from costwarden.config import load_settings
    from costwarden.embedded import EmbeddedPipeline

    s = load_settings()
    s.data_dir = Path(chdb_root)
    s.store.database = f"fin_{uuid.uuid4().hex[:10]}"
    s.pipeline.batch_size = 5000
    s.budgets.rules_file = Path(gen.demo_file("demo-rules.yaml"))
    p = EmbeddedPipeline(s, deliver=False, clock=lambda: datetime(2026, 11, 1, tzinfo=timezone.utc))
    p.ingest(fin_payloads, "test")
    p.close()
    return p.store, s, truth(fin_payloads, str(s.budgets.rules_file))


@pytest.fixture
def utc():
    return lambda *a: datetime(*a, tzinfo=timezone.utc)


@pytest.fixture
def day():
    return timedelta(days=1)
