"""The CLI beside a running `costwarden serve`: go through its HTTP API, or say in one line why not.

chDB lets one process open a data directory, and `costwarden serve` keeps it open. So:

    serve        writes DATA_DIR/serve.json ({url, pid, host, started, data_dir}) once it listens,
                 and DATA_DIR/serve.token (an admin token of its own, mode 0600; `api.local_token`)
                 and removes both when it stops cleanly (a kill -9 leaves them: they are checked).
    a command    with an API path (controls, budgets status, report, ingest, tokens): when
                 serve.json names a live process (same host) whose URL answers /healthz, it goes
                 through the API with a token from COSTWARDEN_API_TOKEN, else `api.token`, else
                 DATA_DIR/serve.token (readable only by the user who runs the server, or root).
    any other    opening the chDB store first probes its lock (DATA_DIR/chdb/status, flock):
                 held -> one line naming the holder, exit 5 (StoreError). chDB's own lock error,
                 should it still happen, becomes one line too (`lock_error_line`).
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from costwarden.errors import ConfigError, CostwardenError, StoreError

ENV_TOKEN = "COSTWARDEN_API_TOKEN"
SERVE_FILE = "serve.json"
TOKEN_FILE = "serve.token"
HEALTH_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 120.0


@dataclass
class ServerInfo:
    url: str
    pid: int
    host: str
    started: str
    data_dir: str

    def describe(self) -> str:
        return f"costwarden serve (pid {self.pid}, {self.url})"


# --- written by `costwarden serve` -------------------------------------------------------------
def client_url(host: str, port: int) -> str:
    """The URL a local client uses for a server bound to host:port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_serve_files(data_dir: Path, url: str, token: str | None) -> ServerInfo:
    data_dir = Path(data_dir)
    info = ServerInfo(url, os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat(),
                      str(data_dir.resolve()))
    tok = data_dir / TOKEN_FILE
    if token is not None:  # first the token, then serve.json: whoever sees the server sees its token
        fd = os.open(tok, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # an older file kept its mode
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
    else:
        tok.unlink(missing_ok=True)
    tmp = data_dir / f".{SERVE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.replace(tmp, data_dir / SERVE_FILE)
    return info


def remove_serve_files(data_dir: Path) -> None:
    """Remove serve.json and serve.token if they are this process's."""
    data_dir = Path(data_dir)
    info = read_serve_file(data_dir)
    if info is not None and info.pid == os.getpid() and info.host == socket.gethostname():
        (data_dir / SERVE_FILE).unlink(missing_ok=True)
        (data_dir / TOKEN_FILE).unlink(missing_ok=True)


# --- read by the other commands ------------------------------------------------------------
def read_serve_file(data_dir: Path) -> ServerInfo | None:
    try:
        d = json.loads((Path(data_dir) / SERVE_FILE).read_text())
        return ServerInfo(str(d["url"]), int(d["pid"]), str(d.get("host", "")), str(d.get("started", "")),
                          str(d.get("data_dir", data_dir)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


def _answers(url: str) -> bool:
    import httpx

    try:
        r = httpx.get(url + "/healthz", timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def live_server(settings) -> ServerInfo | None:
    """The `costwarden serve` named by DATA_DIR/serve.json if it is running and answers; else None."""
    info = read_serve_file(settings.data_dir)
    if info is None:
        return None
    if info.host == socket.gethostname() and not _alive(info.pid):
        return None  # left by a server that was killed
    return info if _answers(info.url) else None


def _uses_chdb(settings) -> bool:
    url = settings.store.url.get_secret_value() if settings.store.url else ""
    return not url or url == "chdb"


def lock_holder(settings) -> str | None:
    """'pid N' (or 'another process') when another process holds DATA_DIR's chDB lock; else None."""
    if not _uses_chdb(settings):
        return None
    path = Path(settings.data_dir) / "chdb"
    status = path / "status"
    if not status.exists():
        return None
    try:
        from costwarden.store import chdb_store

        if str(path.resolve()) in chdb_store._SESSIONS:  # this process holds it: it may use it
            return None
        import fcntl
    except ImportError:  # no flock here (Windows): chDB's own error is caught (lock_error_line)
        return None
    try:
        fh = open(status, "rb")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = ""
            try:
                first = fh.read(200).decode("utf-8", "replace").splitlines()[0]  # "PID: 1234"
                pid = first.split(":", 1)[1].strip() if first.startswith("PID:") else ""
            except (IndexError, OSError):
                pass
            return f"pid {pid}" if pid.isdigit() else "another process"
        except OSError:
            return None
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def command_name() -> str:
    """`costwarden controls release`, from the running click context."""
    ctx = click.get_current_context(silent=True)
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["costwarden", *reversed(names)])


def guard_local(settings, what: str | None = None) -> None:
    """Before opening the store in this process: a one-line StoreError (exit 5) if another
    process holds the chDB data directory."""
    holder = lock_holder(settings)
    if holder is None:
        return
    what = what or command_name()
    data_dir = settings.data_dir
    info = read_serve_file(data_dir)
    if info is not None and _answers(info.url):
        if what == "costwarden serve":
            raise StoreError(f"{info.describe()} already holds {data_dir}: one server per data directory")
        raise StoreError(f"{info.describe()} holds {data_dir}: `{what}` has no API path; stop the server "
                         f"or use its API ({info.url}/docs)")
    raise StoreError(f"{holder} holds {data_dir}/chdb (chDB opens a data directory in one process only; "
                     f"no running `costwarden serve` answers there): wait for it to finish or stop it")


def _context_settings():
    ctx = click.get_current_context(silent=True)
    if ctx is None or (ctx.find_root().obj or {}).get("overrides") is None:
        return None
    from costwarden.cli import settings_from

    try:
        return settings_from(ctx.find_root())
    except CostwardenError:
        return None


def lock_error_line(e: BaseException) -> str | None:
    """The last resort, for chDB's own error when it cannot open a data directory another process
    holds: one line saying who holds it; None when `e` is not that (it is raised as it is)."""
    text = str(e)
    explicit = "Cannot lock file" in text or "Another server instance in same directory" in text
    if not explicit and "Error initializing EmbeddedServer" not in text:
        return None
    s = _context_settings()
    if s is None:
        return ("chDB could not open the data directory; if a `costwarden serve` or another costwarden command "
                "is running on it, stop it or use the server's API")
    holder = lock_holder(s)
    if holder is None and not explicit:
        return None  # chDB failed for another reason: shown as it is
    info = read_serve_file(s.data_dir)
    if info is not None and _answers(info.url):
        return f"{info.describe()} holds {s.data_dir}: `{command_name()}` could not open it; stop the server or use its API"
    return (f"{holder or 'another process'} holds {s.data_dir}/chdb (chDB opens a data directory in one process "
            f"only): wait for it to finish or stop it")


# --- the API client ------------------------------------------------------------------------
ROLE_HINT = {"admin": "an admin", "status": "a viewer, finance or admin", "usage": "a gateway or admin"}

_EXIT_BY_ERROR = {"ConfigError": 2, "InvalidEventError": 3, "FileError": 4, "BudgetFileError": 4,
                  "StoreError": 5, "DeliveryError": 6, "ControlError": 7, "ConnectorError": 8,
                  "ConnectorAuthError": 9, "NotOfferedError": 10}
_EXIT_BY_STATUS = {401: 2, 403: 2, 409: 7, 422: 3, 501: 10, 502: 6, 503: 5}


class RemoteError(CostwardenError):
    """An answer of the server, as one line with the exit code of the error it stands for."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def token_from(settings) -> tuple[str | None, str]:
    """(token, where it came from)."""
    t = os.environ.get(ENV_TOKEN, "").strip()
    if t:
        return t, ENV_TOKEN
    if settings.api.token is not None and settings.api.token.get_secret_value().strip():
        return settings.api.token.get_secret_value().strip(), "api.token"
    path = Path(settings.data_dir) / TOKEN_FILE
    try:
        t = path.read_text().strip()
    except OSError:
        return None, ""
    return (t, str(path)) if t else (None, "")


def _how_to_get(role: str, settings) -> str:
    need = ROLE_HINT.get(role, role)
    return (f"set {ENV_TOKEN} to {need} token (an admin makes one: `costwarden tokens create --role ROLE "
            f"--name YOU` with {ENV_TOKEN} set to theirs), or run this as the user that runs the server "
            f"(it reads {Path(settings.data_dir) / TOKEN_FILE})")


class Remote:
    """The running server's API, for one CLI command."""

    def __init__(self, info: ServerInfo, token: str, source: str, settings, command: str, role: str) -> None:
        self.info, self.token, self.source = info, token, source
        self.settings, self.command, self.role = settings, command, role

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw):
        import httpx

        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        try:
            r = httpx.request(method, self.info.url + path, headers=headers, timeout=CALL_TIMEOUT_S, **kw)
        except httpx.HTTPError as e:
            raise StoreError(f"{self.info.describe()} holds {self.settings.data_dir} but {method} {path} failed: "
                             f"{type(e).__name__}: {str(e)[:200]}") from None
        if r.status_code in ok:
            return r
        try:
            body = r.json()
            name, detail = str(body.get("error", "")), str(body.get("detail", ""))
        except (ValueError, AttributeError):
            name, detail = "", r.text[:300]
        detail = " ".join(detail.split())  # one line
        if r.status_code == 401:
            raise RemoteError(f"{self.info.describe()} refused the token from {self.source} (unknown or revoked): "
                              f"{_how_to_get(self.role, self.settings)}", 2)
        if r.status_code == 403:
            raise RemoteError(f"{self.info.describe()}: the token from {self.source} may not do `{self.command}` "
                              f"({detail}); it needs {ROLE_HINT.get(self.role, self.role)} token", 2)
        code = _EXIT_BY_ERROR.get(name) or _EXIT_BY_STATUS.get(r.status_code, 1)
        raise RemoteError(f"{self.info.describe()}: {detail or name or r.status_code}", code)


def api_for(ctx: click.Context, role: str) -> Remote | None:
    """The running server's API when one holds the data directory, else None (work locally).
    `role`: admin | status | usage (what the command needs; named in the messages)."""
    from costwarden.cli import settings_from

    root = ctx.find_root()
    s = settings_from(root)
    info = live_server(s)
    if info is None:
        return None
    command = command_name()
    token, source = token_from(s)
    if token is None:
        raise ConfigError(f"{info.describe()} holds {s.data_dir}: `{command}` goes through its API and needs "
                          f"{ROLE_HINT.get(role, role)} token: {_how_to_get(role, s)}")
    overrides = root.obj.get("overrides") or ()
    if any(o is not None for o in overrides[1:]):
        click.echo(f"note: through {info.describe()}: the server's own budgets, rules and catalogue apply "
                   f"(--budgets / --rules / --catalogue are not used)", err=True)
    return Remote(info, token, source, s, command, role)
