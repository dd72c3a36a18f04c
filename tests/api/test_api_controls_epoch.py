"""The control stream never lets a client go backwards: versions carry the cache's epoch (one per
server start, new when a feed replaces the cache), and a cursor the server cannot resume (another
epoch, ahead of it, a bare number, garbage) gets a full snapshot rather than silence."""
from __future__ import annotations

import json
import time

import httpx

from api_helpers import usage
from costwarden.budgets.controls import Control, State
from costwarden.sdk import Costwarden
from costwarden.testing.sse import sse_events


def _events(api, params=None, headers=None, want=1, then=None) -> list[tuple[str, str, dict]]:
    """The first `want` (event, id, data) of the stream; `then()` runs once the stream is open."""
    out = []
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.tokens['gateway']}"}) as c:
        with c.stream("GET", "/v1/controls/stream", params=params or {}, headers=headers or {},
                      timeout=httpx.Timeout(5, read=5)) as r:
            assert r.status_code == 200
            if then is not None:
                then()
            for event, ident, data in sse_events(r.iter_lines()):
                out.append((event, ident, json.loads(data)))
                if len(out) >= want:
                    break
    return out


def test_a_cursor_the_server_cannot_resume_gets_a_snapshot(api):
    gw = api.client()
    gw.post("/v1/events", json=usage("e1", "lite-agent"))  # a block: version 1 of this server start
    now = gw.post("/v1/decisions", json={}).json()
    epoch, version = now["epoch"], now["version"]
    assert now["cursor"] == f"{epoch}:{version}" and version >= 1
    for since in ("99", f"{epoch}:{version + 5}", f"other:{version}", "0", "garbage", f"{epoch}:-1"):
        (event, ident, body), = _events(api, {"since": since})
        assert event == "snapshot", since
        assert ident == body["cursor"] == f"{epoch}:{version}" and body["epoch"] == epoch
        assert [d["workflow"] for d in body["decisions"]] == ["lite-agent"]
    (event, _, _), = _events(api, headers={"Last-Event-ID": "7"})  # a bare number: no epoch, a snapshot
    assert event == "snapshot"
    # the current cursor resumes: the next change comes as a control event, id and data with the epoch
    (event, ident, body), = _events(api, {"since": f"{epoch}:{version}"},
                                    then=lambda: gw.post("/v1/events", json=usage("e2", "runaway",
                                                                                   input_tokens=10_000_000)))
    assert event == "control" and ident == f"{epoch}:{version + 1}"
    assert body["workflow"] == "runaway" and body["action"] == "block"
    assert body["epoch"] == epoch and body["version"] == version + 1
    # an older cursor of this epoch still in the log resumes with the changes after it
    events = _events(api, {"since": f"{epoch}:{version - 1}"}, want=2)
    assert [e[1] for e in events] == [f"{epoch}:{version}", f"{epoch}:{version + 1}"]


def test_open_streams_and_sdk_guards_resync_when_the_cache_is_replaced(api):
    cache = api.runtime.cache
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10)
        old_epoch = cache.epoch
        assert guard.controls_epoch == old_epoch
        replaced = [Control("x", State.block, reason="from the re-read topic", budget_id="b")]
        events = _events(api, {"since": cache.cursor}, then=lambda: cache.replace(replaced))
        (event, ident, body), = events
        assert event == "snapshot" and body["epoch"] == cache.epoch != old_epoch and ident == cache.cursor
        assert [(d["workflow"], d["action"]) for d in body["decisions"]] == [("x", "block")]
        t0 = time.monotonic()
        while guard.check("x").action != "block" and time.monotonic() - t0 < 2:
            time.sleep(0.005)
        assert guard.check("x").action == "block" and guard.controls_epoch == cache.epoch
    finally:
        guard.close()
