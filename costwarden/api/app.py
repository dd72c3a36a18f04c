"""The ASGI app factory: `create_app(runtime)`; routes live in routes_*.py, one module per domain.

Errors map once: CostwardenError -> its http_status (ControlError 409, InvalidEventError 422,
StoreError 503, ...), a bad body -> 400/413/415 with a reason; anything else is a bug (500,
logged without request headers, so never with a token).
"""
from __future__ import annotations

import logging
import time

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from costwarden.api.auth import Principal, TokenBook
from costwarden.store import tokens
from costwarden.api.deps import need
from costwarden.api.ingest import BodyError
from costwarden.api.owner import OWNER_HEADER
from costwarden.api.routes_decisions import fast_decision, send_json
from costwarden.api.throttle import ThrottleBook
from costwarden.errors import CostwardenError, InvalidEventError

log = logging.getLogger("costwarden.api")


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("costwarden_http_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram("costwarden_http_request_seconds", "HTTP request latency", ["route"], registry=r,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
        self.events = Counter("costwarden_api_events", "events received over HTTP", ["status"], registry=r)
        self.reservations = Counter("costwarden_reservations", "reservation outcomes", ["outcome"], registry=r)
        self.holds = Gauge("costwarden_reservation_holds", "open reservation holds", registry=r)
        self.backlog = Gauge("costwarden_pipeline_backlog", "jobs waiting for the pipeline thread", registry=r)
        self.controls_version = Gauge("costwarden_controls_version", "decision cache version", registry=r)
        self.token_loads = Counter("costwarden_api_token_loads", "API token book loads from the store "
                                   "(timer and unknown tokens, coalesced)", registry=r)
        route = "/v1/decisions/{workflow}"  # the fast path's children, resolved once
        self._decided = (self.requests.labels(route, "200").inc, self.latency.labels(route).observe)

    def decided(self, seconds: float) -> None:
        inc, observe = self._decided
        inc()
        observe(seconds)


class _Measure:
    """Pure ASGI middleware: request count and latency per route template (no body buffering)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_)
        finally:
            route = scope.get("route")  # its template without converters ({workflow}, not {workflow:path})
            path = getattr(route, "path_format", None) or getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


class _App(FastAPI):
    """FastAPI, with GET /v1/decisions/{workflow} answered before the middleware stack, routing and
    dependencies (routes_decisions.fast_decision: a token dict lookup and pre-encoded bytes);
    counted in the same metrics as every route."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/decisions/"):
            t0 = time.perf_counter()
            body = fast_decision(self, scope)
            if body is not None:
                await send_json(send, body)
                self.state.metrics.decided(time.perf_counter() - t0)
                return
        await super().__call__(scope, receive, send)


def _error(status: int, reason: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


def create_app(runtime, *, title: str = "costwarden") -> FastAPI:
    from costwarden.api import routes_decisions, routes_events, routes_reports, routes_sources, routes_status
    from costwarden.api.ui import console

    app = _App(title=title, version="1", description="costwarden gateway and status API. Every endpoint "
                  "needs `Authorization: Bearer <token>`; roles: gateway, viewer, finance, admin.")
    app.state.runtime = runtime
    app.state.metrics = metrics = Metrics()
    app.state.stopping = False
    app.state.throttles = ThrottleBook()  # throttle leases (throttle.py): on the event loop
    # tokens: loaded now, then reloaded on the store thread by the book's own timer and for unknown
    # tokens (coalesced): never one load per request (auth.py)
    app.state.tokens = TokenBook(lambda: tokens.load(runtime.store), refresh_s=runtime.settings.api.token_refresh_s,
                                 submit=runtime.thread.submit, on_load=metrics.token_loads.inc)
    runtime.thread.call(app.state.tokens.load)
    app.state.tokens.start()

    app.add_middleware(_Measure, metrics=metrics)

    @app.exception_handler(BodyError)
    async def _body(_: Request, e: BodyError):
        return _error(e.status, e.reason, e.detail)

    def owner(request: Request, headers: dict | None = None) -> dict | None:
        """Distributed reservations: the replica that answered (set by api/owner.py), on errors too."""
        o = getattr(request.state, "owner", None)
        return {**(headers or {}), OWNER_HEADER: o} if o else headers

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        reason = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                  501: "not_implemented"}.get(e.status_code, "http_error")
        return _error(e.status_code, reason, str(e.detail), owner(request, getattr(e, "headers", None)))

    @app.exception_handler(InvalidEventError)
    async def _invalid(request: Request, e: InvalidEventError):
        return _error(422, e.reason, e.detail, owner(request))

    @app.exception_handler(CostwardenError)
    async def _domain(request: Request, e: CostwardenError):
        # an error with a machine-readable `code` (a reservation refusal: budget_exceeded /
        # budget_reserved) answers with it, and with its retry headers (Retry-After, x-should-retry)
        return _error(e.http_status, getattr(e, "code", None) or type(e).__name__, str(e),
                      owner(request, getattr(e, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        errs = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()[:10]]
        return _error(422, "invalid_request", "; ".join(errs))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(e).__name__,
                  exc_info=(type(e), e, e.__traceback__))
        return _error(500, "internal_error", "an unexpected error; it has been logged")

    @app.get("/healthz", tags=["ops"], summary="liveness (no token needed)")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="readiness: the pipeline thread answers (no token needed)")
    async def readyz():
        try:
            await runtime.thread.run(lambda: None)
        except Exception:
            return _error(503, "not_ready", "the pipeline is not answering")
        if not runtime.ready:
            return _error(503, "not_ready", "shutting down")
        return {"status": "ready", "mode": runtime.mode, "controls_version": runtime.cache.version}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics (viewer, finance or admin token)",
             response_class=PlainTextResponse)
    async def prometheus(_: Principal = Depends(need("status:read"))):
        metrics.holds.set(len(runtime.reservations.holds) if runtime.reservations is not None else 0)
        metrics.backlog.set(runtime.thread.backlog)
        metrics.controls_version.set(runtime.cache.version)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(routes_events.router)
    app.include_router(routes_decisions.router)
    app.include_router(routes_status.router)
    app.include_router(routes_sources.router)
    app.include_router(routes_reports.router)
    app.include_router(console.router)  # the web console under /ui (costwarden/api/ui/README.md)

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, s in routes_events.event_schema_components().items():
                comps.setdefault(name, s)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
