"""Celery tasks of the multiplexer: thin wrappers over ``multiplexer.webhooks.outbox``.

Each task gets the process's composition root from its base class (``self.root``,
a ``MuxContext``): its database, settings, delivery policy and the enqueue of the
next delivery, all through the same Celery app. Beat runs ``sweep_outbox``
periodically (``admin.bootstrap.beat_schedule``) so that a lost task, or a retry
further away than the 10-minute countdown ceiling, still delivers.
"""

from __future__ import annotations

from typing import Any

import httpx
from celery import shared_task

from core.queue import RootTask
from multiplexer.bootstrap import MuxContext
from multiplexer.webhooks import outbox


def _root(task: RootTask) -> MuxContext:
    return task.root  # type: ignore[no-any-return]


@shared_task(bind=True, base=RootTask, acks_late=True, name="twinbill.deliver_outbox")
def deliver_outbox(self: RootTask, user_id: str) -> dict[str, Any]:
    ctx = _root(self)
    with httpx.Client(timeout=ctx.settings.http_timeout) as client:
        report = outbox.deliver_user(
            ctx.sessions,
            ctx.settings,
            user_id,
            client=client,
            policy=ctx.webhook_policy,
            enqueue=ctx.schedule_delivery,
        )
    return {"delivered": report.delivered, "failed": report.failed, "dead": report.dead}


@shared_task(bind=True, base=RootTask, acks_late=True, name="twinbill.sweep_outbox")
def sweep_outbox(self: RootTask) -> int:
    ctx = _root(self)
    return outbox.sweep(ctx.sessions, ctx.schedule_delivery)


@shared_task(bind=True, base=RootTask, acks_late=True, name="twinbill.recover_offline")
def recover_offline(self: RootTask) -> dict[str, int]:
    """Re-send offline payments/refunds whose backend answer was lost (still ``pending``
    after 5 minutes) with their own key and body: the backend replays or records once."""
    return _root(self).mux.recover_offline()
