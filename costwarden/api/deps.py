"""Request dependencies: the runtime, and `need(permission)` for bearer-token auth (401 / 403)."""
from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from costwarden.api.auth import Principal

_bearer = HTTPBearer(auto_error=False, description="a costwarden API token (`costwarden tokens create`)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def runtime(request: Request):
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, which put a thread
    # hand-off (and a wait for the GIL, up to sys.getswitchinterval()) on every request
    return request.app.state.runtime


def need(permission: str):
    async def check(request: Request,
                    cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
            raise HTTPException(401, "a bearer token is required", headers=_CHALLENGE)
        book = request.app.state.tokens
        who = book.lookup(cred.credentials)
        if who is None:  # perhaps created elsewhere since the last load: wait for the next (shared) one
            who = await book.lookup_fresh(cred.credentials)
        if who is None:
            raise HTTPException(401, "unknown or revoked token", headers=_CHALLENGE)
        if not who.can(permission):
            raise HTTPException(403, f"role {who.role!r} may not do this (needs {permission})")
        return who

    return check
