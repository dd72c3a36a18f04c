"""The CLI as a person runs it: the real console script in a subprocess, on a fresh data directory."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

BUDGETS = """version: 1
timezone: UTC
budgets:
  - id: wf-daily
    name: Workflow daily
    scope: {workflow: runaway}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 100, basis: actual, actions: [{notify: [oncall]}, {block: true}]}
"""


def run(args, data_dir, stdin=None, check=True):
    cmd = [sys.executable, "-m", "costwarden.cli.__main__", "--data-dir", str(data_dir), *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stdout} {p.stderr}")
    return p


def events(n: int, at: datetime) -> str:
    lines = []
    for i in range(n):
        lines.append(json.dumps({"event_id": f"cli-{i}", "occurred_at": (at + timedelta(seconds=i)).isoformat(),
                                 "source": "gateway", "provider": "openai", "model": "gpt-4.1",
                                 "tokens": {"input": 100_000, "output": 10_000},
                                 "attribution": {"tags": {"team": "t", "workflow": "runaway"}}}))
    lines.append(lines[0])  # a re-delivery
    lines.append('{"event_id": "bad", "occurred_at": "2026-11-01T00:00:00Z", "source": "x", "provider": "openai", '
                 '"prompt": "secret text"}')
    return "\n".join(lines) + "\n"


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    return tmp_path


def test_budgets_validate_reports_every_error_with_line_and_field(workspace):
    ok = run(["budgets", "validate", str(workspace / "budgets.yaml")], workspace / "d")
    assert "ok, 1 budgets" in ok.stdout
    bad = workspace / "bad.yaml"
    bad.write_text(BUDGETS.replace('amount: "1.00"', 'amount: "-1"').replace("period: day", "period: fortnight"))
    p = run(["budgets", "validate", str(bad)], workspace / "d", check=False)
    assert p.returncode == 4
    assert f"{bad}:7: budgets[0].period" in p.stderr
    assert f"{bad}:8: budgets[0].amount" in p.stderr


def test_ingest_report_block_and_audited_release(workspace):
    at = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    data = workspace / "d"
    src = workspace / "events.jsonl"
    src.write_text(events(10, at))
    budgets = ["--budgets", str(workspace / "budgets.yaml")]
    first = json.loads(run([*budgets, "ingest", str(src), "--json"], data).stdout)
    # gpt-4.1: 100k input at $2/M + 10k output at $8/M = $0.28 per event
    assert first["accepted"] == 10 and first["duplicates"] == 1 and first["dead_lettered"] == {"content_field": 1}
    assert first["cost_usd"] == "2.800000000"
    assert first["control_changes"] == ["runaway:block"]
    again = json.loads(run([*budgets, "ingest", str(src), "--json"], data).stdout)
    assert again["accepted"] == 0 and again["control_changes"] == []

    rep = run(["report", "--by", "team,workflow", "--period", f"{at:%Y-%m}", "--format", "csv"], data).stdout
    rows = list(csv.DictReader(io.StringIO(rep)))
    assert rows[0]["workflow"] == "runaway" and rows[0]["cost_usd"] == "2.800000000"
    assert rows[-1]["team"] == "TOTAL" and rows[-1]["cost_nanos"] == "2800000000"

    listed = json.loads(run([*budgets, "controls", "list", "--json"], data).stdout)
    assert [(c["workflow"], c["state"], c["budget"]) for c in listed] == [("runaway", "block", "wf-daily")]

    refused = run([*budgets, "controls", "release", "runaway", "--reason", " ", "--by", "ann"], data, check=False)
    assert refused.returncode == 7 and "reason" in refused.stderr
    run([*budgets, "controls", "release", "runaway", "--reason", "load test, expected", "--by", "ann"], data)
    assert json.loads(run([*budgets, "controls", "list", "--json"], data).stdout) == []
    audit = json.loads(run(["controls", "audit", "--json"], data).stdout)
    assert [(a["to_state"], a["actor"], a["actor_kind"]) for a in audit] == [("block", "rule", "rule"),
                                                                              ("allow", "ann", "person")]
    assert audit[1]["reason"] == "load test, expected"


def test_price_has_no_side_effects(workspace):
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    p = run(["price", "-"], workspace / "d", stdin=events(2, at), check=False)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["cost_usd"] for r in rows] == ["0.280000000"] * 3  # the duplicate line is priced too: no state
    assert p.returncode == 0 and "content_field" in p.stderr  # valid events priced: 0, the bad line on stderr
    assert not (workspace / "d").exists()


def test_price_ingest_and_normalize_exit_alike_on_invalid_lines(workspace):
    """The one rule (README, exit codes): 0 when the input held a valid event (invalid lines on
    stderr, dead-lettered by ingest), 3 when nothing in it was valid."""
    mixed = workspace / "mixed.jsonl"
    mixed.write_text(events(2, datetime(2026, 11, 1, tzinfo=timezone.utc)))
    bad = workspace / "bad.jsonl"
    bad.write_text(mixed.read_text().splitlines()[-1] + "\n")
    for f, code in ((mixed, 0), (bad, 3)):
        priced = run(["price", str(f)], workspace / "p", check=False)
        ingested = run(["ingest", str(f)], workspace / f"i-{code}", check=False)
        assert priced.returncode == ingested.returncode == code, (f, priced.stderr, ingested.stderr)
        assert "content_field" in priced.stderr and "content_field" in ingested.stderr
    broken = workspace / "broken.json"
    broken.write_text('{"data": [')
    assert run(["normalize", "--source", "openai-usage", str(broken)], workspace / "n", check=False).returncode == 3
    for cmd in (["price", "--help"], ["ingest", "--help"], ["normalize", "--help"]):
        assert "3 when nothing" in " ".join(run(cmd, workspace / "h").stdout.split())


def test_a_missing_input_file_is_one_line_not_a_traceback(workspace):
    for args in (["price", "events.jsonl"], ["ingest", "events.jsonl"],
                 ["normalize", "--source", "anthropic-usage", "report.json"]):
        p = subprocess.run([sys.executable, "-m", "costwarden.cli.__main__", "--data-dir", str(workspace / "d"), *args],
                           capture_output=True, text=True, timeout=120, cwd=workspace)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert f"cannot read {args[-1]}: No such file or directory" in p.stderr


def test_ingest_summary_is_for_people_and_names_unpriced_events(workspace):
    at = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    src = workspace / "e.jsonl"
    lines = events(2, at).splitlines()
    lines.append(json.dumps({"event_id": "u-1", "occurred_at": at.isoformat(), "source": "gateway", "provider": "openai",
                             "model": "mystery-model-x", "tokens": {"input": 10}}))
    src.write_text("\n".join(lines) + "\n")
    out = run(["ingest", str(src)], workspace / "d")
    assert "3 events stored, 1 re-delivery counted once, 1 dead-lettered (content_field: 1)" in out.stdout
    assert "unpriced: 1 event" in out.stdout and "openai/mystery-model-x: 1" in out.stdout
    assert "{'" not in out.stdout + out.stderr and "$0.56" in out.stdout


def test_report_defaults_to_this_month_and_says_why_it_is_empty(workspace):
    data = workspace / "d"
    help_text = " ".join(run(["report", "--help"], data).stdout.split())
    assert "default: the current month" in help_text
    empty = run(["report"], data)
    assert empty.stdout == "" and len(empty.stderr.strip().splitlines()) == 1
    assert f"no usage stored in {data}; run `costwarden demo` or ingest events first" in empty.stderr
    now = datetime.now(timezone.utc)
    src = workspace / "e.jsonl"
    src.write_text(events(3, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)))
    run(["ingest", str(src)], data, check=False)
    table = run(["report", "--by", "team,workflow"], data).stdout  # this month, no --period
    assert "runaway" in table and "$0.84" in table and "cost nanos" not in table and "0.840000" not in table
    old = run(["report", "--period", "2020-01"], data)
    assert old.stdout == "" and f"no usage stored in {data} for 2020-01" in old.stderr
    assert f"try --period {now:%Y-%m}" in old.stderr


def _ev(eid: str, at: str, workflow: str = "runaway", **extra) -> str:
    return json.dumps({"event_id": eid, "occurred_at": at, "source": "gateway", "provider": "openai", "model": "gpt-4.1",
                       "tokens": {"input": 100_000, "output": 10_000},
                       "attribution": {"tags": {"team": "t", "workflow": workflow}}, **extra})


def test_budgets_status_at_is_as_of_that_instant_and_keeps_its_offset(workspace):
    """--at: the period containing the instant, spend up to it (nothing after), the offset honoured;
    --period: as of the period's end. $0.28 an event."""
    data = workspace / "d"
    src = workspace / "e.jsonl"
    src.write_text("\n".join([_ev("a1", "2026-11-29T23:00:00Z"), _ev("a2", "2026-11-29T23:10:00Z"),
                              *[_ev(f"b{i}", f"2026-11-30T04:0{i}:00Z") for i in range(3)],
                              _ev("c1", "2026-11-30T05:00:00Z"), _ev("c2", "2026-11-30T06:00:00Z")]) + "\n")
    budgets = ["--budgets", str(workspace / "budgets.yaml")]
    run([*budgets, "ingest", str(src)], data)

    def status(*args):
        return json.loads(run([*budgets, "budgets", "status", "--format", "json", *args], data).stdout)[0]

    at = status("--at", "2026-11-29T23:30:00-05:00")  # = 2026-11-30 04:30 UTC
    assert at["period"] == "2026-11-30" and at["spend_usd"] == "0.840000000" and at["pct_used"] == "84.0"
    assert status("--at", "2026-11-30T04:30:00Z") == at
    assert status("--at", "2026-11-30T04:30:00")["spend_usd"] == "0.840000000"  # no offset: UTC
    day = status("--period", "2026-11-29")
    assert day["period"] == "2026-11-29" and day["spend_usd"] == "0.560000000" and day["state"] == "ok"
    full = status("--period", "2026-11-30")
    assert full["spend_usd"] == "1.400000000" and full["state"] == "over"
    table = run([*budgets, "budgets", "status", "--at", "2026-11-29T23:30:00-05:00"], data).stdout
    assert "as of 2026-11-29 23:30 -05:00" in table and "84.0%" in table and "$0.84" in table and "$1.00" in table


