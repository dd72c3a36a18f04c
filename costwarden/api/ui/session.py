"""Sign in and out, the console's entry point and its two static files."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from costwarden.api.auth import Principal
from costwarden.api.ui.auth import (CONSOLE_PERMISSION, COOKIE, COOKIE_MAX_AGE_S, form_principal, read_form,
                                    same_origin)
from costwarden.api.ui.views import ConsoleRoute, render, static_file

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
HOME = "/ui/budgets"


def _next(path: str | None) -> str:
    """Where to go after signing in: a console page, nothing else (no open redirect)."""
    if path and path.startswith("/ui/") and not path.startswith("//") and "\\" not in path and ".." not in path:
        return path
    return HOME


@router.get("")
@router.get("/")
async def index() -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    token = str(form.get("token") or "").strip()
    nxt = _next(str(form.get("next") or ""))
    if not same_origin(request):
        return render(request, "login.html", 403, next=nxt, error="this form came from another site")
    who: Principal | None = None
    if token and len(token) <= 256:
        who = await request.app.state.tokens.lookup_fresh(token)  # a token made since the last load is found too
    if who is None:
        return render(request, "login.html", 401, next=nxt, error="unknown or revoked token")
    if not who.can(CONSOLE_PERMISSION):
        return render(request, "login.html", 403, next=nxt, error=f"a {who.role} token cannot open the console; "
                      "sign in with a viewer, finance or admin token")
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    await form_principal(request, CONSOLE_PERMISSION, await read_form(request))
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.get("/static/{name}")
async def static(name: str) -> Response:
    resp = static_file(name)
    if resp is None:
        raise HTTPException(404, "no such file")
    return resp
