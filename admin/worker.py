"""Worker and beat processes (``twinbill worker`` / ``twinbill beat``).

Each builds the process's one root (``admin.bootstrap.bootstrap``) and runs the
root's own Celery app, so there is no import-time app and no ``celery -A``: a
worker started any other way would not have the root its tasks need (they fail
loudly, see ``core.queue.RootTask``). Flower needs only the broker:
``celery --broker="$TWINBILL_REDIS_URL" flower`` (task events are on).

The beat schedule keeps the system self-healing: the reaper resumes migrations whose
worker died, the outbox sweep re-enqueues webhook deliveries whose task was lost,
continuous reconciliation re-checks recently migrated users, and expired admin
sessions are purged hourly (``admin.bootstrap.beat_schedule``).

Pool: threads by default. The saga is I/O-bound (HTTP to both systems, the database),
so threads cost nothing in throughput; one process per worker means one root, one
connection pool, one metrics endpoint, and a SIGKILL takes the whole worker at once.
``--pool prefork`` still works: each child re-opens its database connections.
"""

from __future__ import annotations

import logging

from admin.bootstrap import App
from core.errors import ConfigurationError
from core.observability import configure_logging
from core.queue import CONTROL_QUEUE, DEFAULT_QUEUE

log = logging.getLogger("twinbill.worker")


def _own_logging(loglevel: str) -> None:
    """Celery configures no logging of its own when someone listens to setup_logging:
    its records (tracebacks included, each one event) go through twinbill's JSON
    pipeline; stdout is not redirected into the log line by line."""
    from celery.signals import setup_logging

    @setup_logging.connect(weak=False)
    def _setup(**_: object) -> None:
        configure_logging(level=loglevel.upper())


def _serve_metrics(port: int | None) -> None:
    """This process's own /metrics (one scrape target per worker or beat process)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port)


def _require_broker(app: App) -> None:
    if app.celery.embedded:
        raise ConfigurationError(
            "TWINBILL_REDIS_URL is not set: a separate worker or beat needs a shared broker "
            "(without one, `cohort run` and the demo run an embedded worker themselves)"
        )


def run_worker(
    app: App, *, concurrency: int, pool: str, loglevel: str, metrics_port: int | None = None
) -> None:
    from celery.signals import worker_process_init

    _require_broker(app)
    _own_logging(loglevel)
    _serve_metrics(metrics_port or app.settings.metrics_port)

    @worker_process_init.connect(weak=False)
    def _after_fork(**_: object) -> None:  # prefork children must not share sockets
        app.engine.dispose(close=False)

    _mark_received_migrations(app)

    log.info("worker starting", extra={"pool": pool, "concurrency": concurrency})
    app.celery.worker_main(
        [
            "--quiet",  # no banner on stdout: every line this process writes is JSON
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={CONTROL_QUEUE},{DEFAULT_QUEUE}",
            "--task-events",
        ]
    )


def _mark_received_migrations(app: App) -> None:
    """Each migration task this process receives marks its migration (``leases.
    mark_received``) before a thread claims it: SIGKILLed in between, the reaper hands
    it back within a lease period instead of an hour (the production-shape test lost
    a member to this window, 1 run in 3 on a loaded machine). This process beats its
    marks (``leases.beat_received``): a task it holds while its threads are busy is not
    handed to another worker."""
    import os
    import socket

    from celery.signals import task_received

    from admin.bootstrap import MIGRATE
    from migration import leases

    worker = f"{socket.gethostname()}:{os.getpid()}"
    leases.beat_received(app.sessions, worker, every=app.settings.lease_seconds / 3)

    @task_received.connect(weak=False)
    def _received(request: object = None, **_: object) -> None:
        if getattr(request, "name", None) != MIGRATE or not getattr(request, "args", None):
            return
        try:
            leases.mark_received(app.sessions, str(request.args[0]), worker)  # type: ignore[attr-defined]
        except Exception:  # the mark is a safety net: the task runs without it
            log.exception("could not mark migration %s received", request.args[0])  # type: ignore[attr-defined]


def run_beat(app: App, *, loglevel: str, metrics_port: int | None = None) -> None:
    _require_broker(app)
    _own_logging(loglevel)
    _serve_metrics(metrics_port or app.settings.metrics_port)
    log.info("beat starting; schedule file %s", app.celery.conf.beat_schedule_filename)
    app.celery.start(["--quiet", "beat", f"--loglevel={loglevel}"])
