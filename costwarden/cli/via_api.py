"""CLI commands through a running server's HTTP API (cli/remote.py decides when), printing what the
local commands print: the same columns, the same one-line messages, the same exit codes."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Iterable
from urllib.parse import quote

from costwarden.cli.remote import Remote, RemoteError
from costwarden.errors import ConfigError, CostwardenError
from costwarden.money import from_nanos

BATCH_EVENTS = 500
BATCH_BYTES = 1_000_000
REPORT_COLUMNS = ["requests", "input_tokens", "cache_read_tokens", "output_tokens", "cost_usd",
                  "cost_per_request_usd", "cost_nanos", "unpriced_events"]
_UNALLOCATED = "unallocated"


def _dec(v):
    return Decimal(v) if isinstance(v, str) and v else v


def _when(v):
    return datetime.fromisoformat(v) if isinstance(v, str) and v else v


def _wf(workflow: str) -> str:
    return quote(workflow, safe="")


# --- ingest ------------------------------------------------------------------------------------
def _batches(lines: Iterable[bytes], max_events: int, max_bytes: int):
    """[(body, indexes of lines that are not JSON)] -- each line as sent (numbers kept exact); a line
    that is not JSON goes as a JSON string, so the server dead-letters it with its text."""
    items: list[bytes] = []
    bad: set[int] = set()
    size = 2
    for line in lines:
        try:
            json.loads(line)
            item, is_json = line, True
        except ValueError:
            item, is_json = json.dumps(line.decode("utf-8", "replace")).encode(), False
        if items and (len(items) >= max_events or size + len(item) + 1 > max_bytes):
            yield b"[" + b",".join(items) + b"]", bad
            items, bad, size = [], set(), 2
        if not is_json:
            bad.add(len(items))
        items.append(item)
        size += len(item) + 1
    if items:
        yield b"[" + b",".join(items) + b"]", bad


def ingest(api: Remote, lines: Iterable[bytes]) -> dict:
    a = api.settings.api
    max_events = max(1, min(BATCH_EVENTS, a.max_events_per_request))
    max_bytes = max(1024, min(BATCH_BYTES, a.max_body_bytes // 2))
    accepted = duplicates = sent = 0
    dead: Counter = Counter()
    cost = from_nanos(0)
    changes: list[str] = []
    for body, bad in _batches(lines, max_events, max_bytes):
        try:
            r = api.call("POST", "/v1/events", ok=(200, 422), content=body,
                         headers={"Content-Type": "application/json"})
        except CostwardenError as e:
            if not sent:
                raise
            raise RemoteError(f"{e} (after {sent} lines sent and stored; sending them again is safe: "
                              f"event ids count once)", getattr(e, "exit_code", 1)) from None
        res = r.json()
        if "results" not in res:  # a 422 about the request itself
            raise RemoteError(f"{api.info.describe()}: {res.get('detail') or res}", 3)
        accepted += res["accepted"]
        duplicates += res["duplicates"]
        for item in res["results"]:
            if item["status"] == "rejected":
                dead["malformed_json" if item["index"] in bad else item["reason"]] += 1
        if res.get("cost_usd") is not None:
            cost += Decimal(res["cost_usd"])
        changes += [f"{c['workflow']}:{c['state']}" for c in res.get("control_changes", [])]
        sent += len(res["results"])
    return {"accepted": accepted, "duplicates": duplicates, "dead_lettered": dict(dead), "cost_usd": str(cost),
            "signals": None, "control_changes": changes}


# --- report, budgets status --------------------------------------------------------------------
def report(api: Remote, by: list[str], period: str) -> tuple[list[dict], list[str]]:
    """`costwarden report` from GET /v1/reports/spend: the local report's columns and rows (the
    finance report's $0 `unallocated` placeholder row is left out, as the local report has none)."""
    r = api.call("GET", "/v1/reports/spend", params={"by": ",".join(by), "period": period, "format": "json",
                                                     "compare": "false"})
    rows = r.json()["rows"]
    body = [x for x in rows if x.get(by[0]) != "TOTAL"]
    body = [x for x in body if not (x.get("requests") == 0 and x.get("cost_nanos") == 0
                                    and any(x.get(d) == _UNALLOCATED for d in by))]
    if not body:
        rows = []
    else:
        rows = body + [x for x in rows if x.get(by[0]) == "TOTAL"]
    for x in rows:
        x["cost_usd"], x["cost_per_request_usd"] = _dec(x.get("cost_usd")), _dec(x.get("cost_per_request_usd"))
    return rows, [*by, *REPORT_COLUMNS]


def budget_status(api: Remote) -> list[dict]:
    rows = api.call("GET", "/v1/budgets").json()["budgets"]
    for x in rows:
        for k in ("spend_usd", "amount_usd", "forecast_usd", "pct_used"):
            x[k] = _dec(x.get(k))
    return rows


# --- controls ------------------------------------------------------------------------------------
def controls(api: Remote, show_all: bool) -> list[dict]:
    r = api.call("GET", "/v1/controls", params={"include_inactive": "true" if show_all else "false"})
    out = []
    for c in r.json()["controls"]:
        out.append({"workflow": c["workflow"], "state": c["state"], "rate_per_min": _dec(c["rate_per_min"]),
                    "budget": c["budget_id"], "reason": c["reason"], "set_by": c["set_by"],
                    "set_at": _when(c["set_at"]), "expires_at": _when(c["expires_at"]), "active": c["active"]})
    return out


def release(api: Remote, workflow: str, reason: str, by: str) -> dict:
    return api.call("POST", f"/v1/controls/{_wf(workflow)}/release", json={"reason": reason, "by": by}).json()


def extend(api: Remote, workflow: str, until: datetime | None, reason: str, by: str) -> dict:
    body = {"reason": reason, "by": by, **({"until": until.isoformat()} if until else {})}
    return api.call("POST", f"/v1/controls/{_wf(workflow)}/extend", json=body).json()


def audit(api: Remote, workflow: str | None) -> list[dict]:
    r = api.call("GET", "/v1/audit", params={"workflow": workflow} if workflow else None)
    out = []
    for e in r.json()["entries"]:
        if e.get("kind") != "control":
            continue
        out.append({"at": _when(e["at"]), "workflow": e["workflow"], "from_state": e["from"], "to_state": e["to"],
                    "rate_per_min": _dec(e.get("rate_per_min")), "budget_id": e["budget_id"], "actor": e["who"],
                    "actor_kind": e["actor_kind"], "reason": e["why"]})
    return out


# --- tokens ----------------------------------------------------------------------------------------
def token_create(api: Remote, name: str, role: str, by: str, reason: str) -> str:
    r = api.call("POST", "/v1/tokens", json={"name": name, "role": role, "by": by, "reason": reason})
    return r.json()["token"]


def token_list(api: Remote) -> list[dict]:
    rows = api.call("GET", "/v1/tokens").json()["tokens"]
    for x in rows:
        x["created_at"], x["revoked"] = _when(x["created_at"]), int(x["revoked"])
    return rows


def token_revoke(api: Remote, sha256_prefix: str, by: str, reason: str) -> dict:
    r = api.call("POST", f"/v1/tokens/{sha256_prefix}/revoke", ok=(200, 404, 409), json={"reason": reason, "by": by})
    if r.status_code == 404:
        raise ConfigError(f"0 active tokens match {sha256_prefix!r} (see `costwarden tokens list`)")
    if r.status_code == 409:
        raise ConfigError(f"{r.json().get('detail')}")
    return r.json()
