"""The real client code against a local fake provider serving the documented payloads."""
from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest

from costwarden.config import PollerSettings
from costwarden.connectors.poll import SOURCES, Poller, RetryPolicy, run_forever
from costwarden.errors import ConnectorAuthError, ConnectorError
from poll_helpers import Clock, fixture_bytes, utc

KEY = "sk-admin-test-0123456789secret"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def poller(name, provider, pipeline, clock, **kw):
    ps = PollerSettings(base_url=provider.url + "/v1", api_key=KEY, start="2025-06-01T00:00:00Z",
                        settle_s=3600, lookback_hours=0, **kw)
    return Poller(SOURCES[name], pipeline, ps, clock=clock, retry=kw.pop("retry", FAST))


def totals(pipeline, source):
    return pipeline.store.query(
        "SELECT count() AS n, sum(input_tokens) AS input, sum(cache_read_tokens) AS cache_read, "
        "sum(output_tokens) AS output, sum(requests) AS requests, sum(cost_nanos) AS cost "
        f"FROM {{db}}.usage_events FINAL WHERE source = '{source}'")[0]


def test_openai_usage_follows_next_page_and_sends_the_documented_query(provider, pipeline):
    # the two documented pages, verbatim: the grouped one says has_more with a next_page token
    provider.pages["/v1/organization/usage/completions"] = {
        None: fixture_bytes("openai_usage_grouped.json"),
        "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA=": fixture_bytes("openai_usage_doc.json")}
    p = poller("openai-usage", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0)))
    report = p.run_once()

    comp = [s for s in provider.seen if s.path.endswith("/completions")]
    assert [s.params.get("page") for s in comp] == [None, ["page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="]]
    q = comp[0].params
    assert q["start_time"] == ["1748736000"] and q["end_time"] == ["1748822400"] and q["bucket_width"] == ["1h"]
    assert q["group_by"] == ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"]
    assert comp[0].headers["authorization"] == f"Bearer {KEY}"
    emb = [s for s in provider.seen if s.path.endswith("/embeddings")][0]
    assert emb.params["group_by"] == ["project_id", "user_id", "api_key_id", "model"]
    # 3 grouped results + the documented gpt-4.1 row; the empty bucket gives nothing
    assert report.new_buckets == 4 and report.pages == 3 and not report.dead_letters
    t = totals(pipeline, "openai-usage")
    assert t["n"] == 4
    assert t["input"] == 1_000_000 + 200_000 + 5_000_000 + 1_250_000
    assert t["cache_read"] == 100_000 + 1_200_000
    assert report.cursor == utc(2025, 6, 2)


def test_anthropic_usage_pages_with_version_header_and_group_by(provider, pipeline):
    provider.keys.update(start="starting_at", q_start="starting_at", q_end="ending_at")
    import json
    doc = json.loads(fixture_bytes("anthropic_usage_grouped.json"))
    provider.buckets["/v1/organizations/usage_report/messages"] = doc["data"] + \
        json.loads(fixture_bytes("anthropic_usage_doc.json"))["data"]
    provider.page_size = 1
    p = poller("anthropic-usage", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0)), bucket_width="1d")
    report = p.run_once()
    seen = provider.seen
    assert len(seen) == 2 and seen[1].params["page"] == ["page_1"]
    assert seen[0].headers["anthropic-version"] == "2023-06-01" and seen[0].headers["x-api-key"] == KEY
    assert seen[0].params["group_by[]"] == ["api_key_id", "workspace_id", "model", "service_tier", "context_window"]
    assert seen[0].params["starting_at"] == ["2025-06-01T00:00:00Z"]
    expected = sum(len(b["results"]) for b in provider.buckets["/v1/organizations/usage_report/messages"])
    assert report.new_buckets == expected
    # null workspace means the default workspace because we grouped by it
    ws = {r["workspace_id"] for r in pipeline.store.query(
        "SELECT DISTINCT workspace_id FROM {db}.usage_events FINAL")}
    assert "default" in ws


def test_429_waits_for_retry_after_then_succeeds(provider, pipeline, caplog):
    path = "/v1/organization/usage/completions"
    provider.scripts[path].append((429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"}))
    provider.pages[path] = {None: fixture_bytes("openai_usage_doc.json")}
    caplog.set_level(logging.DEBUG)
    report = poller("openai-usage", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0))).run_once()
    comp = [s for s in provider.seen if s.path == path]
    assert len(comp) == 2
    assert comp[1].at - comp[0].at >= 0.95  # Retry-After respected although base_delay is 10 ms
    assert report.new_buckets == 1
    assert KEY not in caplog.text and "HTTP 429" in caplog.text


def test_500_is_retried_with_backoff_and_a_dead_server_gives_up(provider, pipeline):
    path = "/v1/organization/costs"
    provider.scripts[path].append((500, b"oops", {}))
    provider.pages[path] = {None: fixture_bytes("openai_costs_doc.json")}
    p = poller("openai-costs", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0)), bucket_width="1d")
    report = p.run_once()
    assert len([s for s in provider.seen if s.path == path]) == 2
    assert report.cost_lines == 3
    rows = pipeline.store.query("SELECT sum(amount) AS usd FROM {db}.provider_cost_lines FINAL")
    # stored exactly at the table's scale (12 places): the 1e-16 of a float artefact does not survive
    assert rows[0]["usd"] == Decimal("5.58")

    provider.scripts[path] += [(503, b"down", {})] * 4
    with pytest.raises(ConnectorError, match="failed 4 times, last: HTTP 503"):
        p.run_once(start=utc(2025, 6, 1))


