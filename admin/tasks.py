"""Celery tasks of the admin: thin wrappers over plain functions that tests call directly."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.orm import Session, sessionmaker

from admin.web.auth import Authenticator
from core.queue import RootTask


def purge_sessions(sessions: sessionmaker[Session], max_age: int) -> int:
    """Delete expired admin sessions; returns how many. Purging needs no secret key (it
    never derives a session id), so a worker without TWINBILL_SECRET_KEY can run it."""
    return Authenticator(sessions, "", max_age).purge_expired()


@shared_task(bind=True, base=RootTask, name="twinbill.purge_admin_sessions", ignore_result=True)
def purge_admin_sessions(self: RootTask) -> int:
    root = self.root
    return purge_sessions(root.sessions, root.settings.session_max_age)
