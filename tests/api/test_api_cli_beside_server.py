"""The CLI beside a running `costwarden serve` (cli/remote.py), and token revocation over the API.

A real `costwarden serve` subprocess holds a temporary data directory (chDB: one process per
directory); the CLI runs as a subprocess next to it, as on-call would run it."""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

BUDGETS = """version: 1
timezone: UTC
budgets:
  - id: wf-daily
    scope: {workflow: runaway}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 100, basis: actual, actions: [{block: true}]}
"""


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTWARDEN_")}
    env.update(extra)
    return env


class Served:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "d"
        self.budgets = root / "budgets.yaml"
        self.proc: subprocess.Popen | None = None
        self.admin = ""
        self.url = ""
        self.pid = 0
        # the timer is made slow here so that token loads can be counted (unknown tokens only)
        self.server_env = _env(COSTWARDEN_API__TOKEN_REFRESH_S="3600")

    def cli(self, *args: str, token: str | None = None, check: bool = True, stdin: str | None = None,
            **env: str) -> subprocess.CompletedProcess:
        e = _env(**env)
        if token is not None:
            e["COSTWARDEN_API_TOKEN"] = token
        cmd = [sys.executable, "-m", "costwarden.cli.__main__", "--data-dir", str(self.data), *args]
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=e, cwd=self.root)
        if check and p.returncode != 0:
            raise AssertionError(f"{args} exited {p.returncode}: {p.stdout} {p.stderr}")
        return p

    def http(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def start(self) -> None:
        self.budgets.write_text(BUDGETS)
        # before the server: a person's admin token, made with the CLI while nothing holds the directory
        self.admin = json.loads(self.cli("tokens", "create", "--role", "admin", "--name", "ann", "--json").stdout)["token"]
        self.log = open(self.root / "serve.log", "w")
        cmd = [sys.executable, "-m", "costwarden.cli.__main__", "--data-dir", str(self.data), "--budgets",
               str(self.budgets), "serve", "--port", "0", "--no-alerts"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.server_env,
                                     cwd=self.root)
        deadline = time.monotonic() + 90
        while not (self.data / "serve.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {(self.root / 'serve.log').read_text()}")
            time.sleep(0.1)
        info = json.loads((self.data / "serve.json").read_text())
        self.url, self.pid = info["url"], info["pid"]
        assert self.pid == self.proc.pid

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("beside"))
    s.start()
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            rc = s.stop()
            assert rc == 0, (s.root / "serve.log").read_text()
            # a clean stop removes what told the CLI where the server was
            assert not (s.data / "serve.json").exists() and not (s.data / "serve.token").exists()


def _events(workflow: str, n: int) -> str:
    at = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    lines = [json.dumps({"event_id": f"{workflow}-{i}", "occurred_at": (at + timedelta(seconds=i)).isoformat(),
                         "source": "gateway", "provider": "openai", "model": "gpt-4.1",
                         "tokens": {"input": 100_000, "output": 10_000},
                         "attribution": {"tags": {"team": "t", "workflow": workflow}}}) for i in range(n)]
    return "\n".join([*lines, lines[0], "not json {"]) + "\n"


