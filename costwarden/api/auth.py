"""Bearer tokens with roles. Only the sha256 of a token is stored; a token is never logged.

    gateway   report usage, read decisions, reserve/settle
    viewer    read budget status, controls, audit
    finance   read everything (FOCUS export, reconciliation), manage budgets
    admin     everything, including release/extend of controls and tokens
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from costwarden.errors import ConfigError
from costwarden.store import tokens

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


class TokenBook:
    """Hash -> principal, loaded from the store; an unknown hash reloads at most every `refresh_s`."""

    def __init__(self, loader, refresh_s: float = 5.0) -> None:
        self._loader = loader  # () -> list of rows (runs store queries: call it off the event loop)
        self._by_hash: dict[str, Principal] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self.refresh_s = refresh_s

    def load(self) -> None:
        rows = self._loader()
        by_hash = {r["token_sha256"]: Principal(r["name"], r["role"]) for r in rows if not r["revoked"]}
        with self._lock:
            self._by_hash = by_hash
            self._loaded_at = time.monotonic()

    def add(self, token: str, name: str, role: str) -> None:
        with self._lock:
            self._by_hash[token_hash(token)] = Principal(name, role)

    def lookup(self, token: str) -> Principal | None:
        # A dict lookup on the token's sha256: timing reveals nothing about the token itself.
        return self._by_hash.get(token_hash(token))

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.refresh_s
