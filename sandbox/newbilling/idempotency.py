"""Idempotent writes: one helper every write endpoint goes through.

The stored response is written in the *same transaction* as the change, so a
crash can never leave a change without its key (a retry would apply it twice) or
a key without its change. Only successful responses are stored: a 4xx writes
nothing, so the client may fix the body and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import models as m
from .clock import utcnow
from .errors import ApiError

WriteResult = tuple[int, dict[str, Any]]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def request_digest(method: str, path: str, raw_body: bytes) -> str:
    """Same key + *same body* replays: compare bodies as parsed JSON, not as bytes."""
    try:
        canonical = json.dumps(json.loads(raw_body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = raw_body.decode("utf-8", "replace")
    return digest(f"{method} {path}\n{canonical}")


def _lookup(session: Session, token: str, key: str) -> m.IdempotencyKey | None:
    return session.scalar(
        select(m.IdempotencyKey).where(
            m.IdempotencyKey.token_digest == digest(token), m.IdempotencyKey.key == key
        )
    )


def _replay(row: m.IdempotencyKey, req_digest: str, key: str) -> JSONResponse:
    if row.request_digest != req_digest:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was already used with a different request body or path; "
            "use a new key for a different request",
        )
    return JSONResponse(
        json.loads(row.response_body),
        status_code=row.status_code,
        headers={"Idempotent-Replayed": "true"},
    )


def run_write(
    sessions: sessionmaker[Session],
    *,
    token: str,
    key: str | None,
    req_digest: str,
    fn: Callable[[Session], WriteResult],
    on_commit: Callable[[], None] | None = None,
) -> JSONResponse:
    """Run ``fn`` in one transaction, honouring ``Idempotency-Key`` if given."""
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    try:
        with sessions() as session, session.begin():
            if key is not None:
                row = _lookup(session, token, key)
                if row is not None:
                    return _replay(row, req_digest, key)
            status, body = fn(session)
            if key is not None:
                session.add(
                    m.IdempotencyKey(
                        token_digest=digest(token),
                        key=key,
                        request_digest=req_digest,
                        status_code=status,
                        response_body=json.dumps(body),
                        created_at=utcnow(),
                    )
                )
    except (IntegrityError, ApiError) as exc:
        # A concurrent request with the same key may have committed while we ran: then
        # our failure (a unique violation, or "user already imported") is really a replay.
        if key is not None:
            with sessions() as session:
                row = _lookup(session, token, key)
                if row is not None:
                    return _replay(row, req_digest, key)
        if isinstance(exc, ApiError):
            raise
        raise ApiError(
            409, "conflict", "a concurrent request changed the same records; retry the request"
        ) from exc
    if on_commit is not None:
        on_commit()
    return JSONResponse(body, status_code=status)
