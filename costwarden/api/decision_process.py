"""The decision process: GET /v1/decisions/{workflow} answered by a process of its own, on its own
port (`api.decisions_port`), fed by the API process.

Why a process. In the API process a decision shares one GIL and one event loop with everything
else: the event loop parses every POST /v1/events body (JSON + validation, milliseconds for a
batch), the pipeline thread prices and evaluates, and a full garbage collection of that heap stops
every thread for 40-110 ms. Under ingestion that is the tail of a decision (measured p99 19-31 ms
at 1,000 req/s with the fast path already in place, benchmarks/bench_gateway.py). This process
has one thread, one event loop and a heap of a few thousand objects: nothing to wait for.

    API process                                       decision process (`python -m` this module)
    DecisionCache.listen(workflow) ---+                 workflow -> (answer, valid until, answer after)
    TokenBook.listen(changed) --------+-> feeder thread --pipe--> sha256 -> role of every token
                                                        uvicorn: GET /v1/decisions/{wf}, /healthz

The feeder sends the whole state first (every control, every token hash and role), then each
change as it happens: the current answer of a changed workflow (already encoded, with its expiry
and the answer after it), a new token book (add / revoke / a reload that changed it), and a tick
after every token reload. Each message is the current state, so they are idempotent and a change
is never lost: the feeder reads the cache when it sends, after the change was made. A change
reaches this process within about a millisecond of the cache (one pipe write). Answers are the
API's own (same JSON, same 401 / 403 / 404 / 422 bodies); an unknown token waits for the API's
next token reload (as on the API port) before it is refused.

If the decision process dies, the feeder starts a new one (full state again); the API port keeps
answering decisions all along. When the API process ends, stdin closes and this process exits.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from costwarden.api.auth import PERMISSIONS, bearer_token, token_hash
from costwarden.api.decisions import decision_of, encode_decision
from costwarden.errors import ConfigError

log = logging.getLogger("costwarden.api")

PREFIX = "/v1/decisions/"
PRIORITIES = ("normal", "high", "realtime")  # api.decisions_priority (raise_priority)
ALLOW_CACHE_MAX = 100_000
_JSON = b"application/json"
_STOP = object()
_RESET = object()
_TICK = object()
_TOKENS = object()


# --- the API process side ---------------------------------------------------------------------
def _answer_msg(cache, workflow: str) -> dict:
    c = cache.control(workflow)
    if c is None:
        return {"t": "del", "wf": workflow}
    now = datetime.now(timezone.utc)
    msg = {"t": "set", "wf": workflow, "body": encode_decision(decision_of(c, workflow, now)).decode(),
           "until": None, "after": None}
    if c.expires_at is not None and c.active(now):
        msg["until"] = c.expires_at.timestamp()
        msg["after"] = encode_decision(decision_of(c, workflow, c.expires_at)).decode()
    return msg


class DecisionProcess:
    """Starts, feeds and stops the decision process of an app (ApiServer does, when
    `api.decisions_port` is set). `url` once started."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0,
                 priority: str = "normal") -> None:
        if priority not in PRIORITIES:
            raise ConfigError(f"api.decisions_priority {priority!r}: choose from {', '.join(PRIORITIES)}")
        self.app = app
        self.host = host
        self.port = port
        self.priority = priority
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._q: queue.Queue = queue.Queue()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def _cache(self):
        return self.app.state.runtime.cache

    @property
    def _book(self):
        return self.app.state.tokens

    def start(self) -> "DecisionProcess":
        self._cache.listen(self._on_control)  # before the first state is read: nothing is missed
        self._book.listen(self._on_tokens)
        try:
            self._spawn()
        except BaseException:
            self._unlisten()
            raise
        self._thread = threading.Thread(target=self._feed, name="costwarden-decisions-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped = True
        self._unlisten()
        self._q.put(_STOP)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._end(self.proc, timeout)

    def _unlisten(self) -> None:
        self._cache.unlisten(self._on_control)
        self._book.unlisten(self._on_tokens)

    # listeners: called under the cache's lock / from the token book; hand the news on, nothing else
    def _on_control(self, workflow: str | None) -> None:
        self._q.put(_RESET if workflow is None else workflow)

    def _on_tokens(self, changed: bool) -> None:
        self._q.put(_TOKENS if changed else _TICK)

    def _full_state(self) -> list[dict]:
        cache = self._cache
        msgs: list[dict] = [{"t": "reset"}]
        msgs += [_answer_msg(cache, c.workflow) for c in cache.controls()]
        msgs.append({"t": "tokens", "roles": self._book.roles()})
        return msgs

    @staticmethod
    def _write(proc: subprocess.Popen, msgs: list[dict]) -> None:
        proc.stdin.write(b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in msgs))
        proc.stdin.flush()

    def _spawn(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, "-m", "costwarden.api.decision_process", "--host", self.host,
                                 "--port", str(self.port), "--priority", self.priority], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env, start_new_session=True)  # Ctrl-C reaches the API; we end it
        try:
            self._write(proc, self._full_state() + [{"t": "synced"}])
            deadline = time.monotonic() + self.start_timeout_s
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    raise ConfigError(f"the decision process did not start listening on {self.host}:{self.port} "
                                       f"within {self.start_timeout_s:.0f} s")
                chunk = os.read(proc.stdout.fileno(), 256)
                if not chunk:
                    raise ConfigError(f"the decision process exited (code {proc.wait()}) before listening on "
                                       f"{self.host}:{self.port} (is the port in use?)")
                line += chunk
            word, _, port = line.decode().strip().partition(" ")
            if word != "listening" or not port.isdigit():
                raise ConfigError(f"the decision process said {line[:80]!r}")
            self.port = int(port)  # port 0: the one it was given
        except BaseException:
            self._end(proc, 1.0)
            raise
        self.proc = proc

    @staticmethod
    def _end(proc: subprocess.Popen | None, timeout: float) -> None:
        if proc is None:
            return
        try:
            proc.stdin.close()  # EOF: it stops serving and exits
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def _feed(self) -> None:
        while True:
            items = [self._q.get()]
            while True:  # everything waiting goes out in one write (each message is current state)
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if any(i is _STOP for i in items) or self._stopped:
                return
            if any(i is _RESET for i in items):
                msgs = self._full_state()
            else:
                cache = self._cache
                msgs = [_answer_msg(cache, wf) for wf in dict.fromkeys(i for i in items if isinstance(i, str))]
                if any(i is _TOKENS for i in items):
                    msgs.append({"t": "tokens", "roles": self._book.roles()})
                if any(i is _TICK for i in items):
                    msgs.append({"t": "tick"})
            try:
                self._write(self.proc, msgs)
            except (OSError, ValueError) as e:  # it died (BrokenPipeError) or was closed
                if self._stopped:
                    return
                log.error("the decision process on port %s is gone (%s); starting a new one "
                          "(the API port answers decisions meanwhile)", self.port, type(e).__name__)
                self._respawn()

    def _respawn(self) -> None:
        old, delay = self.proc, 0.2
        self._end(old, 0.5)
        while not self._stopped:
            try:
                self._spawn()  # with the full state
                self.restarts += 1
                return
            except Exception as e:
                log.error("starting the decision process failed: %s", e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


# --- the decision process ---------------------------------------------------------------------

def raise_priority(wanted: str) -> str:
    """The CPU priority the process asked for, as far as it is allowed (CAP_SYS_NICE or root);
    returns what it got. realtime: SCHED_FIFO at the lowest real-time priority (1): it runs as
    soon as a request arrives, ahead of every ordinary thread (ingestion, chDB's thread pool); the
    kernel still keeps 5 % of each CPU for the others (kernel.sched_rt_runtime_us). high: nice
    -10 (and its session's autogroup). A decision takes ~0.1 ms of CPU, so either costs the
    machine nothing but the wait."""
    if wanted == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            return "realtime"
        except (OSError, AttributeError) as e:
            print(f"costwarden decision process: no real-time priority ({e}); trying high", file=sys.stderr)
            wanted = "high"
    if wanted == "high":
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        except OSError as e:
            print(f"costwarden decision process: normal priority ({e})", file=sys.stderr)
            return "normal"
        try:  # a session of its own is an autogroup of its own: its weight counts, not the nice
            with open("/proc/self/autogroup", "w") as f:
                f.write("-10")
        except OSError:
            pass
        return "high"
    return "normal"


class DecisionApp:
    """The ASGI app of the decision process: GET /v1/decisions/{workflow}, GET /healthz."""

    DECIDERS = PERMISSIONS["decisions:read"]

    def __init__(self, unknown_wait_s: float = 2.0) -> None:
        self.priority = "normal"
        self.answers: dict[str, tuple[bytes, float | None, bytes | None]] = {}
        self.allow: dict[str, bytes] = {}  # answers for workflows without a control
        self.roles: dict[str, str] = {}
        self.unknown_wait_s = unknown_wait_s
        self._tokens_seen: asyncio.Event | None = None

    # state, from the API process
    def apply(self, m: dict) -> None:
        t = m["t"]
        if t == "set":
            after = m["after"]
            self.answers[m["wf"]] = (m["body"].encode(), m["until"], after.encode() if after is not None else None)
        elif t == "del":
            self.answers.pop(m["wf"], None)
        elif t == "reset":
            self.answers = {}
        elif t == "tokens":
            self.roles = m["roles"]
        if t in ("tokens", "tick") and self._tokens_seen is not None:
            self._tokens_seen.set()  # requests with an unknown token look again
            self._tokens_seen = None

    def answer(self, workflow: str) -> bytes:
        a = self.answers.get(workflow)
        if a is not None:
            body, until, after = a
            if until is None or time.time() < until:
                return body
            return after
        body = self.allow.get(workflow)
        if body is None:
            body = encode_decision(decision_of(None, workflow, datetime.now(timezone.utc)))
            if len(self.allow) < ALLOW_CACHE_MAX:
                self.allow[workflow] = body
        return body

    async def _next_tokens(self) -> None:
        if self._tokens_seen is None:
            self._tokens_seen = asyncio.Event()
        try:
            await asyncio.wait_for(self._tokens_seen.wait(), self.unknown_wait_s)
        except asyncio.TimeoutError:
            pass

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith(PREFIX):
            if scope["method"] != "GET":
                return await _error(send, 405, "method_not_allowed", "Method Not Allowed")
            wf = path[len(PREFIX):]
            if not wf:  # (a "/" is part of the name, as on the API's route)
                return await _error(send, 422, "invalid_request",
                                    "path.workflow: String should have at least 1 character")
            if len(wf) > 256:
                return await _error(send, 422, "invalid_request",
                                    "path.workflow: String should have at most 256 characters")
            token = bearer_token(scope["headers"])
            if token is None:
                return await _error(send, 401, "unauthorized", "a bearer token is required", _CHALLENGE)
            h = token_hash(token)
            role = self.roles.get(h)
            if role is None:  # perhaps created since: wait for the API's next token reload
                await self._next_tokens()
                role = self.roles.get(h)
            if role is None:
                return await _error(send, 401, "unauthorized", "unknown or revoked token", _CHALLENGE)
            if role not in self.DECIDERS:
                return await _error(send, 403, "forbidden", f"role {role!r} may not do this (needs decisions:read)")
            return await _send(send, 200, self.answer(wf))
        if path == "/healthz":
            return await _send(send, 200, json.dumps({"status": "ok", "priority": self.priority}).encode())
        return await _error(send, 404, "not_found", "Not Found")


_CHALLENGE = [(b"www-authenticate", b"Bearer")]


async def _send(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _error(send, status: int, reason: str, detail: str, headers: list | None = None) -> None:
    await _send(send, status, json.dumps({"error": reason, "detail": detail}, separators=(",", ":")).encode(),
                headers)


async def _serve(host: str, port: int, app: DecisionApp) -> None:
    import gc

    import uvicorn

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    while True:  # the whole state first: never answer from an empty book
        line = await reader.readline()
        if not line:
            return  # the API process went away before the state was complete
        m = json.loads(line)
        if m["t"] == "synced":
            break
        app.apply(m)
    gc.collect()
    gc.freeze()  # what exists now (the imports) is never scanned again
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="off", timeout_graceful_shutdown=1))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            return serving.result()  # it could not bind: uvicorn said why (stderr)
        await asyncio.sleep(0.01)
    sys.stdout.write(f"listening {server.servers[0].sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads our stdout any more: never block on it
    try:
        while True:
            line = await reader.readline()
            if not line:
                break  # the API process is gone (or stops us)
            app.apply(json.loads(line))
    finally:
        server.should_exit = True
        await serving


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m costwarden.api.decision_process",
                                 description="serve GET /v1/decisions/{workflow}; state on stdin (from the API)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--priority", choices=PRIORITIES, default="normal")
    a = ap.parse_args(argv)
    app = DecisionApp()
    app.priority = raise_priority(a.priority)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(a.host, a.port, app))


if __name__ == "__main__":
    main()
