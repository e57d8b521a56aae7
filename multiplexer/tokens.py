"""Application bearer tokens. The secret is shown once; only its SHA-256 is stored.

SHA-256 (not argon2) is right here: tokens are 256-bit random secrets, so there
is nothing to brute-force, and every API call verifies one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.errors import InvalidInput
from multiplexer.models import ApiToken

PREFIX = "tbk_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, name: str, *, actor: str) -> str:
    name = name.strip()
    if not name or len(name) > 80:
        raise InvalidInput("token name must be 1-80 characters")
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise InvalidInput(f"a token named {name!r} already exists")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, prefix=secret[:10], token_hash=_hash(secret))
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.created",
        resource_type="api_token",
        resource_id=name,
        after={"prefix": token.prefix},
    )
    return secret


def revoke_token(session: Session, name: str, *, actor: str) -> None:
    token = session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
    if token is None or token.revoked_at is not None:
        raise InvalidInput(f"no active token named {name!r}")
    token.revoked_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="token.revoked",
        resource_type="api_token",
        resource_id=name,
        before={"prefix": token.prefix},
    )


def verify_token(session: Session, presented: str) -> ApiToken | None:
    if not presented.startswith(PREFIX):
        return None
    digest = _hash(presented)
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    token.last_used_at = utcnow()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).order_by(ApiToken.name)))