def _one_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_cli_goes_through_the_api_and_a_release_is_audited(served):
    """ingest, controls list / release / audit, report and budgets status, with the server holding
    the data directory: through its API, with the same output as without the server."""
    t = served.admin
    got = json.loads(served.cli("ingest", "-", "--json", token=t, stdin=_events("runaway", 10)).stdout)
    # gpt-4.1: 100k input at $2/M + 10k output at $8/M = $0.28 per event; the budget blocks at $1
    assert got["accepted"] == 10 and got["duplicates"] == 1 and got["dead_lettered"] == {"malformed_json": 1}
    assert got["cost_usd"] == "2.800000000" and got["control_changes"] == ["runaway:block"]

    listed = json.loads(served.cli("controls", "list", "--json", token=t).stdout)
    assert [(c["workflow"], c["state"], c["budget"]) for c in listed] == [("runaway", "block", "wf-daily")]
    rows = served.cli("report", "--by", "team,workflow", "--period", f"{datetime.now(timezone.utc):%Y-%m}",
                      "--format", "csv", token=t).stdout.splitlines()
    assert rows[0].startswith("team,workflow,requests") and rows[1].startswith("t,runaway,10,")
    assert rows[-1].startswith("TOTAL,TOTAL,10,") and ",2800000000," in rows[-1]
    status = json.loads(served.cli("budgets", "status", "--format", "json", token=t).stdout)
    assert [(b["budget"], b["spend_usd"], b["state"]) for b in status] == [("wf-daily", "2.800000000", "over")]

    refused = served.cli("controls", "release", "runaway", "--reason", " ", "--by", "ann@example.com", token=t,
                         check=False)
    assert refused.returncode == 7 and "reason" in _one_line(refused)
    ok = served.cli("controls", "release", "runaway", "--reason", "loop fixed", "--by", "ann@example.com", token=t)
    assert "released runaway (was block); audited as ann@example.com via ann" in ok.stdout
    assert json.loads(served.cli("controls", "list", "--json", token=t).stdout) == []
    with served.http(t) as c:  # the gateway sees it at once
        assert c.get("/v1/decisions/runaway").json()["action"] == "allow"
    audit = json.loads(served.cli("controls", "audit", "--workflow", "runaway", "--json", token=t).stdout)
    assert [(a["to_state"], a["actor"], a["actor_kind"], a["reason"]) for a in audit][-1] == \
        ("allow", "ann@example.com via ann", "person", "loop fixed")


def test_without_a_token_the_servers_local_token_serves_the_same_user(served):
    """On-call at 3 a.m., as the user who runs the server: no token to find, DATA_DIR/serve.token."""
    assert (served.data / "serve.token").stat().st_mode & 0o077 == 0  # the owner's only
    p = served.cli("controls", "list", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == []
    hidden = served.root / "serve.token.away"  # another user cannot read it: the CLI says what to do
    (served.data / "serve.token").rename(hidden)
    try:
        p = served.cli("controls", "release", "runaway", "--reason", "x", "--by", "bob", check=False)
    finally:
        hidden.rename(served.data / "serve.token")
    line = _one_line(p)
    assert p.returncode == 2 and f"pid {served.pid}" in line and "needs an admin token" in line
    assert "COSTWARDEN_API_TOKEN" in line and "costwarden tokens create" in line and "serve.token" in line


def test_a_command_without_an_api_path_fails_in_one_line(served):
    for args in (["reconcile", "--period", "2026-11"], ["report-finance", "--period", "2026-11"],
                 ["serve", "--port", "0"]):
        p = served.cli(*args, token=served.admin, check=False)
        line = _one_line(p)
        assert p.returncode == 5, (args, p.stderr)
        assert f"costwarden serve (pid {served.pid}, {served.url}) " in line and "holds" in line, line
    assert "has no API path; stop the server or use its API" in _one_line(
        served.cli("reconcile", "--period", "2026-11", check=False))
    # a bad token: one line too, and the exit code of a configuration error
    p = served.cli("budgets", "status", token="cw_not-a-token", check=False)
    assert p.returncode == 2 and "unknown or revoked" in _one_line(p)


def test_chdbs_own_lock_error_is_one_line_as_a_last_resort(served):
    """Without the lock probe (a race, or a platform without flock) chDB itself refuses the
    directory: still one line, exit 5, never a traceback."""
    code = ("import sys, costwarden.cli.remote as r; r.guard_local = lambda *a, **k: None; "
            "sys.argv = ['costwarden', '--data-dir', sys.argv[1], 'reconcile', '--period', '2026-11']; "
            "from costwarden.cli import main; main()")
    p = subprocess.run([sys.executable, "-c", code, str(served.data)], capture_output=True, text=True, timeout=120,
                       env=_env(), cwd=served.root)
    assert p.returncode == 5 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]  # chDB prints its own "Code: 76 ..." line before
    assert last.startswith("error: costwarden serve (pid ") and "could not open it" in last, p.stderr


