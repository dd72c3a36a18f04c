"""The SDK resyncs on any regression of the control stream, whatever the server does: an event that
is not the next one of its epoch (a version that goes back, a gap, another epoch without a snapshot)
makes it reconnect without a cursor and take a snapshot, never apply the event.

The server here is a scripted stand-in for the API (so that it can misbehave on purpose)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from sdk_helpers import wait_for
from costwarden.sdk import Costwarden


def _decision(wf: str, action: str) -> dict:
    return {"workflow": wf, "action": action, "rate_per_min": None, "reason": "r", "budget_id": "b",
            "expires_at": None}


def _sse(name: str, ident: str, body: dict) -> bytes:
    return f"id: {ident}\nevent: {name}\ndata: {json.dumps(body)}\n\n".encode()


class _Script:
    """Connection n of the stream gets scripts[n] (then it is held open); requests are recorded."""

    def __init__(self, scripts: list[list[bytes]]) -> None:
        self.scripts = scripts
        self.requests: list[dict] = []


@pytest.fixture
def scripted():
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802  (POST /v1/decisions: the first fill)
            self.rfile.read(int(self.headers.get("content-length") or 0))
            data = json.dumps({"version": 5, "epoch": "E1", "cursor": "E1:5", "decisions": []}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802  (GET /v1/controls/stream)
            script: _Script = holder["script"]
            q = parse_qs(urlparse(self.path).query)
            n = len(script.requests)
            script.requests.append({"since": q.get("since", [None])[0],
                                    "last_event_id": self.headers.get("last-event-id")})
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 1000\n\n")
            for chunk in script.scripts[n] if n < len(script.scripts) else []:
                self.wfile.write(chunk)
            self.wfile.flush()
            try:  # hold the connection open (heartbeats) until the client leaves or the test ends
                while not holder.get("closing"):
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    threading.Event().wait(0.2)
            except OSError:
                pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    holder["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield holder
    holder["closing"] = True
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("bad", [
    _sse("control", "E1:3", _decision("y", "block")),         # a version that goes back
    _sse("control", "E1:9", _decision("y", "block")),         # a gap: events 7 and 8 were missed
    _sse("control", "E2:7", _decision("y", "block")),         # another epoch without a snapshot
], ids=["backwards", "gap", "other-epoch"])
def test_a_regression_makes_the_sdk_reconnect_without_a_cursor_and_take_a_snapshot(scripted, bad):
    first = [_sse("control", "E1:6", _decision("x", "block")), bad, _sse("control", "E1:7", _decision("z", "block"))]
    second = [_sse("snapshot", "E3:2", {"epoch": "E3", "version": 2, "cursor": "E3:2",
                                        "decisions": [_decision("x", "block"), _decision("w", "block")]})]
    scripted["script"] = script = _Script([first, second])
    guard = Costwarden(scripted["url"], "cw_x")
    try:
        assert wait_for(lambda: guard.controls_epoch == "E3", 5), script.requests
        assert script.requests[0]["since"] == "E1:5"   # resumed from the fill's cursor
        assert script.requests[1]["since"] is None     # the resync: no cursor, so a snapshot
        assert guard.check("y").allowed and guard.check("z").allowed  # the bad event and those after it: never applied
        assert guard.check("x").action == "block" and guard.check("w").action == "block"
        assert guard.controls_version == 2 and guard.stats["resyncs"] == 1
    finally:
        guard.close(timeout=0.2)


def test_a_snapshot_of_a_new_epoch_replaces_everything(scripted):
    first = [_sse("control", "E1:6", _decision("x", "block")),
             _sse("snapshot", "E9:1", {"epoch": "E9", "version": 1, "cursor": "E9:1",
                                       "decisions": [_decision("v", "block")]}),
             _sse("control", "E9:2", _decision("u", "block"))]
    scripted["script"] = _Script([first])
    guard = Costwarden(scripted["url"], "cw_x")
    try:
        assert wait_for(lambda: guard.controls_version == 2 and guard.controls_epoch == "E9", 5)
        assert guard.check("x").allowed  # not in the new epoch's snapshot
        assert guard.check("v").action == guard.check("u").action == "block"
        assert guard.stats["resyncs"] == 0  # a snapshot is the server's own resync: no reconnect needed
    finally:
        guard.close(timeout=0.2)
