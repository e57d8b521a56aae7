"""Operator accounts, argon2 passwords, server-side sessions, sign-in throttling, CSRF.

The cookie carries a random token; the ``admin_sessions`` row is keyed by an
HMAC of it under ``TWINBILL_SECRET_KEY``, so neither a database dump nor a
leaked log line can be replayed as a cookie. Every session has an absolute
expiry (``TWINBILL_SESSION_MAX_AGE``) and its own CSRF token, which every form
posts back; a token from another (or an ended) session is stale.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.orm import Session, sessionmaker

from admin.models import ROLES, AdminSession, AdminUser, LoginAttempt
from core import audit
from core.db import transaction, utcnow
from core.errors import InvalidInput

log = logging.getLogger("twinbill.admin")

_hasher = PasswordHasher()
#: Verified against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("twinbill-no-such-user")

MIN_PASSWORD = 12
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 20


def mask_email(email: str | None) -> str:
    """``alice@example.test`` -> ``a***@example.test`` (what logs may show)."""
    if not email or "@" not in email:
        return "***"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def create_user(
    sessions: sessionmaker[Session], email: str, role: str, password: str, *, actor: str
) -> AdminUser:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise InvalidInput(f"{email!r} is not an email address")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    hashed = hash_password(password)
    with transaction(sessions) as session:
        if session.scalar(sa.select(AdminUser).where(AdminUser.email == email)) is not None:
            raise InvalidInput(f"an admin user {mask_email(email)} already exists")
        user = AdminUser(email=email, password_hash=hashed, role=role)
        session.add(user)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="admin.user_created",
            resource_type="admin_user",
            resource_id=email,
            after={"role": role},
        )
    log.info("admin user %s created with role %s", mask_email(email), role)
    return user


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in operator, as the views see them."""

    user_id: int
    email: str
    role: str
    session_id: str
    csrf_token: str
    expires_at: datetime
    has_flash: bool = False  # a banner waits in the session (read once by the next page)

    @property
    def actor(self) -> str:
        return f"user:{self.email}"


