"""The composition root: ``create_app(settings)`` builds everything, import time builds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from . import routes_imports, routes_users
from .db import create_schema, make_engine, make_sessionmaker
from .errors import install_handlers
from .ratelimit import SlidingWindowLimiter
from .schemas_out import EventOut
from .service import BodyLimitMiddleware, Service
from .settings import Settings
from .webhooks import Dispatcher, Outbox

API_VERSION = "1.0.0"


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app. Tables are created and the webhook thread started on lifespan start."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    svc = Service(
        settings=settings,
        engine=engine,
        sessions=sessions,
        outbox=Outbox(enabled=bool(settings.webhook_url)),
        limiter=SlidingWindowLimiter(settings.rate_limit) if settings.rate_limit > 0 else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        create_schema(engine)
        dispatcher = Dispatcher(settings, sessions, svc.outbox) if settings.webhook_url else None
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            engine.dispose()

    app = FastAPI(
        title="newbilling",
        version=API_VERSION,
        description=(
            "Reference in-house billing service for twinbill. Money is integer minor units "
            "with an uppercase ISO 4217 currency; timestamps are ISO-8601 UTC with 'Z'. "
            "See docs/contract/newbilling.md."
        ),
        lifespan=lifespan,
    )
    app.state.service = svc
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.get("/healthz", tags=["health"], summary="Liveness (unauthenticated)")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.webhooks.post("event", summary="Every state change, POSTed to NEWBILLING_WEBHOOK_URL")
    def event(body: EventOut) -> None:
        """Signed with ``Newbilling-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
        f"{t}.{raw_body}")>``. Delivered in order per user, retried with exponential
        backoff; answer 2xx to acknowledge. ``cause`` is ``import`` (with ``import_id``)
        for events the migration itself caused.
        """

    app.include_router(routes_imports.router)
    app.include_router(routes_users.router)
    return app
