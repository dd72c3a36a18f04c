"""Rendering: the Jinja2 environment (autoescaped), the filters people read money and time through
(costwarden/human.py), and `ConsoleRoute`, which gives every console response its security
headers, a `Server-Timing` header (the server's time on the request) and the console's answers
to a missing session (the sign-in form), a role that may not (403 page) and a domain error."""
from __future__ import annotations

import time
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from costwarden import human
from costwarden.api.ui.auth import COOKIE, SignInNeeded, csrf_token
from costwarden.errors import CostwardenError

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
PAGES = [("budgets", "Budgets"), ("spend", "Spend"), ("controls", "Controls"), ("alerts", "Alerts"),
         ("sources", "Sources")]


def _exact(v) -> str:
    """The exact value behind a formatted cell (`data-value`), as the JSON API writes it."""
    return "" if v is None else str(v)


env = Environment(loader=PackageLoader("costwarden.api.ui", "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(usd=human.usd, usd_nanos=human.usd_nanos, pct=human.pct, when=human.when, count=human.count,
                   label=human.label, exact=_exact, unit_usd=lambda v: human.usd(v, unit=True))
env.filters["plain"] = lambda d: f"{Decimal(d).normalize():f}"  # 600, 0.5: never 6E+2
env.globals["PAGES"] = PAGES


def render(request: Request, template: str, status: int = 200, **ctx) -> HTMLResponse:
    token = request.cookies.get(COOKIE)
    ctx.setdefault("csrf", csrf_token(token) if token and ctx.get("who") is not None else "")
    ctx.setdefault("page", "")
    return HTMLResponse(env.get_template(template).render(request=request, **ctx), status_code=status)


def _fragment(request: Request) -> bool:
    return request.headers.get("x-console-fragment") == "1"


def _answer(request: Request, e: Exception) -> Response:
    """The page for a request that failed: sign in (and come back), or what went wrong."""
    page = request.url.path.split("/")[2] if request.url.path.count("/") >= 2 else ""
    back = f"/ui/{page}" if page in dict(PAGES) else "/ui/budgets"
    if isinstance(e, SignInNeeded):
        if _fragment(request):
            return PlainTextResponse("sign in again", status_code=401)
        nxt = request.url.path if request.method == "GET" else back  # a form: back to its page
        return RedirectResponse(f"/ui/login?next={quote(nxt)}", status_code=303)
    if isinstance(e, HTTPException):
        status, detail = e.status_code, str(e.detail)
    else:
        status, detail = getattr(e, "http_status", 500), str(e)
    if _fragment(request):
        return PlainTextResponse(detail, status_code=status)
    return render(request, "error.html", status, code=status, detail=detail, back=back, page=page)


class ConsoleRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def console(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                response = await handler(request)
            except (SignInNeeded, HTTPException, CostwardenError) as e:
                response = _answer(request, e)
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
            return response

        return console


@lru_cache(maxsize=None)
def _static_body(name: str) -> bytes:
    return resources.files("costwarden.api.ui").joinpath("static", name).read_bytes()


def static_file(name: str) -> Response | None:
    media = STATIC.get(name)
    if media is None:
        return None
    return Response(_static_body(name), media_type=media, headers={"Cache-Control": "no-cache"})
