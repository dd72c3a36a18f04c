"""Bearer tokens with roles. Only the sha256 of a token is stored; a token is never logged.

    gateway   report usage, read decisions, reserve/settle
    viewer    read budget status, controls, audit
    finance   read everything (FOCUS export, reconciliation), manage budgets
    admin     everything, including release/extend of controls and tokens
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone

from costwarden.errors import ConfigError
from costwarden.store import tokens

log = logging.getLogger("costwarden.api")
ROLES = ("gateway", "viewer", "finance", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "usage:write": frozenset({"gateway", "admin"}),
    "decisions:read": frozenset({"gateway", "finance", "admin"}),
    "status:read": frozenset({"viewer", "finance", "admin"}),
    "budgets:manage": frozenset({"finance", "admin"}),
    "finance:read": frozenset({"finance", "admin"}),
    "controls:manage": frozenset({"admin"}),
    "tokens:manage": frozenset({"admin"}),
}
TOKEN_PREFIX = "cw_"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def bearer_token(headers) -> str | None:
    """The bearer credential of raw ASGI headers ((name, value) byte pairs), or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, cred = value.decode("latin-1").partition(" ")
            return cred if scheme.lower() == "bearer" and cred else None
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_row(token: str, name: str, role: str, revoked: bool = False) -> dict:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ConfigError("a token needs a name (1-128 characters): it is the 'who' in the audit trail")
    return {"token_sha256": token_hash(token), "version": time.time_ns(), "name": name, "role": role,
            "created_at": datetime.now(timezone.utc), "revoked": int(revoked)}


def create_token(store, name: str, role: str) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored)."""
    token = new_token()
    tokens.add(store, token_row(token, name, role))
    return token


LOCAL_TOKEN_NAME = "serve-local-cli"  # `costwarden serve`'s own admin token (DATA_DIR/serve.token)


def local_token(store) -> str:
    """`costwarden serve` at start: revoke the local token of an earlier run (one that crashed
    kept its row), then create a fresh admin token for the CLI on this machine (cli/remote.py)."""
    for row in tokens.named(store, LOCAL_TOKEN_NAME):
        tokens.revoke(store, row)
    return create_token(store, LOCAL_TOKEN_NAME, "admin")


def revoke_token(store, token: str) -> None:
    for row in tokens.matching(store, token_hash(token)):
        tokens.revoke(store, row)


class TokenBook:
    """Hash -> principal, from the store, refreshed OFF the request path.

    A background thread reloads the book every `refresh_s` (so a token revoked or created through
    another replica, or in the store, takes effect here within refresh_s + one load) and at once
    when a request brings an unknown token. Loads run one at a time, through `submit` (the
    runtime's store thread: chDB is only touched there), and start at least `min_gap_s` apart: an
    unknown token waits for the next load that starts after it arrived, and every unknown token
    arriving meanwhile waits for that same load. So a burst of unknown tokens costs at most two
    loads per `min_gap_s` (never one per request), and unknown tokens sprayed at the API cost at
    most 1 / min_gap_s loads a second. Changes made through this replica (`add`, `remove`) apply
    at once and survive a load that started before them.
    """

    def __init__(self, loader, refresh_s: float = 5.0, submit=None, on_load=None, min_gap_s: float = 0.2) -> None:
        self._loader = loader  # () -> list of rows (runs store queries: call it off the event loop)
        self._submit = submit  # fn -> concurrent.futures.Future running fn on the store thread
        self._on_load = on_load
        self._by_hash: dict[str, Principal] = {}
        self._recent: dict[str, tuple[Principal | None, float]] = {}  # local changes: hash -> (who, when)
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._waiters: list[tuple] = []  # (event loop, future) of requests waiting for the next load
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.refresh_s = refresh_s
        self.min_gap_s = min(min_gap_s, refresh_s)
        self._last_start = float("-inf")
        self.loads = 0  # loads completed (tests and /metrics count them)
        self._listeners: list = []  # () -> None after the book changed (decision_process.py)

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        started = self._last_start = time.monotonic()
        rows = self._loader()
        by_hash = {r["token_sha256"]: Principal(r["name"], r["role"]) for r in rows if not r["revoked"]}
        with self._lock:
            for h, (who, at) in list(self._recent.items()):
                if at < started:  # the load saw it
                    del self._recent[h]
                elif who is None:
                    by_hash.pop(h, None)
                else:
                    by_hash[h] = who
            changed = by_hash != self._by_hash
            self._by_hash = by_hash
            self._loaded_at = started
            self.loads += 1
        if self._on_load is not None:
            self._on_load()
        self._notify(changed)

    def start(self) -> "TokenBook":
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._refresh, name="costwarden-tokens", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self._release(self._take_waiters())

    def _take_waiters(self) -> list[tuple]:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        return waiters

    @staticmethod
    def _release(waiters: list[tuple]) -> None:
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))
            except RuntimeError:  # that event loop is closed
                pass

    def _refresh(self) -> None:
        while True:
            self._wake.wait(self.refresh_s)
            if self._stopped:
                return
            gap = self._last_start + self.min_gap_s - time.monotonic()
            if gap > 0:  # asked again right after a load: the requests of the next gap share one
                time.sleep(gap)
            self._wake.clear()
            waiters = self._take_waiters()  # those who asked before this load starts
            try:
                if self._submit is None:
                    self.load()
                else:
                    fut = self._submit(self.load)
                    while not fut.done():
                        if self._stopped:
                            break
                        try:
                            fut.result(timeout=0.5)
                        except FutureTimeout:
                            continue
                    if fut.done():
                        fut.result()
            except Exception as e:  # keep the last book; tried again at the next tick
                log.warning("reloading API tokens failed: %s: %s", type(e).__name__, str(e)[:200])
            finally:
                self._release(waiters)

    # --- lookups and local changes ---------------------------------------------------------
    def add(self, token: str, name: str, role: str) -> None:
        who = Principal(name, role)
        with self._lock:
            h = token_hash(token)
            self._by_hash[h] = who
            self._recent[h] = (who, time.monotonic())
        self._notify(True)

    def remove(self, sha256: str) -> None:
        with self._lock:
            self._by_hash.pop(sha256, None)
            self._recent[sha256] = (None, time.monotonic())
        self._notify(True)

    # --- followers (the decision process answers with a copy of the book) ------------------
    def listen(self, fn) -> None:
        """`fn(changed)` after every load (changed: whether it changed the book), add and remove."""
        self._listeners.append(fn)

    def unlisten(self, fn) -> None:
        self._listeners = [f for f in self._listeners if f is not fn]

    def roles(self) -> dict[str, str]:
        """sha256 -> role of every active token (never the tokens themselves)."""
        with self._lock:
            return {h: p.role for h, p in self._by_hash.items()}

    def _notify(self, changed: bool) -> None:
        for fn in list(self._listeners):
            try:
                fn(changed)
            except Exception as e:  # a follower never breaks the book
                log.warning("token book follower failed: %s", type(e).__name__)

    def lookup(self, token: str) -> Principal | None:
        # A dict lookup on the token's sha256: timing reveals nothing about the token itself.
        return self._by_hash.get(token_hash(token))

    async def lookup_fresh(self, token: str, timeout: float = 10.0) -> Principal | None:
        """`lookup`, and for an unknown token once more after the next load (coalesced)."""
        who = self.lookup(token)
        if who is not None or self._stopped:
            return who
        self.start()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            self._waiters.append((loop, fut))
        self._wake.set()
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            log.warning("no token reload within %.0f s (the store thread is busy)", timeout)
        return self.lookup(token)

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.refresh_s