def test_total_cost_per_request_does_not_spread_gpu_hours_over_model_calls(workspace):
    data = workspace / "d"
    src = workspace / "e.jsonl"
    gpu = {"event_id": "g1", "occurred_at": "2026-11-02T03:00:00Z", "source": "opencost", "provider": "self_hosted",
           "model": "", "operation": "fine-tune", "requests": 0, "compute": {"gpu_hours": "8", "gpu_type": "h100"},
           "attribution": {"tags": {"team": "platform", "workflow": "ft"}}}
    src.write_text(_ev("l1", "2026-11-02T01:00:00Z") + "\n" + _ev("l2", "2026-11-02T02:00:00Z") + "\n"
                   + json.dumps(gpu) + "\n")
    run(["ingest", str(src)], data)
    rows = json.loads(run(["report", "--period", "2026-11", "--format", "json"], data).stdout)
    total = rows[-1]
    assert total["team"] == "TOTAL" and total["requests"] == 2 and int(total["cost_nanos"]) > 560_000_000
    assert total["cost_per_request_usd"] == "0.280000000"  # the two model calls' cost over their requests


def test_connectors_run_without_once_exits_9_when_the_provider_refuses_the_key(workspace):
    """As its --help says, with or without --once: the scheduled loop stops on 401 and exits 9."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"error": {"message": "Incorrect API key provided"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        import os

        env = {**os.environ, "OPENAI_ADMIN_KEY": "sk-admin-test-key",
               "COSTWARDEN_CONNECTORS__SOURCES": json.dumps({"openai-usage": {
                   "base_url": f"http://127.0.0.1:{srv.server_port}/v1", "start": "2026-11-01T00:00:00Z",
                   "interval_s": 0.2}})}
        p = subprocess.run([sys.executable, "-m", "costwarden.cli.__main__", "--data-dir", str(workspace / "d"),
                            "connectors", "run", "openai-usage"], capture_output=True, text=True, timeout=120, env=env,
                           cwd=workspace)
    finally:
        srv.shutdown()
    assert p.returncode == 9, p.stderr
    assert "401" in p.stderr and "Traceback" not in p.stderr and "sk-admin-test-key" not in p.stderr


def test_empty_answers_say_why_on_stderr(workspace):
    data = workspace / "d"
    for args, says in ((["controls", "list"], "no active throttle or block"),
                       (["controls", "audit"], "no control changes recorded"),
                       (["budgets", "status"], "no budgets: pass --budgets FILE"),
                       (["reconcile", "--period", "2026-11"], "nothing to reconcile for 2026-11")):
        p = run(args, data)
        assert p.stdout == "" and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)


def test_human_output_rules():
    import io as _io
    from decimal import Decimal

    from costwarden import human

    assert human.usd("5206.700400") == "$5,206.70" and human.usd(Decimal("-12.5")) == "-$12.50"
    assert human.usd("0.005867", unit=True) == "$0.0059" and human.usd("0.000012", unit=True) == "$0.000012"
    assert human.usd("0.209524", unit=True) == "$0.2095" and human.usd("0.003") == "<$0.01"
    assert human.pct(Decimal("112.63")) == "112.6%" and human.pct(Decimal("12.5"), signed=True) == "+12.5%"
    assert human.when(datetime(2026, 11, 29, 2, 18, tzinfo=timezone.utc)) == "2026-11-29 02:18 UTC"
    assert human.when(datetime.fromisoformat("2026-11-29T23:30:00-05:00")) == "2026-11-29 23:30 -05:00"
    assert human.mapping({"content_field": 98, "negative_value": 94}) == "content_field: 98, negative_value: 94"
    assert human.cell("cost_per_request_usd", Decimal("0.001875")) == "$0.0019"
    assert human.cell("cost_nanos", 5_206_700_400_000) == "$5,206.70" and human.cell("pct_used", Decimal("80.7")) == "80.7%"
    assert human.human_columns(["cost_usd", "cost_nanos", "requests"]) == ["cost_usd", "requests"]

    buf = _io.StringIO()
    with human.Progress("ingesting", 200, stream=buf, every=0) as bar:  # no TTY: plain periodic lines
        bar.advance(50)
        bar.advance(50)
    lines = buf.getvalue().splitlines()
    assert lines and lines[-1].startswith("ingesting: 100 events, ") and "/s" in lines[-1]
    assert "50%" in lines[-1] and "s left" in lines[-1]


def test_ci_junit_file_is_ignored_by_git():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", ".ci-junit.xml", "costwarden-demo/x"], cwd=root,
                             capture_output=True, text=True)
    assert ignored.stdout.split() == [".ci-junit.xml", "costwarden-demo/x"], ignored.stderr


def test_a_stale_serve_file_is_ignored_and_local_token_changes_are_audited(workspace):
    """serve.json left by a killed server (its pid gone, its port closed): the CLI works locally."""
    from costwarden.api.server import free_port

    data = workspace / "d"
    data.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (data / "serve.json").write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": int(dead),
                                                 "host": "", "started": "", "data_dir": str(data)}))
    made = json.loads(run(["tokens", "create", "--role", "viewer", "--name", "dash", "--by", "ann", "--json"],
                          data).stdout)
    listed = json.loads(run(["tokens", "list", "--json"], data).stdout)
    prefix = listed[0]["sha256_prefix"]
    assert made["token"] not in json.dumps(listed) and listed[0]["revoked"] == 0
    run(["tokens", "revoke", prefix, "--by", "ann", "--reason", "left the team"], data)
    assert json.loads(run(["tokens", "list", "--json"], data).stdout)[0]["revoked"] == 1
    p = run(["tokens", "revoke", prefix[:2]], data, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    code = ("import json, sys; from costwarden.store import open_store; s = open_store('chdb', sys.argv[1]); "
            "print(json.dumps(s.query('SELECT action, budget_ids, actor, reason FROM {db}.budget_audit ORDER BY seq')))")
    rows = json.loads(subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True,
                                     check=True).stdout)
    assert rows == [{"action": "token-create", "budget_ids": prefix, "actor": "ann", "reason": ""},
                    {"action": "token-revoke", "budget_ids": prefix, "actor": "ann", "reason": "left the team"}]


DONE_MODELS = [("openai", "text-embedding-3-small"), ("openai", "gpt-4.1-nano"), ("anthropic", "claude-3-7-sonnet"),
               ("gcp.gemini", "gemini-2.0-flash"), ("mistral_ai", "mistral-large"),
               ("aws.bedrock", "us.meta.llama3-3-70b-instruct-v1:0"), ("x_ai", "grok-4")]


def test_price_knows_the_models_people_use_from_the_default_catalogue(workspace):
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    lines = [json.dumps({"event_id": f"m{i}", "occurred_at": at.isoformat(), "source": "gateway", "provider": prov,
                         "model": model, "tokens": {"input": 10_000, "output": 1_000}})
             for i, (prov, model) in enumerate(DONE_MODELS)]
    out = run(["price", "-"], workspace / "d", stdin="\n".join(lines) + "\n").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["model"], r["unpriced"]) for r in rows] == [(m, 0) for _, m in DONE_MODELS]
    assert all(r["cost_nanos"] > 0 for r in rows)
    # text-embedding-3-small: 10,000 x $0.02/1M; gpt-4.1-nano: 10,000 x $0.10 + 1,000 x $0.40 per 1M
    assert [r["cost_usd"] for r in rows[:2]] == ["0.000200000", "0.001400000"]


OLD_CATALOGUE = """version: "2025-01-old.1"
providers:
  openai:
    models:
      gpt-4.1: {prices: [{effective_from: 2025-04-14, input: "2.00", output: "8.00"}]}
