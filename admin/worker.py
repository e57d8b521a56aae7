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

from admin.bootstrap import App
from core.errors import ConfigurationError


def _require_broker(app: App) -> None:
    if app.celery.embedded:
        raise ConfigurationError(
            "TWINBILL_REDIS_URL is not set: a separate worker or beat needs a shared broker "
            "(without one, `cohort run` and the demo run an embedded worker themselves)"
        )


def run_worker(app: App, *, concurrency: int, pool: str, loglevel: str) -> None:
    from celery.signals import worker_process_init

    _require_broker(app)

    @worker_process_init.connect(weak=False)
    def _after_fork(**_: object) -> None:  # prefork children must not share sockets
        app.engine.dispose(close=False)

    app.celery.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--task-events",
        ]
    )


def run_beat(app: App, *, loglevel: str) -> None:
    _require_broker(app)
    app.celery.start(["beat", f"--loglevel={loglevel}"])
