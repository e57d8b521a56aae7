"""Admin accounts: disable / re-enable, reset the password. Every change is audited and
ends the account's sessions at once (a disabled operator's open tabs stop working).

A reset sets a random one-time password (shown once to the admin who reset it, never
logged or stored in clear); the operator signs in with it and an admin can reset again.
An admin cannot disable themselves, and the last enabled admin cannot be disabled.
"""

from __future__ import annotations

import logging
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from admin.models import AdminSession, AdminUser
from admin.web.auth import hash_password, mask_email
from core import audit
from core.db import transaction, utcnow
from core.errors import InvalidInput

log = logging.getLogger("twinbill.admin")


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(sa.select(AdminUser).order_by(AdminUser.email)))


def _user(session: Session, user_id: int) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise InvalidInput(f"no admin user #{user_id}")
    return user


def _end_sessions(session: Session, user_id: int) -> int:
    result = session.execute(sa.delete(AdminSession).where(AdminSession.user_id == user_id))
    return int(result.rowcount or 0)


def set_disabled(
    sessions: sessionmaker[Session], user_id: int, disabled: bool, *, actor_id: int, actor: str
) -> AdminUser:
    with transaction(sessions) as session:
        user = _user(session, user_id)
        if disabled and user.id == actor_id:
            raise InvalidInput("you cannot disable your own account")
        if disabled and user.role == "admin" and user.disabled_at is None:
            others = session.scalar(
                sa.select(sa.func.count())
                .select_from(AdminUser)
                .where(
                    AdminUser.role == "admin",
                    AdminUser.disabled_at.is_(None),
                    AdminUser.id != user.id,
                )
            )
            if not others:
                raise InvalidInput("this is the last enabled admin: it cannot be disabled")
        before = {"disabled": user.disabled_at is not None}
        user.disabled_at = utcnow() if disabled else None
        ended = _end_sessions(session, user.id) if disabled else 0
        audit.record(
            session,
            actor=actor,
            action="admin.user_disabled" if disabled else "admin.user_enabled",
            resource_type="admin_user",
            resource_id=user.email,
            before=before,
            after={"disabled": disabled, "sessions_ended": ended},
        )
        session.flush()
        session.expunge(user)
    log.info("admin user %s %s", mask_email(user.email), "disabled" if disabled else "enabled")
    return user


def reset_password(
    sessions: sessionmaker[Session], user_id: int, *, actor: str
) -> tuple[AdminUser, str]:
    """A new random password for the account (returned once), all its sessions ended."""
    password = secrets.token_urlsafe(15)
    hashed = hash_password(password)
    with transaction(sessions) as session:
        user = _user(session, user_id)
        user.password_hash = hashed
        ended = _end_sessions(session, user.id)
        audit.record(
            session,
            actor=actor,
            action="admin.user_password_reset",
            resource_type="admin_user",
            resource_id=user.email,
            after={"sessions_ended": ended},
        )
        session.flush()
        session.expunge(user)
    log.info("password of admin user %s reset", mask_email(user.email))
    return user, password
