"""The one ASGI app (``twinbill serve``): admin UI, application gateway, webhook endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from admin.access_log import AccessLog
from admin.bootstrap import App
from admin.health import readiness
from admin.metrics import DatabaseCollector
from core.errors import TwinbillError
from multiplexer.gateway import router as gateway_router
from multiplexer.http import BodySizeLimit, error_body, error_response
from multiplexer.webhooks.router import build_router as build_webhooks_router


def create_app(ctx: App) -> FastAPI:
    app = FastAPI(
        title="twinbill",
        version="0.1.0",
        description="Billing gateway, webhooks and admin of twinbill.",
    )
    app.state.mux = ctx
    app.add_middleware(BodySizeLimit)
    app.add_middleware(AccessLog)  # outermost: request id bound for everything below

    @app.exception_handler(TwinbillError)
    async def _twinbill_error(_request: Request, exc: TwinbillError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "request does not match the API", fields=fields),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        """Unknown paths and methods of the API answer in its one error body too (never
        ``{"detail": ...}``); the admin UI keeps its own pages."""
        if not request.url.path.startswith(("/api/", "/webhooks/")):
            return await http_exception_handler(request, exc)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            error_body(kinds.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    shared = CollectorRegistry(auto_describe=False)
    shared.register(DatabaseCollector(ctx.sessions))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """This process's counters plus the database gauges. No PII in any label."""
        body = generate_latest(REGISTRY) + generate_latest(shared)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, bool]:
        """Alive: the process answers. Touches no dependency."""
        return {"ok": True}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Ready: database, Redis (if configured) and both billing systems answer."""
        ok, checks = readiness(ctx)
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    app.include_router(gateway_router)
    app.include_router(build_webhooks_router())
    from admin.web import mount as mount_admin

    mount_admin(app, ctx)  # the admin UI; refuses to start without TWINBILL_SECRET_KEY
    return app