def test_revoke_over_the_api_is_audited_and_refused_at_once(served):
    made = json.loads(served.cli("tokens", "create", "--role", "viewer", "--name", "dash", "--json",
                                 token=served.admin).stdout)
    viewer = made["token"]
    with served.http(viewer) as c:
        assert c.get("/v1/budgets").status_code == 200
    prefix = next(r["sha256_prefix"] for r in json.loads(served.cli("tokens", "list", "--json",
                                                                     token=served.admin).stdout)
                  if r["name"] == "dash")
    p = served.cli("tokens", "revoke", prefix, token=viewer, check=False)  # a viewer may not
    assert p.returncode == 2 and "needs an admin token" in _one_line(p)
    served.cli("tokens", "revoke", prefix, "--reason", "dashboard retired", "--by", "ann@example.com",
               token=served.admin)
    t0 = time.monotonic()
    with served.http(viewer) as c:
        while c.get("/v1/budgets").status_code != 401:
            assert time.monotonic() - t0 < 1.0, "a revoked token still accepted after 1 s"
            time.sleep(0.02)
    with served.http(served.admin) as c:
        entries = [e for e in c.get("/v1/audit").json()["entries"] if e["kind"] == "token"]
    assert [(e["action"], e["token"], e["who"], e["why"]) for e in entries if e["token"] == prefix] == [
        ("create", prefix, f"{_login()} via ann", ""), ("revoke", prefix, "ann@example.com via ann", "dashboard retired")]
    listed = json.loads(served.cli("tokens", "list", "--json", token=served.admin).stdout)
    assert [r["revoked"] for r in listed if r["name"] == "dash"] == [1] and viewer not in json.dumps(listed)


def _login() -> str:
    import getpass

    return getpass.getuser()


def _token_loads(served) -> int:
    with served.http(served.admin) as c:
        text = c.get("/metrics").text
    return int(float(re.search(r"^costwarden_api_token_loads_total (\S+)$", text, re.M).group(1)))


def test_fifty_concurrent_unknown_tokens_cost_at_most_two_loads(served):
    import threading

    clients = [httpx.Client(base_url=served.url, timeout=30) for _ in range(50)]
    for c in clients:
        c.get("/healthz")  # connected: the 50 requests below leave together
    go = threading.Barrier(50)

    def ask(i: int) -> int:
        go.wait()
        return clients[i].get("/v1/budgets", headers={"Authorization": f"Bearer cw_unknown-{i}"}).status_code
    before = _token_loads(served)
    try:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(ask, range(50)))
    finally:
        for c in clients:
            c.close()
    assert codes == [401] * 50
    loads = _token_loads(served) - before
    assert 1 <= loads <= 2, loads
    with served.http(served.admin) as c:  # and a known token never waits for a load
        assert c.get("/v1/budgets").status_code == 200
    assert _token_loads(served) - before == loads


@pytest.mark.integration
def test_a_revoke_reaches_another_replica_within_a_second(clickhouse_url, tmp_path):
    """Two API replicas on one ClickHouse store (the HTTP test adapter), each with its own store
    connection and token timer (default api.token_refresh_s): revoked through A, refused by B."""
    import uuid

    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token
    from costwarden.config import load_settings

    db = f"t_{uuid.uuid4().hex[:12]}"
    replicas, servers = [], []
    try:
        for name in ("a", "b"):
            s = load_settings()
            s.data_dir, s.store.database = tmp_path / name, db
            s.store.url = type(s.store.url)(clickhouse_url)
            rt = EmbeddedRuntime.open(s, deliver=False)
            replicas.append(rt)
        admin = replicas[0].thread.call(lambda: create_token(replicas[0].store, "ann", "admin"))
        for rt in replicas:
            servers.append(ApiServer(create_app(rt)).start())
        a, b = (httpx.Client(base_url=srv.url, timeout=30) for srv in servers)
        auth = {"Authorization": f"Bearer {admin}"}
        made = a.post("/v1/tokens", json={"name": "dash", "role": "viewer"}, headers=auth).json()
        viewer = {"Authorization": f"Bearer {made['token']}"}
        assert b.get("/v1/budgets", headers=viewer).status_code == 200  # B learns it from the store
        assert a.post(f"/v1/tokens/{made['sha256_prefix']}/revoke", json={"reason": "left"},
                      headers=auth).status_code == 200
        t0 = time.monotonic()
        assert a.get("/v1/budgets", headers=viewer).status_code == 401  # A: at once
        while b.get("/v1/budgets", headers=viewer).status_code != 401:
            assert time.monotonic() - t0 < 1.0, "replica B still accepts a token revoked through A after 1 s"
            time.sleep(0.02)
    finally:
        for srv in servers:
            srv.stop()
        for rt in replicas:
            rt.close()
