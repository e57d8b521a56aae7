"""Per-process wiring for workers: built once, lazily, from the environment."""

from __future__ import annotations

import threading

from core.settings import get_settings
from migration.bootstrap import saga_deps
from migration.saga import SagaDeps

_lock = threading.Lock()
_deps: SagaDeps | None = None


def configure(deps: SagaDeps) -> None:
    """Let an embedding process (the demo, tests) hand workers its own context."""
    global _deps
    _deps = deps


def deps() -> SagaDeps:
    global _deps
    with _lock:
        if _deps is None:
            from multiplexer.bootstrap import build

            _deps = saga_deps(build(get_settings()), verifier=_default_verifier())
        return _deps


def _default_verifier():  # type: ignore[no-untyped-def]
    try:
        from migration.verify import reconcile_verifier
    except ImportError:  # pragma: no cover
        return None
    return reconcile_verifier


def enqueue(migration_id: str) -> None:
    from migration.tasks import migrate

    migrate.apply_async((migration_id,), countdown=0)
