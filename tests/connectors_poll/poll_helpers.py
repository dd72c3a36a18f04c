"""Helpers for the poller tests: a fake provider (a real HTTP server on 127.0.0.1) that serves
the documented payloads like the provider would: windowed buckets, has_more / next_page paging,
scripted 429 / 500 / 401 answers; a receiver for Apprise json:// alerts; a fixed clock."""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from costwarden.testing.receiver import HookReceiver


FIXTURES = Path(__file__).parent.parent / "connectors" / "fixtures"


def fixture_json(name: str):
    return json.loads((FIXTURES / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Seen:
    path: str
    params: dict
    headers: dict
    at: float


def _t(v) -> float:
    if isinstance(v, (int, float)) or str(v).isdigit():
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


@dataclass
class FakeProvider:
    """Per path: scripted answers first (status, body, headers), then either verbatim pages
    (`pages[path][token]`) or windowed buckets (`buckets[path]`, `page_size` per page)."""

    scripts: dict = field(default_factory=lambda: defaultdict(list))
    pages: dict = field(default_factory=dict)
    buckets: dict = field(default_factory=dict)
    keys: dict = field(default_factory=lambda: {"start": "start_time", "end": "end_time",
                                                "q_start": "start_time", "q_end": "end_time"})
    page_size: int = 2
    seen: list = field(default_factory=list)
    gate: dict = field(default_factory=dict)  # path -> (predicate(params), threading.Event) to hold a request

    def start(self) -> "FakeProvider":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                u = urlsplit(self.path)
                params = parse_qs(u.query)
                path = u.path
                fake.seen.append(Seen(path, params, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
                status, body, headers = fake.answer(path, params)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        for _, ev in self.gate.values():
            ev.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, params: dict):
        if self.scripts.get(path):
            status, body, headers = self.scripts[path].pop(0)
            return status, body if isinstance(body, bytes) else json.dumps(body).encode(), headers
        if path in self.gate:
            pred, ev = self.gate[path]
            if pred(params):
                ev.wait(30)
        token = (params.get("page") or [None])[0]
        if path in self.pages:
            return 200, self.pages[path][token], {}
        if path in self.buckets:
            return 200, json.dumps(self.window_page(path, params, token)).encode(), {}
        return 200, json.dumps({"object": "page", "data": [], "has_more": False, "next_page": None}).encode(), {}

    def window_page(self, path: str, params: dict, token):
        k = self.keys
        lo, hi = _t(params[k["q_start"]][0]), _t(params[k["q_end"]][0])
        rows = [b for b in self.buckets[path] if lo <= _t(b[k["start"]]) < hi]
        off = int(token.split("_")[1]) if token else 0
        chunk = rows[off:off + self.page_size]
        more = off + self.page_size < len(rows)
        return {"object": "page", "data": chunk, "has_more": more,
                "next_page": f"page_{off + self.page_size}" if more else None}


class Receiver(HookReceiver):
    """The shared local json:// receiver; `received` is each POST's JSON body."""

    @property
    def received(self) -> list[dict]:
        return [p.fields for p in self.snapshot()]

    def start(self) -> "Receiver":
        return self

    def stop(self) -> None:
        self.close()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


