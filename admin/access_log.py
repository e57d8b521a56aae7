"""Request ids and the access log of ``twinbill serve`` (uvicorn's own is off).

uvicorn's access log printed the full request line — query strings with tokens,
emails in paths — as plain text among JSON lines. This ASGI middleware replaces it:
one structlog event per request with method, path (never the query string; emails
and card-shaped numbers masked by the redaction processor), status and duration,
and a request id bound in the logging context for every line logged while serving
the request (``X-Request-ID`` from the client when it is a plain token, else new),
echoed in the response.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog

from core.observability import redact

log = structlog.get_logger("twinbill.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key.lower() == b"x-request-id":
            candidate = value.decode("latin-1")
            if REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class AccessLog:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope.get("headers") or [])
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                if path not in ("/healthz", "/readyz", "/metrics"):  # probes: no noise
                    log.info(
                        "request",
                        method=scope.get("method"),
                        path=redact(path),  # the query string is never logged
                        status=status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    )