"""


def test_catalogue_update_prints_the_diff_and_writes_a_new_version_only_when_asked(workspace):
    cat = workspace / "prices.yaml"
    cat.write_text(OLD_CATALOGUE)
    dry = run(["catalogue", "update", "--out", str(cat)], workspace / "d")
    assert "+ openai/text-embedding-3-small: input 0.02, output 0 [genai-prices " in dry.stdout
    assert "version: 2025-01-old.1 -> " in dry.stdout and "dry run: add --write" in dry.stdout
    assert cat.read_text() == OLD_CATALOGUE
    wrote = run(["catalogue", "update", "--out", str(cat), "--write", "--summary"], workspace / "d")
    assert "wrote" in wrote.stdout and "+ openai/" not in wrote.stdout
    again = run(["catalogue", "update", "--out", str(cat), "--summary"], workspace / "d")
    assert "no changes" in again.stdout
    found = json.loads(run(["--catalogue", str(cat), "catalogue", "lookup", "openai", "gpt-4.1-nano-2025-04-14"],
                           workspace / "d").stdout)
    assert found["entry"] == "openai/gpt-4.1-nano" and found["source"].startswith("genai-prices ")
    assert found["catalogue_version"] != "2025-01-old.1"
    gone = json.loads(run(["catalogue", "lookup", "openai", "mystery-model-x"], workspace / "d").stdout)
    assert gone["priced"] is False
