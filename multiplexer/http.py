"""HTTP plumbing shared by the gateway and the webhook endpoints.

``BodySizeLimit`` refuses bodies over 1 MB with 413 before any handler reads
them (Content-Length check, then the body is read up to the limit and replayed,
which also covers chunked bodies).
``error_response`` maps the twinbill error hierarchy to status codes once.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    BackendRejected,
    BackendUnavailable,
    InvalidInput,
    NotFound,
    RateLimited,
    TwinbillError,
    UnknownUser,
    UserHeld,
    UserMigrating,
)

MAX_BODY = 1024 * 1024


class Unauthorized(TwinbillError):
    """Missing, invalid or revoked bearer token (401 in the same error shape as the rest)."""

    kind = "unauthorized"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _too_large(scope, receive, send)
            return
        # Read the whole body first (at most max_body bytes), then replay it. Raising from
        # inside ``receive`` does not work: FastAPI turns any error while it reads the
        # body into "400 There was an error parsing the body".
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nothing to answer, never a partial body
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                await _too_large(scope, receive, send)
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


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        {"error": {"type": "body_too_large", "message": f"body over {MAX_BODY} bytes"}},
        status_code=413,
    )
    await response(scope, receive, send)


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def error_response(exc: TwinbillError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        status, kind = 401, "unauthorized"
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, UnknownUser):
        status, kind = 404, "unknown_user"
    elif isinstance(exc, UserMigrating):
        status, kind = 409, "user_migrating"
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, UserHeld):
        status, kind = 409, "user_read_only"
    elif isinstance(exc, InvalidInput):
        status, kind = 422, "invalid_input"
    elif isinstance(exc, NotFound):
        status, kind = 404, "not_found"
    elif isinstance(exc, RateLimited):
        status, kind = 503, "upstream_rate_limited"
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, BackendUnavailable):
        status, kind = 503, "upstream_unavailable"
        headers["Retry-After"] = "5"
    elif isinstance(exc, BackendRejected):
        status, kind = 422, "upstream_rejected"
    else:
        status, kind = 500, exc.kind
    return JSONResponse(error_body(kind, str(exc)), status_code=status, headers=headers)


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=str).encode()
