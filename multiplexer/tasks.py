"""Celery tasks of the multiplexer: thin wrappers over ``multiplexer.webhooks.outbox``.

A task gets its database and settings from the context bound to its Celery
app (an embedding process: the demo, tests)::

    app = create_celery(settings, ("multiplexer.tasks", ...))
    bind_context(app, lambda: ctx)          # anything with .sessions, .settings, .extras

and otherwise builds one per process, lazily, from ``TWINBILL_*`` (``admin.worker``).

Beat runs ``sweep_outbox`` periodically (``admin.worker.BEAT_SCHEDULE``) so that a lost task,
or a retry further away than the 10-minute countdown ceiling, still delivers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from celery import Celery, Task, shared_task
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.settings import Settings, get_settings
from multiplexer.webhooks import outbox

CONTEXT_KEY = "twinbill_context"
SWEEP_EVERY = 60.0
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "sweep-webhook-outbox": {"task": "twinbill.sweep_outbox", "schedule": SWEEP_EVERY},
}


class TaskContext(Protocol):
    settings: Settings
    sessions: sessionmaker[Session]
    extras: dict[str, Any]


def bind_context(app: Celery, provider: Callable[[], TaskContext]) -> None:
    """Tell this app's tasks where the database and settings come from."""
    app.conf[CONTEXT_KEY] = provider


@dataclass
class _DefaultContext:
    settings: Settings
    sessions: sessionmaker[Session]
    extras: dict[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_default: _DefaultContext | None = None


def _context(task: Task) -> TaskContext:
    """The bound context, else one built once per process from the environment."""
    global _default
    provider = task.app.conf.get(CONTEXT_KEY)
    if provider is not None:
        return provider()  # type: ignore[no-any-return]
    with _lock:
        if _default is None:
            settings = get_settings()
            _default = _DefaultContext(
                settings, make_sessionmaker(make_engine(settings.database_url))
            )
        return _default


def schedule_delivery(user_id: str, countdown: float = 0.0, app: Celery | None = None) -> None:
    """Enqueue a delivery of one user's stream (countdown capped far below visibility).

    Pass ``app`` wherever you can: Celery's "current app" is thread-local, and a web
    server's worker threads would otherwise publish through Celery's fallback app.
    """
    countdown = max(0.0, min(countdown, outbox.MAX_COUNTDOWN))
    task = app.tasks[deliver_outbox.name] if app is not None else deliver_outbox
    task.apply_async((user_id,), countdown=countdown or None)


@shared_task(bind=True, acks_late=True, name="twinbill.deliver_outbox")
def deliver_outbox(self: Task, user_id: str) -> dict[str, Any]:
    ctx = _context(self)
    policy = ctx.extras.get("webhook_policy") or outbox.DeliveryPolicy()
    with httpx.Client(timeout=ctx.settings.http_timeout) as client:
        report = outbox.deliver_user(
            ctx.sessions,
            ctx.settings,
            user_id,
            client=client,
            policy=policy,
            enqueue=lambda uid, countdown: schedule_delivery(uid, countdown, self.app),
        )
    return {"delivered": report.delivered, "failed": report.failed, "dead": report.dead}


@shared_task(bind=True, acks_late=True, name="twinbill.sweep_outbox")
def sweep_outbox(self: Task) -> int:
    return outbox.sweep(
        _context(self).sessions, lambda uid, countdown: schedule_delivery(uid, countdown, self.app)
    )
