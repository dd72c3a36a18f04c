"""Run the API with uvicorn, in the foreground (`costwarden serve`) or in a thread (tests, benchmarks)."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn


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

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        cfg = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, access_log=False,
                             timeout_graceful_shutdown=2, lifespan="off")
        self.server = _Server(cfg, app)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20) -> "ApiServer":
        self.thread = threading.Thread(target=self.server.run, name="costwarden-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        begin_stopping(self.app)  # ends the SSE streams
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
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
            self.server.run()
        finally:
            begin_stopping(self.app)
            self._stop_tokens()
