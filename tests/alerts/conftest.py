"""Fixtures for the alerts tests: a real HTTP receiver for Apprise's json:// and form://
schemes (a ThreadingHTTPServer on 127.0.0.1, free port), a listener that never answers, and
a store per test (one chDB data directory per process, one database per test)."""
from __future__ import annotations

import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from costwarden.store import migrate, open_store


@dataclass
class Received:
    path: str
    content_type: str
    authorization: str
    fields: dict  # title, message, ... (decoded JSON or form fields)


@dataclass
class Receiver:
    """Records every POST; answers with the next status in `statuses` (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def start(self) -> "Receiver":
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    fields = json.loads(raw)
                else:
                    fields = {k: v[0] for k, v in parse_qs(raw).items()}
                rec.received.append(Received(self.path, ctype, self.headers.get("Authorization", ""), fields))
                code = rec.statuses.pop(0) if rec.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentListener:
    """Accepts TCP connections and never answers: a receiver that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dead_port() -> int:
    """A port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_db() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def sample_alert(**over):
    from datetime import datetime, timezone

    from costwarden.alerts.message import BudgetAlert

    base = dict(
        key="search-monthly:2026-11:80%", budget_id="search-monthly", budget_name="Search team monthly",
        scope="team=search", period_label="2026-11", period_end=datetime(2026, 12, 1, tzinfo=timezone.utc),
        kind="actual", threshold="80%", spend_nanos=8_234_560_000_000, amount_nanos=10_000_000_000_000,
        forecast_nanos=11_200_000_000_000,
        top_contributors=[("model", "gpt-4o", 2_000_000_000_000), ("workflow", "rag-answer", 5_100_000_000_000),
                          ("api_key", "key-ci", 900_000_000_000), ("workflow", "summarise", 1_500_000_000_000)],
        action="throttled rag-answer to 60 req/min",
        release_hint="costwarden controls release rag-answer --reason '<why>' --by '<you>'",
        channels=["oncall-search"],
    )
    base.update(over)
    return BudgetAlert(**base)


@pytest.fixture
def make_alert():
    return sample_alert


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory) -> str:
    """chDB opens one data directory per process, so tests share it and get a database each.
    If another test module already opened one, reuse that directory."""
    from costwarden.store import chdb_store

    if chdb_store._SESSIONS:
        path = next(iter(chdb_store._SESSIONS))
        return path[: -len("/chdb")] if path.endswith("/chdb") else path
    return str(tmp_path_factory.mktemp("alerts-data"))


@pytest.fixture
def db_name() -> str:
    return unique_db()


@pytest.fixture
def store(chdb_dir, db_name):
    s = open_store(None, chdb_dir, database=db_name)
    migrate(s)
    yield s
    s.command(f"DROP DATABASE IF EXISTS {db_name}")


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def silent_listener():
    s = SilentListener()
    yield s
    s.close()