class LoginThrottled(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class LoginFailed(Exception):
    pass


class Authenticator:
    def __init__(self, sessions: sessionmaker[Session], secret_key: str, max_age: int) -> None:
        self._sessions = sessions
        self._key = secret_key.encode()
        self.max_age = max_age

    def session_id(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    # -- sign in / out -------------------------------------------------------------------
    def _check_throttle(self, session: Session, key: str, ip: str) -> None:
        since = utcnow() - THROTTLE_WINDOW
        failures = sa.select(sa.func.count()).select_from(LoginAttempt)
        by_email = (
            session.scalar(
                failures.where(
                    LoginAttempt.email_key == key,
                    LoginAttempt.at >= since,
                    LoginAttempt.ok.is_(False),
                )
            )
            or 0
        )
        by_ip = (
            session.scalar(
                failures.where(
                    LoginAttempt.ip == ip, LoginAttempt.at >= since, LoginAttempt.ok.is_(False)
                )
            )
            or 0
        )
        minutes = int(THROTTLE_WINDOW.total_seconds() // 60)
        if by_email >= MAX_FAILURES_PER_EMAIL:
            raise LoginThrottled(
                f"Too many failed sign-ins for this account. Wait {minutes} minutes and try "
                "again, or ask an admin to check the account.",
                minutes * 60,
            )
        if by_ip >= MAX_FAILURES_PER_IP:
            raise LoginThrottled(
                f"Too many failed sign-ins from this address. Wait {minutes} minutes.",
                minutes * 60,
            )

    def login(self, email: str, password: str, ip: str) -> tuple[str, Principal]:
        """Check the password; returns (cookie token, principal). Raises LoginFailed/Throttled."""
        email = (email or "").strip().lower()
        key = email_key(email)
        try:
            with transaction(self._sessions) as session:
                self._check_throttle(session, key, ip)
        except LoginThrottled:
            with transaction(self._sessions) as session:
                audit.record(
                    session,
                    actor="anonymous",
                    action="admin.login_throttled",
                    resource_type="admin_user",
                    resource_id=mask_email(email),
                    after={"ip": ip},
                )
            log.warning("sign-in throttled for %s from %s", mask_email(email), ip)
            raise
        with transaction(self._sessions) as session:
            user = session.scalar(sa.select(AdminUser).where(AdminUser.email == email))
            ok = False
            try:
                ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password or "")
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
            ok = ok and user is not None and user.disabled_at is None
            session.add(LoginAttempt(email_key=key, ip=ip, ok=ok))
            if not ok or user is None:
                audit.record(
                    session,
                    actor="anonymous",
                    action="admin.login_failed",
                    resource_type="admin_user",
                    resource_id=mask_email(email),
                    after={"ip": ip},
                )
                log.warning("failed sign-in for %s from %s", mask_email(email), ip)
                failed = True
            else:
                failed = False
                if _hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = _hasher.hash(password)
                user.last_login_at = utcnow()
                token = secrets.token_urlsafe(32)
                row = AdminSession(
                    id=self.session_id(token),
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(32),
                    expires_at=utcnow() + timedelta(seconds=self.max_age),
                    ip=ip,
                )
                session.add(row)
                audit.record(
                    session,
                    actor=f"user:{email}",
                    action="admin.login",
                    resource_type="admin_user",
                    resource_id=email,
                    after={"ip": ip},
                )
                principal = Principal(
                    user.id, user.email, user.role, row.id, row.csrf_token, row.expires_at
                )
        if failed:
            raise LoginFailed("Email or password is wrong.")
        return token, principal

    def logout(self, principal: Principal) -> None:
        with transaction(self._sessions) as session:
            session.execute(sa.delete(AdminSession).where(AdminSession.id == principal.session_id))
            audit.record(
                session,
                actor=principal.actor,
                action="admin.logout",
                resource_type="admin_user",
                resource_id=principal.email,
            )

    def resolve(self, token: str | None) -> tuple[Principal | None, bool]:
        """(principal, expired): the session behind a cookie token, if it is still valid."""
        if not token:
            return None, False
        sid = self.session_id(token)
        now = utcnow()
        with transaction(self._sessions) as session:
            row = session.get(AdminSession, sid)
            if row is None:  # a cookie whose session ended (expired and purged, or revoked)
                return None, True
            user = session.get(AdminUser, row.user_id)
            if row.expires_at <= now or user is None or user.disabled_at is not None:
                session.delete(row)
                return None, True
            row.last_seen_at = now
            return Principal(
                user.id,
                user.email,
                user.role,
                row.id,
                row.csrf_token,
                row.expires_at,
                has_flash=bool(row.flash),
            ), False

    # -- one-shot banners (flash), kept in the session row, never in a URL ---------------
    def flash(self, principal: Principal, text: str, *, kind: str = "ok") -> None:
        with transaction(self._sessions) as session:
            row = session.get(AdminSession, principal.session_id)
            if row is not None:
                item = {"kind": kind, "text": text}
                queued = [f for f in (row.flash or []) if f != item]  # a double click: shown once
                row.flash = [*queued, item][-5:]

    def take_flash(self, principal: Principal) -> list[dict[str, str]]:
        with transaction(self._sessions) as session:
            row = session.get(AdminSession, principal.session_id)
            if row is None or not row.flash:
                return []
            out = list(row.flash)
            row.flash = None
            return out

    @staticmethod
    def csrf_ok(principal: Principal, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(principal.csrf_token, str(submitted))

    def purge_expired(self) -> int:
        with transaction(self._sessions) as session:
            result = session.execute(
                sa.delete(AdminSession).where(AdminSession.expires_at <= utcnow())
            )
            return int(result.rowcount or 0)
