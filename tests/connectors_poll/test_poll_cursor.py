"""Durable cursors and growing buckets: totals always equal the provider's final buckets, exactly."""
from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from costwarden.config import PollerSettings
from costwarden.connectors import normalize
from costwarden.connectors.poll import SOURCES, Poller, RetryPolicy
from costwarden.embedded import EmbeddedPipeline
from poll_helpers import Clock, fixture_json, utc

PATH = "/v1/organization/usage/completions"
# the documented gpt-4o-mini row of the grouped fixture, not batch (standard tier)
ROW = {**fixture_json("openai_usage_grouped.json")["data"][0]["results"][0], "batch": False}


def bucket(start, input_tokens, cached, output, requests, project="proj_batch"):
    row = {**ROW, "input_tokens": input_tokens, "input_cached_tokens": cached, "input_uncached_tokens":
           input_tokens - cached, "output_tokens": output, "num_model_requests": requests, "project_id": project}
    t = int(start.timestamp())
    return {"object": "bucket", "start_time": t, "end_time": t + 3600, "results": [row]}


def make_poller(provider, pipeline, clock, **kw):
    ps = PollerSettings(base_url=provider.url + "/v1", api_key="k", start="2025-06-01T00:00:00Z",
                        settle_s=kw.pop("settle_s", 0), lookback_hours=kw.pop("lookback_hours", 0),
                        options={"endpoints": ["completions"], **kw.pop("options", {})}, **kw)
    return Poller(SOURCES["openai-usage"], pipeline, ps, clock=clock, retry=RetryPolicy(base_delay=0.01))


def stored(pipeline):
    raw = pipeline.store.query(
        "SELECT count() AS events, sum(requests) AS requests, sum(input_tokens) AS input, "
        "sum(cache_read_tokens) AS cache_read, sum(output_tokens) AS output, sum(cost_nanos) AS cost "
        "FROM {db}.usage_events FINAL WHERE source = 'openai-usage'")[0]
    roll = pipeline.store.query(
        "SELECT sum(requests) AS requests, sum(input_tokens) AS input, sum(cache_read_tokens) AS cache_read, "
        "sum(output_tokens) AS output, sum(cost_nanos) AS cost FROM {db}.usage_rollup_day")[0]
    return raw, roll


def expected(provider, pipeline, upto):
    """What the provider's final buckets (ended by `upto`) are worth, each priced on its own."""
    page = {"object": "page", "data": [b for b in provider.buckets[PATH] if b["end_time"] <= upto.timestamp()]}
    evs = normalize("openai-usage", json.dumps(page)).events
    return {"requests": sum(e.requests for e in evs), "input": sum(e.tokens.input for e in evs),
            "cache_read": sum(e.tokens.cache_read for e in evs), "output": sum(e.tokens.output for e in evs),
            "cost": sum(pipeline.processor.catalogue.price(e).cost_nanos for e in evs)}


def assert_exact(provider, pipeline, upto):
    raw, roll = stored(pipeline)
    want = expected(provider, pipeline, upto)
    got_raw = {k: raw[k] for k in want}
    assert got_raw == want
    assert {k: roll[k] for k in want} == want  # the rollups (materialized views) agree: nothing doubled
    return raw


def test_an_open_bucket_is_held_until_closed_then_counted_once_at_its_final_size(provider, pipeline):
    h = [utc(2025, 6, 1, 8) + timedelta(hours=i) for i in range(3)]
    provider.buckets[PATH] = [bucket(h[0], 10_000, 2_000, 1_000, 5), bucket(h[1], 20_000, 0, 3_000, 7),
                              bucket(h[2], 1_000, 0, 100, 1)]  # 10:00 bucket still open at 10:30
    clock = Clock(utc(2025, 6, 1, 10, 30))
    p = make_poller(provider, pipeline, clock)
    r1 = p.run_once()
    assert r1.new_buckets == 2 and r1.cursor == utc(2025, 6, 1, 10)
    # usage keeps arriving in the open bucket; then it closes
    provider.buckets[PATH][2] = bucket(h[2], 5_000, 1_000, 700, 4)
    clock.at = utc(2025, 6, 1, 11, 5)
    r2 = p.run_once()
    assert r2.new_buckets == 1 and r2.revised_buckets == 0
    raw = assert_exact(provider, pipeline, utc(2025, 6, 1, 11))
    assert raw["events"] == 3


