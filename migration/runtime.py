"""Per-process wiring for workers: built once, lazily, from the environment."""

from __future__ import annotations

import threading

from celery import Celery

from core.settings import get_settings
from migration.bootstrap import saga_deps
from migration.saga import SagaDeps
from multiplexer.bootstrap import MuxContext

_lock = threading.Lock()
_ctx: MuxContext | None = None
_deps: SagaDeps | None = None
_app: Celery | None = None


def configure(
    deps: SagaDeps | None = None, app: Celery | None = None, ctx: MuxContext | None = None
) -> None:
    """Let an embedding process (the demo, tests, the web app) hand over its context and
    its Celery app. The app must be explicit: Celery's "current app" is per thread, so a
    web request thread would otherwise enqueue on Celery's default (amqp) app."""
    global _deps, _app, _ctx
    if ctx is not None:
        _ctx = ctx
    if deps is not None:
        _deps = deps
    if app is not None:
        _app = app


def context() -> MuxContext:
    """The process's one MuxContext (engine, cache, limiters, backends): shared by the
    migration tasks and the multiplexer's webhook tasks, so a worker has one pool."""
    global _ctx
    with _lock:
        if _ctx is None:
            from multiplexer.bootstrap import build

            _ctx = build(get_settings())
            if _app is not None:
                _ctx.extras["celery"] = _app
        return _ctx


def deps() -> SagaDeps:
    global _deps
    if _deps is None:
        ctx = context()
        with _lock:
            if _deps is None:
                _deps = saga_deps(ctx, verifier=default_verifier())
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
