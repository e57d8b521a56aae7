"""Celery tasks: thin wrappers that take ids and call ``migration.services``.

acks_late + reject_on_worker_lost: a task whose worker dies is redelivered; the
saga's lease and durable steps make the repeat harmless. Progress is counted in
the database, never in chords.
"""

from __future__ import annotations

from celery import shared_task

from migration import runtime, services


@shared_task(
    name="twinbill.migrate", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def migrate(migration_id: str) -> None:
    services.run_member(runtime.deps(), migration_id)


@shared_task(name="twinbill.reap", ignore_result=True)
def reap() -> None:
    services.reap(runtime.deps(), runtime.enqueue)


@shared_task(name="twinbill.reconcile_recent", ignore_result=True)
def reconcile_recent() -> None:
    services.reconcile_recent(runtime.deps())
