"""The console's session: an API token in a cookie, checked by the API's own `need(permission)`.

    sign in      POST /ui/login with a token -> cookie `cw_console` (HttpOnly, SameSite=Strict,
                 Secure over https, Path=/ so the control stream gets it too)
    every page   the cookie's token goes through `deps.need(permission)`: the same token book,
                 the same roles and the same 401 / 403 as a bearer token on the JSON API
    every POST   same-origin (the Origin header, when the browser sends one) and a CSRF field:
                 sha256 of the session token (stateless, so any replica checks it; unknown to a
                 page on another site, which can neither read the HttpOnly cookie nor send it)

The stream of control changes (GET /v1/controls/stream) takes the cookie as well as a bearer
token (`bearer_or_console`): EventSource cannot set an Authorization header.
"""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

from costwarden.api.auth import PERMISSIONS, Principal
from costwarden.api.deps import _bearer, need

COOKIE = "cw_console"
COOKIE_MAX_AGE_S = 12 * 3600
CONSOLE_PERMISSION = "status:read"  # viewer, finance, admin: who may open the console at all
FORM_MAX_BYTES = 16 * 1024
_CHECKS = {p: need(p) for p in PERMISSIONS}


async def read_form(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded, what the console's forms send);
    the last value of a repeated field wins. Larger than FORM_MAX_BYTES: 413."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise HTTPException(413, "this form is too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class SignInNeeded(Exception):
    """No session, or its token is unknown or revoked: the page answers with the sign-in form."""


def csrf_token(token: str) -> str:
    return hashlib.sha256(b"costwarden-console-csrf\0" + token.encode("utf-8", "surrogatepass")).hexdigest()


async def principal(request: Request, permission: str) -> Principal:
    """The session's principal if its role has `permission`. No cookie or an unknown token:
    SignInNeeded; a role that may not: HTTPException 403 (the API's own message)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded()
    try:
        return await _CHECKS[permission](request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
    except HTTPException as e:
        if e.status_code == 401:
            raise SignInNeeded() from None
        raise


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin, or hides where it came from
    (`Origin: null`: a page with a no-referrer policy; the console's own pages send their origin).
    No Origin header at all (an older browser, a script): allowed, the CSRF field still has to match."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def form_principal(request: Request, permission: str, form) -> Principal:
    """A state-changing POST: the role first (a viewer's forged release is a 403 whatever it
    carries), then the origin and the CSRF field."""
    who = await principal(request, permission)
    sent = str(form.get("csrf") or "").encode("utf-8", "replace")
    if not same_origin(request) or not hmac.compare_digest(sent, csrf_token(request.cookies[COOKIE]).encode()):
        raise HTTPException(403, "this form is stale or came from another site; reload the page and try again")
    return who


def bearer_or_console(permission: str, console_permission: str = CONSOLE_PERMISSION):
    """A dependency: a bearer token needs `permission`; without an Authorization header, the
    console's cookie needs `console_permission` (the console's readers follow the control feed
    that GET /v1/controls shows them)."""
    bearer = _CHECKS[permission]

    async def check(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if cred is None and request.cookies.get(COOKIE):
            try:
                return await principal(request, console_permission)
            except SignInNeeded:
                raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}) from None
        return await bearer(request, cred)

    return check
