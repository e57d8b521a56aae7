"""Celery app factory and the one task base class.

Production: Redis broker (``TWINBILL_REDIS_URL``), any number of worker processes.
Embedded default: Celery's in-memory transport plus a worker running in a
thread of the same process, so ``twinbill demo`` on a laptop runs the very same
task code, acks and retries as production — no ``task_always_eager`` shortcut.

Tasks live in ``<package>/tasks.py`` as ``@shared_task(base=RootTask, bind=True)``
thin wrappers. The composition root (``admin.bootstrap.bootstrap``) builds one
``TwinbillCelery`` per process and hangs itself on it (``app.root``); every task
reaches its dependencies through ``self.root`` — pypi/warehouse's pattern (its
``WarehouseTask`` hands each task the Pyramid registry). Nothing is looked up in a
module global, and a task run by an app without a root fails loudly instead of
building a second, differently configured world.

Enqueue with ``app.send_task(name, ...)`` on the root's app, never through a task
object's ``apply_async``: that goes through Celery's *current* app, which is
thread-local — a thread that never made one publishes to Celery's fallback app
(amqp://guest@localhost), which is exactly how `cohort run` once lost its tasks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from celery import Celery, Task

from core.errors import ConfigurationError
from core.settings import Settings

#: Beat's housekeeping (reaper, outbox sweep, session purge) and migrations the reaper
#: resumes go to their own queue, which every worker consumes next to the default one: a
#: cohort of thousands queued in ``celery`` must not delay the reaper behind all of them.
CONTROL_QUEUE = "twinbill.control"
DEFAULT_QUEUE = "celery"
CONTROL_TASKS = ("twinbill.reap", "twinbill.sweep_outbox", "twinbill.purge_admin_sessions")

#: Far above any countdown/ETA we schedule (max 10 minutes), so Redis never
#: re-delivers a task that is merely waiting for its ETA.
VISIBILITY_TIMEOUT = 6 * 3600


class TwinbillCelery(Celery):
    """A Celery app that carries its process's composition root."""

    root: Any = None

    @property
    def embedded(self) -> bool:
        return bool(self.conf.get("twinbill_embedded"))


class RootTask(Task):  # type: ignore[misc]
    """Base class of every twinbill task: ``self.root`` is the process's composition root."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # every line logged while the task runs carries its name and id
        with structlog.contextvars.bound_contextvars(task=self.name, task_id=self.request.id):
            return super().__call__(*args, **kwargs)

    @property
    def root(self) -> Any:
        root = getattr(self.app, "root", None)
        if root is None:
            raise ConfigurationError(
                f"task {self.name} runs on a Celery app without a twinbill root: start "
                "workers with `twinbill worker` (it builds the root), not `celery -A`"
            )
        return root


def beat_schedule_path(settings: Settings) -> str:
    """Beat's schedule file: TWINBILL_BEAT_SCHEDULE_FILE, else the temp dir (writable in a
    read-only container, unlike the working directory)."""
    configured = getattr(settings, "beat_schedule_file", None)
    return str(configured or Path(tempfile.gettempdir()) / "twinbill-celerybeat-schedule")


EMBEDDED_POLL_SECONDS = 0.02


def create_celery(
    settings: Settings,
    task_modules: tuple[str, ...] = (),
    *,
    beat_schedule: dict[str, dict[str, Any]] | None = None,
) -> TwinbillCelery:
    embedded = not settings.redis_url
    app = TwinbillCelery("twinbill", set_as_current=False)
    app.conf.update(
        broker_url="memory://localhost/" if embedded else settings.redis_url,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # the in-memory broker polls: while a worker's threads are all busy (prefetch
            # full) its consumer sleeps this long between tries, so a thread that finishes
            # waits up to it for its next task. kombu's 1 s default left each embedded
            # thread idle ~0.5 s per migration (bench/migration_throughput.py). Redis BRPOPs
            **({"polling_interval": EMBEDDED_POLL_SECONDS} if embedded else {}),
            # Redis: the control queue strictly first (workers list it first), not round
            # robin — a cohort's waiting migrations are re-queued there (App.
            # enqueue_migration_later) and outnumber the first runs 2 to 1, so half the
            # fetches let them queue up behind the backlog (measured: 20 s for a 1 s wait).
            # kombu's in-memory transport has no such option: embedded stays round robin.
            **({} if embedded else {"queue_order_strategy": "priority"}),
        },
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # task events for Flower (`celery --broker=$TWINBILL_REDIS_URL flower`)
        worker_send_task_events=True,
        task_send_sent_event=True,
        imports=task_modules,
        task_default_queue=DEFAULT_QUEUE,
        task_routes={name: {"queue": CONTROL_QUEUE} for name in CONTROL_TASKS},
        beat_schedule=beat_schedule or {},
        beat_schedule_filename=beat_schedule_path(settings),
        twinbill_embedded=embedded,
    )
    return app


@contextmanager
def embedded_worker(app: Celery, concurrency: int = 4, **kwargs: Any) -> Iterator[Any]:
    """Run a real Celery worker in a thread of this process (in-memory broker)."""
    from celery.contrib.testing.worker import start_worker

    for module in app.conf.imports or ():
        __import__(module)
    kwargs.setdefault("queues", [CONTROL_QUEUE, DEFAULT_QUEUE])
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
