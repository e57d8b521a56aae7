"""Celery tasks: thin wrappers that take ids and call ``migration.services``.

acks_late + reject_on_worker_lost: a task whose worker dies is redelivered; the
saga's lease and durable steps make the repeat harmless. Progress is counted in
the database, never in chords. Each task gets the process's composition root from
its base class (``self.root``: an ``admin.bootstrap.App``).
"""

from __future__ import annotations

from typing import Protocol

from celery import shared_task

from core.queue import RootTask
from migration import reaper, services
from migration.deps import SagaDeps


class MigrationRoot(Protocol):
    """What these tasks need of the root."""

    saga: SagaDeps

    def enqueue_migration(self, migration_id: str) -> None: ...

    def enqueue_migration_later(self, migration_id: str, seconds: float) -> None: ...

    def enqueue_resumed(self, migration_id: str) -> None: ...

    def enqueue_prefetch(self, cohort: str, migration_ids: list[str]) -> None: ...

    def enqueue_shadow_sync(self, shadow_import_id: str, trigger: str) -> None: ...


def _root(task: RootTask) -> MigrationRoot:
    return task.root  # type: ignore[no-any-return]


@shared_task(
    bind=True,
    base=RootTask,
    name="twinbill.migrate",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def migrate(self: RootTask, migration_id: str) -> None:
    root = _root(self)
    services.run_member(root.saga, migration_id, later=root.enqueue_migration_later)


@shared_task(
    bind=True,
    base=RootTask,
    name="twinbill.prefetch",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def prefetch(self: RootTask, cohort: str, migration_ids: list[str]) -> None:
    root = _root(self)
    services.prefetch_chunk(
        root.saga, cohort, migration_ids, root.enqueue_migration, root.enqueue_prefetch
    )


@shared_task(bind=True, base=RootTask, name="twinbill.reap", ignore_result=True)
def reap(self: RootTask) -> None:
    root = _root(self)
    reaper.reap(
        root.saga,
        root.enqueue_resumed,
        start=root.enqueue_migration,
        prefetch=root.enqueue_prefetch,
    )


@shared_task(bind=True, base=RootTask, name="twinbill.reconcile_recent", ignore_result=True)
def reconcile_recent(self: RootTask) -> None:
    services.reconcile_recent(_root(self).saga)


@shared_task(
    bind=True, base=RootTask, name="twinbill.shadow_sync", acks_late=True, ignore_result=True
)
def shadow_sync(self: RootTask, shadow_import_id: str, trigger: str) -> None:
    """Re-sync one shadow import with legacy and compare (daily beat, `cohort shadow`)."""
    from migration import shadow_sync as sync

    sync.sync(_root(self).saga, shadow_import_id, trigger=trigger)


@shared_task(
    bind=True, base=RootTask, name="twinbill.shadow_sync_user", acks_late=True, ignore_result=True
)
def shadow_sync_user(self: RootTask, user_id: str, trigger: str) -> None:
    """A legacy webhook about a shadowed user: re-sync and compare it."""
    from migration import shadow_sync as sync

    sync.sync_user(_root(self).saga, user_id, trigger=trigger)


@shared_task(bind=True, base=RootTask, name="twinbill.shadow_tick", ignore_result=True)
def shadow_tick(self: RootTask) -> None:
    """Beat: end shadow periods that are over; schedule each shadowed user's daily check."""
    from migration import shadow

    root = _root(self)
    shadow.tick(root.saga, root.enqueue_shadow_sync)
