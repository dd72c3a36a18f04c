"""Bearer tokens and roles: 401 without/invalid token, 403 for the wrong role, hashed storage,
audited control changes (who = the token's name), and no token ever in the logs."""
from __future__ import annotations

import hashlib
import logging

from api_helpers import usage


def test_no_token_or_unknown_token_is_401(api):
    anon = api.client(role=None)
    for method, path in [("GET", "/v1/decisions/rag"), ("POST", "/v1/events"), ("GET", "/v1/budgets"),
                         ("GET", "/v1/audit"), ("GET", "/metrics")]:
        r = anon.request(method, path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    r = anon.get("/v1/budgets", headers={"Authorization": "Bearer cw_not-a-real-token"})
    assert r.status_code == 401
    assert anon.get("/healthz").status_code == 200  # probes stay open


def test_wrong_role_is_403(api):
    cases = [("viewer", "POST", "/v1/events", {"json": usage("r1", "rag")}),
             ("gateway", "GET", "/v1/budgets", {}),
             ("gateway", "GET", "/v1/audit", {}),
             ("viewer", "GET", "/v1/decisions/rag", {}),
             ("finance", "POST", "/v1/controls/rag/release", {"json": {"reason": "x"}}),
             ("viewer", "POST", "/v1/budgets/reload", {"json": {"reason": "x"}}),
             ("finance", "POST", "/v1/tokens", {"json": {"name": "n", "role": "admin"}})]
    for role, method, path, kw in cases:
        r = api.client(role).request(method, path, **kw)
        assert r.status_code == 403, (role, path, r.text)
    assert api.client("finance").get("/v1/budgets").status_code == 200
    assert api.client("finance").get("/v1/decisions/rag").status_code == 200
    assert api.client("viewer").get("/v1/controls").status_code == 200


def test_tokens_are_stored_as_sha256_only(api):
    rows = api.runtime.thread.call(lambda: api.runtime.store.query("SELECT * FROM {db}.api_tokens"))
    stored = " ".join(str(v) for r in rows for v in r.values())
    for token in api.tokens.values():
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_admin_release_and_budget_reload_are_audited_with_who_and_why(api):
    gw = api.client()
    gw.post("/v1/events", json=usage("big-1", "runaway", input_tokens=10_000_000))  # $1.50 > $1.00
    assert gw.get("/v1/decisions/runaway").json()["action"] == "block"
    r = api.client("admin").post("/v1/controls/runaway/release", json={"reason": "INC-7 fixed the loop"})
    assert r.status_code == 200 and r.json()["by"] == "admin-bot"
    assert gw.get("/v1/decisions/runaway").json()["action"] == "allow"
    r = api.client("admin").post("/v1/controls/runaway/release", json={"reason": "again"})
    assert r.status_code == 409  # nothing left to release
    r = api.client("finance").post("/v1/budgets/reload", json={"reason": "Q4 plan"})
    assert r.status_code == 200
    entries = api.client("viewer").get("/v1/audit").json()["entries"]
    person = [e for e in entries if e["kind"] == "control" and e["actor_kind"] == "person"]
    assert person[-1]["who"] == "admin-bot" and person[-1]["why"] == "INC-7 fixed the loop"
    assert any(e["kind"] == "control" and e["to"] == "block" and e["actor_kind"] == "rule" for e in entries)
    budget = [e for e in entries if e["kind"] == "budget"]
    assert budget[-1]["who"] == "finance-bot" and budget[-1]["why"] == "Q4 plan"


def test_a_token_never_appears_in_the_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("costwarden", "uvicorn", "httpx", "httpcore", "fastapi"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    gw, adm = api.client(), api.client("admin")
    gw.post("/v1/events", json=usage("log-1", "rag"))
    gw.post("/v1/events", content=b"{oops", headers={"Content-Type": "application/json"})
    gw.get("/v1/budgets")  # 403
    api.client(role=None).get("/v1/decisions/rag", headers={"Authorization": "Bearer cw_leaked-guess"})
    created = adm.post("/v1/tokens", json={"name": "new-gw", "role": "gateway"}).json()["token"]
    assert api.client(role=None).get("/v1/decisions/x", headers={"Authorization": f"Bearer {created}"}).status_code == 200
    text = caplog.text
    assert caplog.records  # the logs were captured at DEBUG
    for token in [*api.tokens.values(), created, "cw_leaked-guess"]:
        assert token not in text
