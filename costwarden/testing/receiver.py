"""A real local receiver for Apprise's json:// and form:// channels: an HTTP server on 127.0.0.1
that records every POST (path and decoded fields). Tests point channels at `url(name)`."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Post:
    path: str
    fields: dict  # title, message, type, ... (decoded JSON or form fields)
    at: float     # time.monotonic() on arrival


class HookReceiver:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
                if "json" in self.headers.get("Content-Type", ""):
                    fields = json.loads(raw)
                else:
                    fields = {k: v[0] for k, v in parse_qs(raw).items()}
                with rec._lock:
                    rec.posts.append(Post(self.path, fields, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str = "hook", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{name}"

    def titles(self, name: str | None = None) -> list[str]:
        return [p.fields.get("title", "") for p in self.snapshot() if name is None or p.path == f"/{name}"]

    def snapshot(self) -> list[Post]:
        with self._lock:
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "HookReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
