"""Helpers of the API tests (imported by name: tests have no __init__.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import httpx

BUDGETS = """\
version: 1
budgets:
  - id: runaway-cap
    scope: {workflow: runaway}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 50, actions: [{throttle: {rate_per_min: "600"}}]}
      - {at: 100, actions: [{block: true}]}
  - id: lite-cap
    scope: {workflow: lite-agent}
    period: day
    amount: "0.000001"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: everything
    period: month
    amount: "100000.00"
    thresholds:
      - {at: 80, actions: []}
"""


@dataclass
class Api:
    url: str
    runtime: object
    app: object
    tokens: dict[str, str]

    def client(self, role: str | None = "gateway", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)


def usage(event_id: str, workflow: str, input_tokens: int = 1000, output_tokens: int = 100,
          model: str = "gpt-4o-mini", **extra) -> dict:
    return {"event_id": event_id, "occurred_at": datetime.now(timezone.utc).isoformat(), "source": "gateway",
            "provider": "openai", "model": model, "tokens": {"input": input_tokens, "output": output_tokens},
            "attribution": {"tags": {"workflow": workflow}}, **extra}


def serve_api(settings, tmp_path, budgets_yaml: str = BUDGETS) -> Iterator[Api]:
    """The body of the `api` fixture (also used by tests/core/test_hostile_corpus.py): a real
    uvicorn server over an EmbeddedRuntime with BUDGETS, and a token per role."""
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token

    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(budgets_yaml)
    settings.budgets.budgets_file = budgets
    settings.api.stream_heartbeat_s = 1.0
    rt = EmbeddedRuntime.open(settings, deliver=False)
    tokens = {role: rt.thread.call(lambda role=role: create_token(rt.store, f"{role}-bot", role))
              for role in ("gateway", "viewer", "finance", "admin")}
    app = create_app(rt)
    srv = ApiServer(app).start()
    try:
        yield Api(srv.url, rt, app, tokens)
    finally:
        srv.stop()
        rt.close()
