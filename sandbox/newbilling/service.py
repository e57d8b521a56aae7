"""Per-app runtime state and the request plumbing shared by every route.

Everything here is built by :func:`sandbox.newbilling.app.create_app` from
``Settings``; routes reach it through ``request.app.state.service``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .idempotency import WriteResult, digest, request_digest, run_write
from .ratelimit import SlidingWindowLimiter
from .settings import Settings
from .webhooks import Outbox

T = TypeVar("T")


@dataclass
class Service:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    outbox: Outbox
    limiter: SlidingWindowLimiter | None


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="One of NEWBILLING_API_TOKENS")


def authenticate(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Bearer token check, then the optional per-token rate limit (429 + Retry-After)."""
    svc = service(request)
    token = creds.credentials if creds is not None else ""
    valid = bool(token) and any(
        hmac.compare_digest(token.encode(), t.encode()) for t in svc.settings.api_tokens
    )
    if not valid:
        raise ApiError(
            401,
            "unauthenticated",
            "missing or invalid bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if svc.limiter is not None:
        wait = svc.limiter.hit(digest(token))
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {svc.settings.rate_limit:g} requests/second exceeded; "
                f"retry after {wait}s",
                headers={"Retry-After": str(wait)},
            )
    return token


Token = Annotated[str, Depends(authenticate)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key + same body replays the stored response; "
        "same key + different body is 409 idempotency_key_reused.",
    ),
]


async def write(
    request: Request, token: str, key: str | None, fn: Callable[[Session], WriteResult]
) -> JSONResponse:
    """Run a write in a worker thread, in one transaction, behind the idempotency check."""
    svc = service(request)
    req_digest = request_digest(request.method, request.url.path, await request.body())
    return await run_in_threadpool(
        run_write,
        svc.sessions,
        token=token,
        key=key,
        req_digest=req_digest,
        fn=fn,
        on_commit=svc.outbox.notify,
    )


async def read(request: Request, fn: Callable[[Session], T]) -> T:
    svc = service(request)

    def _run() -> T:
        with svc.sessions() as session, session.begin():
            return fn(session)

    return await run_in_threadpool(_run)


class BodyLimitMiddleware:
    """413 for bodies over the limit, checked before any parsing (also for chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(
            413,
            "payload_too_large",
            f"request body exceeds {self.max_bytes} bytes; split the import",
        )
        await JSONResponse(error.body(), status_code=413)(scope, receive, send)
