"""Per-process wiring for workers: built once, lazily, from the environment."""

from __future__ import annotations

import threading

from celery import Celery

from core.settings import get_settings
from migration.bootstrap import saga_deps
from migration.saga import SagaDeps

_lock = threading.Lock()
_deps: SagaDeps | None = None
_app: Celery | None = None


def configure(deps: SagaDeps | None = None, app: Celery | None = None) -> None:
    """Let an embedding process (the demo, tests, the web app) hand over its context and
    its Celery app. The app must be explicit: Celery's "current app" is per thread, so a
    web request thread would otherwise enqueue on Celery's default (amqp) app."""
    global _deps, _app
    if deps is not None:
        _deps = deps
    if app is not None:
        _app = app


def deps() -> SagaDeps:
    global _deps
    with _lock:
        if _deps is None:
            from multiplexer.bootstrap import build

            _deps = saga_deps(build(get_settings()), verifier=default_verifier())
        return _deps


def default_verifier():  # type: ignore[no-untyped-def]
    try:
        from migration.verify import reconcile_verifier
    except ImportError:  # pragma: no cover
        return None
    return reconcile_verifier


def enqueue(migration_id: str) -> None:
    if _app is not None:
        _app.send_task("twinbill.migrate", args=(migration_id,))
        return
    from migration.tasks import migrate

    migrate.apply_async((migration_id,))
