"""Run the API with uvicorn, in the foreground (`costwarden serve`) or in a thread (tests, benchmarks).

With `api.decisions_port` set (or COSTWARDEN_API__DECISIONS_PORT), GET /v1/decisions/{workflow} is
also served by a process of its own on that port (decision_process.py), started and stopped with
the server: a decision there never waits for ingestion, the pipeline or a garbage collection here.
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import threading
import time

import uvicorn

log = logging.getLogger("costwarden.api")
_FROM_SETTINGS = object()


def _api_setting(app, name: str) -> str | None:
    """`api.<name>` of the app's runtime settings, else COSTWARDEN_API__<NAME> (read here while
    the settings have no such field)."""
    api = getattr(getattr(getattr(app.state, "runtime", None), "settings", None), "api", None)
    value = getattr(api, name, None)
    if value is None:
        value = os.environ.get(f"COSTWARDEN_API__{name.upper()}", "").strip() or None
    return None if value is None else str(value)


def decisions_port_of(app) -> int | None:
    """`api.decisions_port`; None: no decision process."""
    port = _api_setting(app, "decisions_port")
    return int(port) if port is not None else None


def decisions_priority_of(app) -> str:
    """`api.decisions_priority`: normal (default), high or realtime (decision_process.py)."""
    return _api_setting(app, "decisions_priority") or "normal"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def begin_stopping(app) -> None:
    """Tell the app it is shutting down: SSE streams end now instead of holding the shutdown for
    uvicorn's graceful timeout (and then being cancelled with a traceback)."""
    app.state.stopping = True
    cache = getattr(getattr(app.state, "runtime", None), "cache", None)
    if cache is not None and hasattr(cache, "end_streams"):
        cache.end_streams()


class _Server(uvicorn.Server):
    """uvicorn's server, which marks the app stopping as soon as its shutdown begins (a signal
    or `should_exit`), before it waits for open connections."""

    def __init__(self, config: uvicorn.Config, app) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets=None) -> None:
        begin_stopping(self._app)
        await super().shutdown(sockets=sockets)


class ApiServer:
    """`with ApiServer(app) as srv: httpx.get(srv.url + "/healthz")` -- uvicorn on a free port."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 decisions_port=_FROM_SETTINGS) -> None:
        """`decisions_port`: serve decisions from a process of their own on this port too (0: a
        free one); None: not; default: `api.decisions_port`."""
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        # uvicorn picks uvloop and httptools when installed (`loop`/`http` "auto"): both cut the
        # cost of a request (httptools ~3x less than h11's pure-Python parser)
        cfg = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, access_log=False,
                             timeout_graceful_shutdown=2, lifespan="off")
        self.server = _Server(cfg, app)
        self.thread: threading.Thread | None = None
        self.decisions_port = decisions_port_of(app) if decisions_port is _FROM_SETTINGS else decisions_port
        self.decisions = None  # the DecisionProcess, while running

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def decisions_url(self) -> str | None:
        """The decision process's URL (GET /v1/decisions/{workflow}), or None."""
        return self.decisions.url if self.decisions is not None else None

    def _start_decisions(self) -> None:
        if self.decisions_port is not None and self.decisions is None:
            from costwarden.api.decision_process import DecisionProcess

            self.decisions = DecisionProcess(self.app, self.host, self.decisions_port,
                                             priority=decisions_priority_of(self.app)).start()
            log.info("decisions also served by pid %s on %s", self.decisions.proc.pid, self.decisions.url)

    def _stop_decisions(self) -> None:
        if self.decisions is not None:
            self.decisions.stop()
            self.decisions = None

    @staticmethod
    def _settle_heap() -> None:
        """What the start made (modules, catalogue, budgets, app: ~130,000 objects) is never
        scanned again by the garbage collector. A full collection stops every thread, the event
        loop's included; it still walks what ingestion made since (measured 45 ms instead of 66 ms
        after a few thousand events): the decision process (decision_process.py) has none of it."""
        gc.collect()
        gc.freeze()

    def start(self, timeout: float = 20) -> "ApiServer":
        self._start_decisions()
        self.thread = threading.Thread(target=self.server.run, name="costwarden-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self._stop_decisions()
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        begin_stopping(self.app)  # ends the SSE streams
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self._stop_decisions()
        self._stop_tokens()

    def _stop_tokens(self) -> None:
        book = getattr(self.app.state, "tokens", None)
        if book is not None and hasattr(book, "stop"):
            book.stop()  # the token book's reload timer, before the runtime's store thread goes

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self, on_started=None) -> None:
        """Serve in this thread until SIGINT / SIGTERM; `on_started(self)` once it is listening."""
        if on_started is not None:
            def watch() -> None:
                while not self.server.started:
                    if self.server.should_exit:
                        return
                    time.sleep(0.02)
                on_started(self)
            threading.Thread(target=watch, name="costwarden-api-started", daemon=True).start()
        try:
            self._start_decisions()
            if self.decisions is not None:
                print(f"decisions also on {self.decisions.url} (GET /v1/decisions/{{workflow}}, a process of "
                      f"their own: pid {self.decisions.proc.pid}, priority {self.decisions.priority})",
                      file=sys.stderr, flush=True)
            self._settle_heap()  # (not in start(): a test process starts many servers)
            self.server.run()
        finally:
            begin_stopping(self.app)
            self._stop_decisions()
            self._stop_tokens()
