"""The guard's lifecycle as a user sees it: the constructor never waits for the network, close()
and a server's stop are quick with control streams open, and `stats` forgets an error once the
API answers again."""
from __future__ import annotations

import threading
import time

from sdk_helpers import free_port, usage, wait_for
from costwarden.sdk import Costwarden


def _stream_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "costwarden-sdk-stream" and t.is_alive()}


def test_the_constructor_never_blocks_on_the_network():
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused
    unroutable = "http://10.255.255.1:8787"      # no answer at all (a connect would time out)
    for url in (closed, unroutable, "https://10.255.255.1:8787"):
        t0 = time.monotonic()
        guard = Costwarden(url, "cw_x", fail_open={"chat": True})
        took = time.monotonic() - t0
        try:
            assert took < 0.2, f"Costwarden({url!r}) took {took:.3f}s"
            # decisions are there at once, from the fail policy, until the API answers
            d = guard.check("batch")
            assert not d.allowed and d.source == "fail-closed"
            assert guard.check("chat").source == "fail-open"
            assert not guard.ready
        finally:
            t1 = time.monotonic()
            guard.close(timeout=0.1)
            assert time.monotonic() - t1 < 1.0


def test_wait_ready_is_the_opt_in_wait(sdk_api):
    api = sdk_api()
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10) and guard.ready and guard.check("rag").source == "cache"
    finally:
        guard.close()
    down = Costwarden(f"http://127.0.0.1:{free_port()}", "cw_x")
    try:
        t0 = time.monotonic()
        assert down.wait_ready(0.3) is False
        assert 0.25 <= time.monotonic() - t0 < 1.0
    finally:
        down.close(timeout=0.1)


def test_close_with_an_open_stream_takes_well_under_a_second(sdk_api):
    api = sdk_api()
    before = _stream_threads()
    guards = [Costwarden(api.url, api.tokens["gateway"]) for _ in range(3)]
    ours = _stream_threads() - before
    assert len(ours) == 3
    assert all(wait_for(lambda g=g: g.stats["stream_connected"], 10) for g in guards)
    guards[0].report(usage("close-1", "rag"))
    times = []
    for g in guards:
        t0 = time.monotonic()
        assert g.close() is True  # the pending report was delivered first
        times.append(time.monotonic() - t0)
    assert max(times) < 1.0, times
    assert guards[0].stats["sent"] == 1
    assert not any(t.is_alive() for t in ours)  # their stream threads ended with close(), none left behind
    print(f"\nclose() with an open stream: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")


def test_close_is_quick_while_reports_are_being_retried():
    guard = Costwarden(f"http://127.0.0.1:{free_port()}", "cw_x")
    guard.report(usage("kept", "rag"))
    assert wait_for(lambda: guard.stats["last_error"] is not None, 5)  # retrying with backoff
    time.sleep(0.5)
    t0 = time.monotonic()
    assert guard.close(timeout=0.2) is False  # says that it could not deliver
    assert time.monotonic() - t0 < 1.0


def test_server_stop_with_open_streams_takes_under_a_second(sdk_api):
    api = sdk_api()
    guards = [Costwarden(api.url, api.tokens["gateway"]) for _ in range(3)]
    try:
        assert all(wait_for(lambda g=g: g.stats["stream_connected"], 10) for g in guards)
        t0 = time.monotonic()
        api.server.stop()
        took = time.monotonic() - t0
        api.server = None
        assert took < 1.0, f"ApiServer.stop() took {took:.2f}s with 3 SDK streams open"
        assert all(wait_for(lambda g=g: not g.stats["stream_connected"], 1.0) for g in guards)
        print(f"\nserver stop with 3 SDK streams open: {took * 1000:.0f} ms")
    finally:
        for g in guards:
            g.close(timeout=0.1)


def test_last_error_is_cleared_once_the_api_answers_again(sdk_api):
    port = free_port()
    api = sdk_api(port=port, start=False)  # nothing listens on the port yet
    guard = Costwarden(api.url, api.tokens["gateway"], flush_interval_s=0.05)
    try:
        assert guard.report(usage("while-down", "rag"))
        assert wait_for(lambda: guard.stats["last_error"] is not None and guard.stats["stream_error"] is not None, 5)
        assert guard.stats["last_error"] == "ConnectError" and guard.pending == 1
        api.start()
        assert wait_for(lambda: guard.stats["sent"] == 1, 10)
        s = guard.stats
        assert s["last_error"] is None and s["pending"] == 0
        assert wait_for(lambda: guard.stats["stream_connected"], 5) and guard.stats["stream_error"] is None
        assert guard.ready
    finally:
        guard.close(timeout=1)
