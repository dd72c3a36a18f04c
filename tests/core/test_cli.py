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
    assert first["cost_usd"] == "2.800000"
    assert first["control_changes"] == ["runaway:block"]
    again = json.loads(run([*budgets, "ingest", str(src), "--json"], data).stdout)
    assert again["accepted"] == 0 and again["control_changes"] == []

    rep = run(["report", "--by", "team,workflow", "--period", f"{at:%Y-%m}", "--format", "csv"], data).stdout
    rows = list(csv.DictReader(io.StringIO(rep)))
    assert rows[0]["workflow"] == "runaway" and rows[0]["cost_usd"] == "2.800000"
    assert rows[-1]["team"] == "TOTAL" and rows[-1]["cost_micros"] == "2800000"

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
    assert [r["cost_usd"] for r in rows] == ["0.280000"] * 3  # the duplicate line is priced too: no state
    assert p.returncode == 3 and "content_field" in p.stderr
    assert not (workspace / "d").exists()


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
