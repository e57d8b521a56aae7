"""The one composition root: ``bootstrap(settings) -> App``.

Every entry point builds exactly one ``App`` per process and passes it down —
the CLI (once per command, ``admin.cli.context``), ``twinbill serve``
(``admin.app.create_app(app)``), ``twinbill worker`` and ``twinbill beat``
(``admin.worker``), the demo, benches and tests. Celery tasks get it through their
base class (``core.queue.RootTask``: ``self.root``), because the root hangs itself
on the Celery app it builds. Nothing else holds dependencies: no module globals,
no string-keyed extras, no attribute overrides after construction.

``App`` *is a* ``MuxContext`` (so the multiplexer's gateway, webhook router and
tasks take it without importing this layer) plus the migration engine's parts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from core.queue import CONTROL_QUEUE, DEFAULT_QUEUE, TwinbillCelery, create_celery
from core.settings import Settings
from migration.bootstrap import default_verifier, saga_deps
from migration.deps import SagaDeps, Verifier
from multiplexer.backends.base import BillingBackend
from multiplexer.bootstrap import MuxContext, mux_parts
from multiplexer.webhooks.outbox import DeliveryPolicy

#: modules whose ``@shared_task``s every worker registers
TASK_MODULES = ("migration.tasks", "multiplexer.tasks", "admin.tasks")
MIGRATE = "twinbill.migrate"
PREFETCH = "twinbill.prefetch"
SHADOW_SYNC = "twinbill.shadow_sync"
SHADOW_SYNC_USER = "twinbill.shadow_sync_user"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The one beat schedule. The reaper's period plus the lease bound how long a dead
    worker's migration waits for another worker (``lease_seconds + reaper_every``)."""
    return {
        "reap-stale-migrations": {"task": "twinbill.reap", "schedule": settings.reaper_every},
        "sweep-webhook-outbox": {"task": "twinbill.sweep_outbox", "schedule": 30.0},
        "reconcile-recent": {"task": "twinbill.reconcile_recent", "schedule": 300.0},
        "purge-admin-sessions": {"task": "twinbill.purge_admin_sessions", "schedule": 3600.0},
        "recover-offline-money": {"task": "twinbill.recover_offline", "schedule": 300.0},
        # shadow rehearsals: periods that ended; each shadowed user compared once a day
        "shadow-tick": {"task": "twinbill.shadow_tick", "schedule": 3600.0},
    }


@dataclass(kw_only=True)
class App(MuxContext):
    """Everything a twinbill process needs, built once."""

    celery: TwinbillCelery  # type: ignore[assignment] - always present on the root
    saga: SagaDeps

    def enqueue_migration(self, migration_id: str) -> None:
        """Hand one migration to a worker, through *this* app's broker."""
        self.celery.send_task(MIGRATE, args=(migration_id,))

    def enqueue_migration_later(self, migration_id: str, seconds: float) -> None:
        """The same, ``seconds`` from now: a step waits (the re-check for the event feed)
        without holding a worker thread. The user's route is locked meanwhile, so when due
        it goes on the control queue, ahead of the cohort's backlog.

        Not a Celery countdown: each ETA task a worker holds raises its prefetch, and with
        hundreds of waits in a cohort the worker had fetched the whole backlog ahead of
        them — a 1 s wait became 30-90 s on a 500-user cohort (bench/migration_throughput.py),
        and a re-check that late must re-read its user. A timer thread publishes the task
        when due; if this process dies first, the reaper resumes the migration (the saga
        set its heartbeat when it released the lease)."""
        timer = threading.Timer(max(seconds, 0.0), self._enqueue_ahead, args=(migration_id,))
        timer.daemon = True
        timer.start()

    def _enqueue_ahead(self, migration_id: str) -> None:
        self.celery.send_task(MIGRATE, args=(migration_id,), queue=CONTROL_QUEUE)

    def start_cohort(self, name: str, *, actor: str, retry_failed: bool = False) -> int:
        """Run a cohort through this app's queue: members go to the workers, their
        snapshots read in bulk first where that is cheaper (``migration.prefetch``)."""
        from migration import services

        return services.start_cohort(
            self.saga,
            name,
            self.enqueue_migration,
            actor=actor,
            retry_failed=retry_failed,
            prefetch=self.enqueue_prefetch,
        )

    def enqueue_prefetch(self, cohort: str, migration_ids: list[str]) -> None:
        """A cohort chunk's bulk snapshot read (``migration.prefetch``), on the cohort's own
        queue: a worker reads it, then enqueues its members behind the ones ahead."""
        self.celery.send_task(PREFETCH, args=(cohort, migration_ids))

    def enqueue_resumed(self, migration_id: str) -> None:
        """The reaper's hand-over: a migration whose worker died holds its user's route
        (`migrating`), so it goes ahead of the cohort's queue (the control queue)."""
        queue = DEFAULT_QUEUE if self.celery.embedded else CONTROL_QUEUE
        self.celery.send_task(MIGRATE, args=(migration_id,), queue=queue)

    def enqueue_shadow_sync(self, shadow_import_id: str, trigger: str) -> None:
        self.celery.send_task(SHADOW_SYNC, args=(shadow_import_id, trigger))

    def on_legacy_event(self, user_id: str) -> None:
        """A legacy webhook about a shadowed user: re-sync and re-compare it in a worker."""
        from migration.shadow import is_shadowed

        if is_shadowed(self.sessions, user_id):
            self.celery.send_task(SHADOW_SYNC_USER, args=(user_id, "webhook"))


def bootstrap(
    settings: Settings,
    *,
    backends: dict[str, BillingBackend] | None = None,
    engine: Engine | None = None,
    verifier: Verifier | None = None,
    webhook_policy: DeliveryPolicy | None = None,
    saga: dict[str, Any] | None = None,
) -> App:
    """Build the process's root. ``backends``/``engine``/``verifier`` (default: the
    reconciler's), ``webhook_policy`` and ``saga`` (SagaDeps fields) let tests hand over
    their own parts."""
    celery = create_celery(settings, TASK_MODULES, beat_schedule=beat_schedule(settings))
    from migration.shadow_reads import ShadowReadHooks

    parts = mux_parts(settings, backends=backends, engine=engine, shadow_reads=ShadowReadHooks)
    ctx = MuxContext(**parts)
    deps = saga_deps(
        ctx,
        verifier=verifier or default_verifier(),
        **(saga or {}),
    )
    app = App(
        **parts,
        celery=celery,
        webhook_policy=webhook_policy or DeliveryPolicy(),
        saga=deps,
    )
    celery.root = app
    return app