def test_401_stops_the_connector_with_a_clear_message_and_no_secret(provider, pipeline):
    path = "/v1/organization/usage/completions"
    provider.scripts[path].append((401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, {}))
    p = poller("openai-usage", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0)))
    with pytest.raises(ConnectorAuthError) as e:
        p.run_once()
    msg = str(e.value)
    assert "HTTP 401" in msg and "connector is stopped" in msg and KEY not in msg and "****" in msg
    assert e.value.exit_code == 9
    assert len(provider.seen) == 1  # never retried
    assert p.state.cursor("openai-usage") is None  # nothing checkpointed, nothing stored
    assert KEY not in repr(p.client)

    # the scheduled loop drops that connector and returns instead of hammering the provider
    provider.scripts[path].append((403, {"error": {"message": "forbidden"}}, {}))
    stop = threading.Event()
    t = threading.Thread(target=run_forever, args=([p], stop, 0.01))
    t.start()
    t.join(5)
    assert not t.is_alive()
    stop.set()


def test_opencost_allocation_window_and_closed_allocations(provider, pipeline):
    provider.pages["/allocation"] = {None: fixture_bytes("opencost_allocation.json")}
    ps = PollerSettings(base_url=provider.url, start="2025-06-01T00:00:00Z", settle_s=0, lookback_hours=0,
                        bucket_width="1d")
    p = Poller(SOURCES["opencost"], pipeline, ps, clock=Clock(utc(2025, 6, 2, 0, 30)), retry=FAST, environ={})
    report = p.run_once()
    q = provider.seen[0].params
    assert q["window"] == ["2025-06-01T00:00:00Z,2025-06-02T00:00:00Z"] and q["step"] == ["1d"]
    assert q["aggregate"] == ["namespace"] and "authorization" not in provider.seen[0].headers
    assert report.new_buckets >= 1
    rows = pipeline.store.query("SELECT sum(gpu_hours) AS h, sum(provider_cost) AS c FROM {db}.usage_events FINAL "
                                "WHERE source = 'opencost'")
    assert rows[0]["h"] > 0 and rows[0]["c"] > 0
    # re-polling the same window finds every allocation already stored (exact Decimal hours and cost)
    again = p.run_once(start=utc(2025, 6, 1))
    assert (again.new_buckets, again.revised_buckets, again.unchanged_buckets) == (0, 0, report.new_buckets)


def test_a_bad_row_goes_to_dead_letters_and_the_rest_is_counted(provider, pipeline):
    import json
    page = json.loads(fixture_bytes("openai_usage_grouped.json"))
    page["data"][0]["results"][1]["output_tokens"] = -5
    page["has_more"], page["next_page"] = False, None
    provider.pages["/v1/organization/usage/completions"] = {None: json.dumps(page).encode()}
    report = poller("openai-usage", provider, pipeline, Clock(utc(2025, 6, 2, 1, 0))).run_once()
    assert report.new_buckets == 2 and report.dead_letters == {"negative_value": 1}
    dl = pipeline.store.query("SELECT source, reason, detail, payload FROM {db}.dead_letters")
    assert [(r["source"], r["reason"]) for r in dl] == [("openai-usage", "negative_value")]
    assert "output_tokens=-5" in dl[0]["detail"] and "o3-2025-04-16" in dl[0]["payload"]


def test_credentials_from_settings_file_or_environment_never_in_errors(tmp_path, pipeline):
    from costwarden.connectors.poll import resolve_key
    from costwarden.errors import ConfigError

    src = SOURCES["anthropic-usage"]
    f = tmp_path / "key"
    f.write_text("sk-ant-admin-from-file\n")
    assert resolve_key(src, PollerSettings(api_key_file=f), {}).get_secret_value() == "sk-ant-admin-from-file"
    assert resolve_key(src, PollerSettings(), {"ANTHROPIC_ADMIN_KEY": "sk-env"}).get_secret_value() == "sk-env"
    with pytest.raises(ConfigError, match="ANTHROPIC_ADMIN_KEY"):
        resolve_key(src, PollerSettings(), {})
    assert resolve_key(SOURCES["opencost"], PollerSettings(), {}) is None  # in-cluster, no key needed
    ps = PollerSettings(api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(ps) and "sk-secret-value" not in str(ps.model_dump())


def test_cli_run_exits_9_on_an_auth_error_with_a_clear_message(provider, settings, monkeypatch):
    import json
    from click.testing import CliRunner
    from costwarden.cli import cli

    provider.scripts["/v1/organizations/cost_report"].append((401, {"error": {"message": "invalid x-api-key"}}, {}))
    monkeypatch.setenv("COSTWARDEN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COSTWARDEN_STORE__DATABASE", settings.store.database)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", KEY)
    monkeypatch.setenv("COSTWARDEN_CONNECTORS__SOURCES", json.dumps({"anthropic-cost": {
        "base_url": provider.url + "/v1", "bucket_width": "1d", "start": "2025-06-01T00:00:00Z"}}))
    res = CliRunner().invoke(cli, ["connectors", "run", "anthropic-cost", "--to", "2025-06-03"], obj={})
    assert res.exit_code == 9
    assert "refused our credentials (HTTP 401)" in res.output and KEY not in res.output


def test_retry_after_as_seconds_or_http_date():
    from costwarden.connectors.poll.http import retry_after_seconds

    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Sun, 01 Jun 2025 00:01:00 GMT", now=utc(2025, 6, 1)) == 60.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