def test_a_closed_bucket_revised_late_adds_exactly_the_difference(provider, pipeline):
    h = [utc(2025, 6, 1, 8) + timedelta(hours=i) for i in range(2)]
    provider.buckets[PATH] = [bucket(h[0], 10_000, 2_000, 1_000, 5), bucket(h[1], 20_000, 0, 3_000, 7)]
    clock = Clock(utc(2025, 6, 1, 10, 5))
    p = make_poller(provider, pipeline, clock, lookback_hours=24)
    assert p.run_once().new_buckets == 2
    # late-arriving usage lands in the 09:00 bucket after we took it
    provider.buckets[PATH][1] = bucket(h[1], 26_000, 4_000, 3_500, 9)
    clock.at = utc(2025, 6, 1, 11, 5)
    r = p.run_once()
    assert (r.new_buckets, r.revised_buckets, r.unchanged_buckets) == (0, 1, 1)
    raw = assert_exact(provider, pipeline, utc(2025, 6, 1, 11))
    assert raw["events"] == 3  # the first event and one revision carrying the difference
    # polling again changes nothing
    r = p.run_once()
    assert (r.new_buckets, r.revised_buckets, r.unchanged_buckets) == (0, 0, 2)
    assert stored(pipeline)[0]["events"] == 3
    # a downward revision cannot be a negative event: dead letter, totals kept
    provider.buckets[PATH][0] = bucket(h[0], 9_000, 2_000, 1_000, 5)
    r = p.run_once()
    assert r.dead_letters == {"inconsistent": 1}
    dl = pipeline.store.query("SELECT reason, detail FROM {db}.dead_letters WHERE source = 'openai-usage'")
    assert dl and "revised bucket" in dl[0]["detail"] and "down" in dl[0]["detail"]
    assert stored(pipeline)[0]["input"] == 8_000 + 22_000  # uncached input of the two buckets


def three_days(provider):
    provider.buckets[PATH] = [bucket(utc(2025, 6, 1) + timedelta(hours=i), 1_000 * (i + 1), 100 * (i % 3),
                                     50 * (i + 1), i + 1, project=f"proj_{i % 2}") for i in range(72)]
    provider.page_size = 10  # several pages per window


def test_a_poller_stopped_after_its_first_window_resumes_without_gap_or_duplicate(provider, settings):
    three_days(provider)
    clock = Clock(utc(2025, 6, 4, 0, 30))
    first = EmbeddedPipeline(settings, deliver=False)

    class Killed(Exception):
        pass

    def kill(report):
        raise Killed

    with pytest.raises(Killed):
        make_poller(provider, first, clock).run_once(on_window=kill)
    first.close(flush_alerts=False)
    assert stored(first)[0]["events"] == 24

    n_before = len(provider.seen)
    second = EmbeddedPipeline(settings, deliver=False)  # a restart: state rebuilt from the store
    r = make_poller(provider, second, clock).run_once()
    resumed = provider.seen[n_before]
    assert resumed.params["start_time"] == [str(int(utc(2025, 6, 2).timestamp()))]  # no gap, no re-poll
    assert r.new_buckets == 48 and r.cursor == utc(2025, 6, 4)
    raw = assert_exact(provider, second, utc(2025, 6, 4))
    assert raw["events"] == 72

    # a lost checkpoint (crash after the data was stored, before the cursor) re-polls: nothing doubles
    second_poller = make_poller(provider, second, clock, lookback_hours=0)
    second_poller.state.save_cursor("openai-usage", utc(2025, 6, 1))
    second_poller.state.store.command("OPTIMIZE TABLE {db}.connector_cursors FINAL")
    r = second_poller.run_once(start=utc(2025, 6, 1))
    assert (r.new_buckets, r.revised_buckets, r.unchanged_buckets) == (0, 0, 72)
    assert assert_exact(provider, second, utc(2025, 6, 4))["events"] == 72
    second.close(flush_alerts=False)


def test_the_cursor_only_moves_forward_and_a_backfill_does_not_rewind_it(provider, pipeline):
    three_days(provider)
    p = make_poller(provider, pipeline, Clock(utc(2025, 6, 4, 0, 30)))
    p.run_once()
    assert p.state.cursor("openai-usage") == utc(2025, 6, 4)
    r = p.run_once(start=utc(2025, 6, 1), end=utc(2025, 6, 2))
    assert r.windows == 1 and r.unchanged_buckets == 24 and r.cursor == utc(2025, 6, 4)
    assert copy.deepcopy(stored(pipeline)[0]["events"]) == 72
