"""TEST ADAPTER, not a ClickHouse server: ClickHouse's HTTP interface served on top of chDB.

It implements just enough of the HTTP protocol for clickhouse-connect (and curl) so that
ClickHouseStore can be tested against ClickHouse's own engine on a machine without a ClickHouse
server: queries in the body or the `query` URL parameter, Native-format inserts in a chunked POST
body, `/ping`, the X-ClickHouse-* response headers and errors as HTTP 500 with `Code: N.
DB::Exception: ...` text. It serves loopback only, one query at a time, and never authenticates
unless started with --password. Use it from tests only.

chDB allows one open database path per process, so the adapter runs in its own process:

    python -m costwarden.testing.clickhouse_http --path DIR --port 0   # prints the port
    with serve_clickhouse_http(DIR) as url: ...                          # url: http://default:@127.0.0.1:PORT

Set COSTWARDEN_CH_HTTP_LOG=1 to log every request (time taken, method, path, params, statement) to stderr.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, quote, urlsplit

# URL parameters passed on to the statement as SETTINGS (everything else is accepted and ignored).
PASSED_SETTINGS = ("insert_deduplication_token", "insert_deduplicate",
                   "deduplicate_blocks_in_dependent_materialized_views", "async_insert", "wait_for_async_insert",
                   "date_time_input_format")
_FORMAT_RE = re.compile(rb"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT_RE = re.compile(rb"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL)
_CODE_RE = re.compile(r"Code:\s*(\d+)")
_SETTING_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:\-]*$")
_TEXT_FORMATS = ("TabSeparated", "TSV", "CSV", "JSON", "Pretty", "Values", "Vertical", "Markdown")


class Adapter:
    """One chDB session behind a lock; `handle` turns a request into (status, headers, body)."""

    def __init__(self, path: str, user: str = "default", password: str | None = None) -> None:
        from chdb import session as chs

        self.session = chs.Session(path)
        self.lock = threading.Lock()
        self.user, self.password = user, password
        self.tmpdir = tempfile.mkdtemp(prefix="ch-http-")
        self.timezone = self._run("SELECT timezone()", "TabSeparated").decode().strip() or "UTC"

    def _run(self, sql: str, fmt: str) -> bytes:
        res = self.session.query(sql, fmt)
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def authorised(self, headers) -> bool:
        if self.password is None:
            return True
        user, key = headers.get("X-ClickHouse-User"), headers.get("X-ClickHouse-Key")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        return (user or "default") == self.user and (key or "") == self.password

    def handle(self, params: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        query = params.get("query", "").encode()
        text = b"\n".join(part for part in (query, body) if part)
        settings = {k: params[k] for k in PASSED_SETTINGS if k in params}
        bad = [k for k, v in settings.items() if not _SETTING_VALUE_RE.match(v)]
        if bad:
            return _error(115, f"Bad value for setting {bad[0]}")
        ins = _INSERT_RE.match(text)
        with self.lock:
            try:
                if params.get("database"):
                    self._run(f"USE {_ident(params['database'])}", "TabSeparated")
                if ins:
                    fmt, out = ins.group(2).decode(), self._insert(ins, text[ins.end():], settings)
                else:
                    sql = text.decode().strip().rstrip(";")
                    if not sql:
                        return 200, {"Content-Type": "text/plain; charset=UTF-8"}, b"Ok.\n"
                    m = _FORMAT_RE.search(sql.encode())
                    fmt = m.group(1).decode() if m else params.get("default_format", "TabSeparated")
                    out = self._run(sql, fmt)
            except Exception as e:  # chDB raises its own error type; its text is ClickHouse's
                return _error(_code(str(e)), str(e))
            finally:
                if params.get("database"):
                    with contextlib.suppress(Exception):
                        self._run("USE default", "TabSeparated")
        ctype = "text/plain; charset=UTF-8" if fmt.startswith(_TEXT_FORMATS) else "application/octet-stream"
        return 200, {"Content-Type": ctype, "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": self.timezone,
                     "X-ClickHouse-Summary": _summary()}, out

    def _insert(self, ins: re.Match, data: bytes, settings: dict[str, str]) -> bytes:
        target, fmt = ins.group(1).decode(), ins.group(2).decode()
        clause = (" SETTINGS " + ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())) if settings else ""
        fd, tmp = tempfile.mkstemp(dir=self.tmpdir, suffix="." + fmt.lower())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self._run(f"INSERT INTO {target} FROM INFILE '{tmp}'{clause} FORMAT {fmt}", "TabSeparated")
        finally:
            os.unlink(tmp)


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Code: 81. DB::Exception: Database {name} does not exist. (UNKNOWN_DATABASE)")
    return name


def _literal(v: str) -> str:
    return v if re.fullmatch(r"-?\d+", v) else "'" + v + "'"


def _code(text: str) -> int:
    m = _CODE_RE.search(text)
    return int(m.group(1)) if m else 1001


def _summary(written: int = 0) -> str:
    keys = ("read_rows", "read_bytes", "written_rows", "written_bytes", "total_rows_to_read", "result_rows",
            "result_bytes", "elapsed_ns")
    return json.dumps({k: str(written if k == "written_rows" else 0) for k in keys})


def _error(code: int, text: str) -> tuple[int, dict[str, str], bytes]:
    if not text.startswith("Code:"):
        text = f"Code: {code}. DB::Exception: {text}"
    return 500, {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(code)}, \
        (text.rstrip() + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    adapter: Adapter
    verbose = False

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.verbose:
            sys.stderr.write("ch-http: " + fmt % args + "\n")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command == "POST" else b""
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and not url.query and not body):
            return self._reply(200, {"Content-Type": "text/plain; charset=UTF-8"}, b"Ok.\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if not self.adapter.authorised(self.headers):
            return self._reply(*_error(516, "default: Authentication failed: password is incorrect, or there "
                                            "is no user with such name. (AUTHENTICATION_FAILED)"))
        t = time.perf_counter()
        self._reply(*self.adapter.handle(params, body))
        if self.verbose:
            stmt = (params.get("query") or body[:300].split(b"\n", 1)[0].decode(errors="replace"))[:300]
            shown = {k: v for k, v in params.items() if k != "query"}
            sys.stderr.write(f"ch-http: {(time.perf_counter() - t) * 1000:.1f} ms {self.command} {url.path} "
                             f"{shown} {stmt!r} body={len(body)}B\n")

    do_GET = do_POST = do_HEAD = _serve


def serve(path: str, port: int = 0, host: str = "127.0.0.1", password: str | None = None,
          verbose: bool = False) -> ThreadingHTTPServer:
    """The server object (not yet serving): call serve_forever() on it."""
    handler = type("Handler", (_Handler,), {"adapter": Adapter(path, password=password), "verbose": verbose})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def serve_clickhouse_http(path: str | Path, password: str = "", timeout_s: float = 30) -> Iterator[str]:
    """Run the adapter in a child process on a free loopback port; yields its URL, stops it on exit."""
    Path(path).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "costwarden.testing.clickhouse_http", "--path", str(path), "--port", "0"]
    env = dict(os.environ)
    if password:
        env["COSTWARDEN_CH_HTTP_PASSWORD"] = password
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    try:
        port = _read_port(proc, timeout_s)
        yield f"http://default:{quote(password, safe='')}@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _read_port(proc: subprocess.Popen, timeout_s: float) -> int:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    line = box[0].strip() if box else ""
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"ClickHouse HTTP test adapter did not start (exit code {proc.poll()}, said {line!r})")
    return int(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="TEST ADAPTER: ClickHouse HTTP interface on chDB (tests only)")
    ap.add_argument("--path", required=True, help="chDB data directory")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port; the port is printed")
    args = ap.parse_args(argv)
    os.environ["TZ"] = "UTC"
    signal.signal(signal.SIGTERM, _interrupt)
    server = None
    try:
        server = serve(args.path, args.port, password=os.environ.get("COSTWARDEN_CH_HTTP_PASSWORD") or None,
                       verbose=os.environ.get("COSTWARDEN_CH_HTTP_LOG") == "1")
        print(server.server_address[1], flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.server_close()
            server.RequestHandlerClass.adapter.session.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
