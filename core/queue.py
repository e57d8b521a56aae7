"""Celery app factory.

Production: Redis broker (``TWINBILL_REDIS_URL``), any number of worker processes.
Embedded default: Celery's in-memory transport plus a worker running in a
thread of the same process, so ``twinbill demo`` on a laptop runs the very same
task code, acks and retries as production — no ``task_always_eager`` shortcut.

Tasks live in ``<package>/tasks.py`` as ``@shared_task`` thin wrappers; the
composition root (``admin.worker``) lists those modules in ``TASK_MODULES``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from core.settings import Settings

#: Far above any countdown/ETA we schedule (max 10 minutes), so Redis never
#: re-delivers a task that is merely waiting for its ETA.
VISIBILITY_TIMEOUT = 6 * 3600


def create_celery(settings: Settings, task_modules: tuple[str, ...] = ()) -> Celery:
    embedded = not settings.redis_url
    app = Celery("twinbill", set_as_current=True)
    app.conf.update(
        broker_url="memory://localhost/" if embedded else settings.redis_url,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        imports=task_modules,
    )
    app.conf.twinbill_embedded = embedded
    return app


@contextmanager
def embedded_worker(app: Celery, concurrency: int = 4, **kwargs: Any) -> Iterator[Any]:
    """Run a real Celery worker in a thread of this process (in-memory broker)."""
    from celery.contrib.testing.worker import start_worker

    for module in app.conf.imports or ():
        __import__(module)
    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        shutdown_timeout=30.0,
        loglevel="WARNING",
        **kwargs,
    ) as worker:
        yield worker
