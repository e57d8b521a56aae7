"""Celery entry point for worker and beat processes: ``celery -A admin.worker ...``.

``twinbill worker`` / ``twinbill beat`` wrap these. The beat schedule keeps the
system self-healing: the reaper resumes migrations whose worker died, the outbox
sweep re-enqueues webhook deliveries whose task was lost, continuous
reconciliation re-checks recently migrated users, and expired admin sessions
are purged hourly.
"""

from __future__ import annotations

from celery import Celery

from core.queue import create_celery
from core.settings import get_settings

TASK_MODULES = ("migration.tasks", "multiplexer.tasks", "admin.tasks")

BEAT_SCHEDULE = {
    "reap-stale-migrations": {"task": "twinbill.reap", "schedule": 30.0},
    "sweep-webhook-outbox": {"task": "twinbill.sweep_outbox", "schedule": 30.0},
    "reconcile-recent": {"task": "twinbill.reconcile_recent", "schedule": 300.0},
    "purge-admin-sessions": {"task": "twinbill.purge_admin_sessions", "schedule": 3600.0},
}


def make_app() -> Celery:
    from migration import runtime
    from multiplexer.tasks import bind_context

    app = create_celery(get_settings(), TASK_MODULES)
    app.conf.beat_schedule = BEAT_SCHEDULE
    runtime.configure(app=app)
    bind_context(app, runtime.context)  # one context per process for every task
    return app


app = make_app() if __name__ != "__main__" else None  # celery -A admin.worker needs `app`
