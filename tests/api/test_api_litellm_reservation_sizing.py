"""Reservations as the LiteLLM callback uses them, through the real API (uvicorn, embedded runtime):
holds sized by the workflow's recent cost per call (seeded from the store, fed by settles), and
refusals that say whether waiting can help (code, Retry-After, x-should-retry)."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from api_helpers import usage

# gpt-4o-mini: $0.15 / M input, $0.60 / M output
WORST = {"model": "gpt-4o-mini", "provider": "openai", "max_input_tokens": 1000, "max_output_tokens": 10_000}
# 1000 in + 10000 out = $0.00615; input alone $0.00015


def history(c, workflow: str, n: int, output_tokens: int = 1000, days_ago: int = 1) -> None:
    """n calls of 1000 in + output_tokens out, in an earlier period (they count for no budget)."""
    at = (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat()
    evs = [usage(f"hist-{workflow}-{uuid.uuid4().hex}", workflow, 1000, output_tokens, occurred_at=at)
           for _ in range(n)]
    r = c.post("/v1/events", json=evs)
    assert r.status_code == 200 and r.json()["accepted"] == n, r.text


def test_a_new_workflow_holds_the_worst_case(api):
    c = api.client()
    r = c.post("/v1/reservations", json={**WORST, "workflow": "runaway"})
    assert r.status_code == 201, r.text
    h = r.json()
    assert h["estimate_usd"] == h["worst_case_usd"] == "0.006150000"
    assert h["sized_by"].startswith("worst case (0 recent calls")


def test_holds_follow_the_recent_p99_and_settles_feed_it(api):
    c = api.client()
    # 30 calls of $0.00075 (1000 in + 1000 out) and one of $0.00315 (1000 + 5000): p99 of 31 = the max
    history(c, "runaway", 30)
    history(c, "runaway", 1, output_tokens=5000)
    r = c.post("/v1/reservations", json={**WORST, "workflow": "runaway"})
    assert r.status_code == 201, r.text
    h = r.json()
    assert h["worst_case_usd"] == "0.006150000" and h["estimate_usd"] == "0.003150000", h
    assert h["sized_by"] == "p99 of 31 recent calls"
    assert c.post("/v1/reservations", json={**WORST, "workflow": "runaway", "sizing": "worst"}).json()[
        "estimate_usd"] == "0.006150000"
    # the prompt is billed whatever the answer: a hold is never below the input alone
    big_prompt = {**WORST, "max_input_tokens": 50_000}  # input alone $0.0075 > p99 $0.00315
    assert c.post("/v1/reservations", json={**big_prompt, "workflow": "runaway"}).json()["sized_by"] == \
        "input tokens alone"

    # a settled call joins the sample at once (no store read)
    book = api.runtime.reservations
    before = len(book.samples["runaway"])
    out = c.post(f"/v1/reservations/{h['id']}/settle", json=usage("settled-x", "runaway", 1000, 1000))
    assert out.status_code == 200 and out.json()["cost_usd"] == "0.000750000", out.text
    deadline = time.monotonic() + 5
    while len(book.samples["runaway"]) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(book.samples["runaway"]) == before + 1 and book.samples["runaway"].values[-1] == 750_000


def test_refusals_say_whether_waiting_helps(api):
    c = api.client()
    body = {"workflow": "runaway", "model": "gpt-4o-mini", "provider": "openai",
            "max_input_tokens": 1_000_000, "max_output_tokens": 1_000_000}  # $0.75 of the $1.00 hard limit
    first = c.post("/v1/reservations", json=body)
    assert first.status_code == 201
    r = c.post("/v1/reservations", json=body)  # $0 spent + $0.75 held + $0.75: only the hold is in the way
    assert r.status_code == 409 and r.json()["error"] == "budget_reserved", r.text
    assert r.headers["retry-after"] == "1" and r.headers["x-should-retry"] == "true"
    c.post(f"/v1/reservations/{first.json()['id']}/settle",
           json=usage("spent-080", "runaway", 1_000_000, 1_083_334))  # $0.80 spent
    r = c.post("/v1/reservations", json=body)  # $0.80 + $0.75 > $1.00 whatever settles: final
    assert r.status_code == 409 and r.json()["error"] == "budget_exceeded", r.text
    assert r.headers["x-should-retry"] == "false" and "retry-after" not in r.headers
    c.post("/v1/events", json=usage("trip", "runaway", 10_000_000))  # blocked: final too
    deadline = time.monotonic() + 5
    while c.get("/v1/decisions/runaway").json()["action"] != "block" and time.monotonic() < deadline:
        time.sleep(0.02)
    small = {**body, "max_input_tokens": 1, "max_output_tokens": 1}
    r = c.post("/v1/reservations", json=small)
    assert r.status_code == 409 and r.json()["error"] == "budget_exceeded" and "blocked" in r.json()["detail"]


@pytest.mark.parametrize("sizing", ["median"])
def test_an_unknown_sizing_is_a_422(api, sizing):
    r = api.client().post("/v1/reservations", json={**WORST, "workflow": "runaway", "sizing": sizing})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_the_recent_cost_query_and_the_quantile():
    from costwarden.api.reservations import CostSample, recent_cost_sql

    sql = recent_cost_sql("o'brien", datetime(2026, 11, 1, tzinfo=timezone.utc), 256)
    assert sql == ("SELECT cost_nanos FROM {db}.usage_events WHERE workflow = 'o\\'brien' AND occurred_at >= "
                   "toDateTime64('2026-11-01 00:00:00.000', 3, 'UTC') AND requests <= 1 AND unpriced = 0 AND "
                   "cost_nanos > 0 ORDER BY occurred_at DESC LIMIT 256")
    s = CostSample(200)
    for v in [10] * 98 + [50, 900]:
        s.add(v)
    s.add(0)  # a free call says nothing about the next call's cost
    assert len(s) == 100 and s.quantile(0.99) == 50 and s.quantile(1.0) == 900 and s.quantile(0.5) == 10
    assert CostSample(4).quantile(0.99) is None
