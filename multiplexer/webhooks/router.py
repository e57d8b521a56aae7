"""HTTP entry points of both billing systems' webhooks (mounted by the admin app).

The context comes from ``request.app.state.mux`` (a ``MuxContext``), the same
convention as the gateway. The raw body is read with a hard 1 MB cap before any
parsing, because signatures are computed over the exact bytes. Storing is
synchronous database work, run in the thread pool; delivery is asynchronous.

Deliveries are enqueued through ``ctx.schedule_delivery`` (the composition root's
Celery app; Celery's thread-local "current app" is not visible in the server's
threads; ``MuxContext.enqueue_webhook`` may replace it in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from core.errors import ConfigurationError
from multiplexer.bootstrap import MuxContext
from multiplexer.webhooks import inbound
from multiplexer.webhooks.normalise import LEGACY, NEW

log = logging.getLogger(__name__)


def get_context(request: Request) -> MuxContext:
    ctx = getattr(request.app.state, "mux", None)
    if ctx is None:
        raise ConfigurationError("app.state.mux is not set: mount the router from the admin app")
    return ctx  # type: ignore[no-any-return]


def _enqueuer(ctx: MuxContext) -> Callable[[str], None]:
    return lambda user_id: ctx.schedule_delivery(user_id, 0.0)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise inbound.WebhookRejected(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise inbound.WebhookRejected(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _handle(request: Request, ctx: MuxContext, provider: str) -> JSONResponse:
    header = request.headers.get(inbound.SIGNATURE_HEADERS[provider])
    try:
        body = await _read_capped(request, inbound.MAX_BODY)
        outcome = await run_in_threadpool(
            inbound.receive,
            ctx.sessions,
            ctx.settings,
            provider,
            body,
            header,
            _enqueuer(ctx),
            ctx.on_legacy_event,
        )
    except inbound.WebhookRejected as exc:
        log.info("webhook %s refused: %s %s", provider, exc.status, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    except ClientDisconnect:  # the sender gave up mid-body: nothing stored, it will retry
        log.info("webhook %s: sender disconnected before the body was read", provider)
        return JSONResponse({"error": "client disconnected"}, status_code=400)
    except ConfigurationError as exc:
        log.error("webhook %s cannot be verified: %s", provider, exc.message)
        return JSONResponse({"error": "webhook endpoint not configured"}, status_code=503)
    answer: dict[str, Any] = {"status": outcome.disposition, "event_id": outcome.event_id}
    return JSONResponse(answer, status_code=200)


def build_router() -> APIRouter:
    """``POST /webhooks/legacy`` (Stripe-Signature) and ``POST /webhooks/new`` (HMAC)."""
    router = APIRouter(tags=["webhooks"])

    @router.post("/webhooks/legacy", summary="Stripe (legacy) webhook receiver")
    async def legacy_webhook(
        request: Request, ctx: MuxContext = Depends(get_context)
    ) -> JSONResponse:
        return await _handle(request, ctx, LEGACY)

    @router.post("/webhooks/new", summary="New billing service webhook receiver")
    async def new_webhook(request: Request, ctx: MuxContext = Depends(get_context)) -> JSONResponse:
        return await _handle(request, ctx, NEW)

    return router
