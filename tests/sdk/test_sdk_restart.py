"""Controls never go backwards for a connected SDK, against a real `costwarden serve` subprocess that
is restarted on the same data dir and port.

Before the restart the controls change more often than there are workflows with a control, so the
restarted server counts from below the version the SDK holds (7 -> 5 in issue 10): an SDK that
resumed by number alone would skip every change up to its old version. The stream sends a snapshot
for a cursor of another server start, and a new block and a release after the restart each reach
the SDK within 1 s. Stopping the server with SDK streams open takes <= 1 s and logs no traceback."""
from __future__ import annotations

import time

import httpx

from sdk_helpers import ServeProcess, usage, wait_for
from costwarden.sdk import Costwarden
from costwarden.testing.sse import sse_events


def _sse_events(client: httpx.Client, params: dict | None = None, headers: dict | None = None,
                want: int = 1) -> list[tuple[str, str, str]]:
    """The first `want` (event, id, data) of GET /v1/controls/stream (heartbeats skipped)."""
    out = []
    with client.stream("GET", "/v1/controls/stream", params=params or {}, headers=headers or {},
                       timeout=httpx.Timeout(5, read=5)) as r:
        assert r.status_code == 200
        for ev in sse_events(r.iter_lines()):
            out.append(ev)
            if len(out) >= want:
                break
    return out


def test_a_connected_sdk_sees_a_block_and_a_release_within_1s_after_the_server_restarted(tmp_path):
    srv = ServeProcess(tmp_path)
    gw_token, admin_token = srv.token("gateway"), srv.token("admin")
    srv.start()
    gw = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {gw_token}"}, timeout=10)
    admin = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    guard = Costwarden(srv.url, gw_token, wait_ready_s=0)
    try:
        assert wait_for(lambda: guard.ready, 10)
        # --- before the restart: 4 control changes on 2 workflows
        assert gw.post("/v1/events", json=usage("pre-1", "lite-agent")).status_code == 200        # block
        assert admin.post("/v1/controls/lite-agent/release", json={"reason": "test"}).status_code == 200
        assert gw.post("/v1/events", json=usage("pre-2", "runaway", input_tokens=4_000_000)).status_code == 200
        assert gw.post("/v1/events", json=usage("pre-3", "runaway", input_tokens=4_000_000)).status_code == 200
        assert wait_for(lambda: guard.check("runaway").action == "block")
        assert guard.check("lite-agent").allowed
        before = guard.controls_version
        epoch_before = guard.controls_epoch
        assert before >= 4

        # --- restart: same data dir, same port; the SDK stream is open while the server stops
        stop_s = srv.stop()
        assert stop_s <= 1.0, f"costwarden serve took {stop_s:.2f}s to stop with an SDK stream open"
        assert "Traceback" not in srv.log_text()
        assert wait_for(lambda: not guard.stats["stream_connected"], 2)
        srv.start()
        restarted = httpx.get(f"{srv.url}/readyz").json()["controls_version"]
        assert restarted < before  # the situation of the bug: the new server counts from below
        assert wait_for(lambda: guard.stats["stream_connected"] and guard.controls_epoch != epoch_before, 5)
        assert guard.check("runaway").action == "block"  # the snapshot of the new server start

        # a raw client resuming with a version from before the restart (or a bare number that the
        # server never reached) gets a snapshot, not silence
        for params in ({"since": f"{epoch_before}:{before}"}, {"since": "99"}, {"since": str(before)}):
            (event, ident, data), = _sse_events(gw, params)
            assert event == "snapshot" and ident.endswith(f":{restarted}"), (params, event, ident)
            assert '"runaway"' in data
        (event, _, _), = _sse_events(gw, headers={"Last-Event-ID": f"{epoch_before}:{before}"})
        assert event == "snapshot"

        # --- a new block after the restart reaches the SDK within 1 s of the crossing event's POST
        t0 = time.monotonic()
        r = gw.post("/v1/events", json=usage("post-1", "late-agent"))
        assert r.status_code == 200 and r.json()["control_changes"] == [{"workflow": "late-agent", "state": "block"}]
        assert wait_for(lambda: guard.check("late-agent").action == "block", 1.0)
        block_s = time.monotonic() - t0
        # --- and so do releases: of that block, and of the block from before the restart
        t1 = time.monotonic()
        assert admin.post("/v1/controls/late-agent/release", json={"reason": "ok"}).status_code == 200
        assert wait_for(lambda: guard.check("late-agent").allowed, 1.0)
        release_s = time.monotonic() - t1
        t2 = time.monotonic()
        assert admin.post("/v1/controls/runaway/release", json={"reason": "ok"}).status_code == 200
        assert wait_for(lambda: guard.check("runaway").allowed, 1.0)
        release_old_s = time.monotonic() - t2
        print(f"\nafter restart: block seen in {block_s * 1000:.0f} ms, release in {release_s * 1000:.0f} ms, "
              f"release of a pre-restart block in {release_old_s * 1000:.0f} ms; stop took {stop_s:.2f} s")

        # --- shutdown with open streams (the SDK's and a raw one) <= 1 s, no traceback
        t_close = time.monotonic()
        assert guard.close(timeout=1)
        assert time.monotonic() - t_close < 1.0
        guard = Costwarden(srv.url, gw_token, wait_ready_s=0)
        assert wait_for(lambda: guard.stats["stream_connected"], 5)
        stop_s = srv.stop()
        assert stop_s <= 1.0, f"costwarden serve took {stop_s:.2f}s to stop with an SDK stream open"
        assert "Traceback" not in srv.log_text()
    finally:
        guard.close(timeout=0.5)
        gw.close()
        admin.close()
        srv.kill()
