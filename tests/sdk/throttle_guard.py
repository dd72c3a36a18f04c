"""One gateway replica for tests/sdk/test_sdk_throttle_lease.py, run as a process of its own:

    python throttle_guard.py URL TOKEN WORKFLOW START_UNIX SECONDS THREADS

A Costwarden guard whose THREADS threads call `check(WORKFLOW)` every millisecond from START_UNIX
for SECONDS; prints one JSON line: calls admitted, checks made, the window and the guard's stats.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from costwarden.sdk import Costwarden


def main() -> None:
    url, token, wf, start, seconds, threads = sys.argv[1:7]
    start, seconds, threads = float(start), float(seconds), int(threads)
    guard = Costwarden(url, token)
    assert guard.wait_ready(30), "decisions not loaded"  # the snapshot has the throttle (nothing leased yet)
    admitted, checks = [0] * threads, [0] * threads
    time.sleep(max(0.0, start - time.time()))
    t0 = time.time()
    end = start + seconds

    def hammer(k: int) -> None:
        while time.time() < end:
            checks[k] += 1
            if guard.check(wf).allowed:
                admitted[k] += 1
            time.sleep(0.001)

    ts = [threading.Thread(target=hammer, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"admitted": sum(admitted), "checks": sum(checks), "start": t0, "end": time.time(),
                      "stats": guard.stats}), flush=True)
    guard.close(timeout=1)


if __name__ == "__main__":
    main()
