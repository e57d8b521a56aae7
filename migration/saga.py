"""The per-user migration saga: one transaction across two systems that share none.

    preflight -> lock -> fetch -> transform -> load -> recheck -> prove
                                                              (compensated on failure)
    -> CANCEL (the pivot)
    -> activate -> flip -> verify                                 (forward recovery only)

Every step is recorded durably (``records``) and safe to run twice; a worker
that dies at any line leaves a migration the reaper hands to another worker,
which resumes after the last finished step. Before the pivot (the legacy
cancel) a failure is compensated: the pending import is discarded and the
route goes back to ``legacy``. From the pivot on, only forward recovery: a
transient cause is retried with growing backoff for as long as it lasts
(``migration.recovery``: status ``retrying``, "retrying after the pivot", paged),
only a permanent one ends ``failed`` with a page for a human.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog

from core import audit
from core.db import transaction, utcnow
from core.errors import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    IllegalTransition,
    NotFound,
    RateLimited,
    TransformError,
    TwinbillError,
)
from core.ratelimit import backoff_delay
from migration import leases, records, recovery, rollback, steps
from migration.deps import Deferred, Later, Requeue, Restart, SagaDeps, Step, Verifier
from migration.models import Migration

log = logging.getLogger("twinbill.saga")

ORDER = steps.SAGA
DRY_RUN_ORDER = steps.DRY_RUN
PIVOT = next(name for name in ORDER if steps.STEPS[name].pivot)
PROVE_STEPS = frozenset({"prove", rollback.PROVE})
VERIFY_STEPS = frozenset({"verify", rollback.VERIFY})
#: RateLimited.backend carries the adapter's name; the shared budgets are keyed by role.
LIMITER_OF_BACKEND = {"stripe": "legacy", "localstripe": "legacy", "http": "new"}

__all__ = ["Deferred", "Later", "Requeue", "Restart", "SagaDeps", "Verifier", "next_step", "run"]


def _table(deps: SagaDeps) -> Mapping[str, Step]:
    """Every step of both directions; a test's (or crash hook's) entries win."""
    return {**steps.STEPS, **rollback.STEPS, **deps.steps}


def order_of(mig: Migration) -> tuple[str, ...]:
    """The steps this migration runs: forward, dry run, or the reverse saga (rollback)."""
    if mig.direction == "rollback":
        return rollback.ORDER
    return DRY_RUN_ORDER if mig.dry_run else ORDER


def _pivot(mig: Migration) -> str:
    return rollback.PIVOT if mig.direction == "rollback" else PIVOT


def next_step(mig: Migration) -> str | None:
    order = order_of(mig)
    if mig.step is None:
        return order[0]
    idx = order.index(mig.step)
    return order[idx + 1] if idx + 1 < len(order) else None


def run(deps: SagaDeps, migration_id: str, *, later: Requeue | None = None) -> Migration:
    """Drive one migration as far as it goes now. Safe to call again at any time.

    A step that must wait (``Later``) hands the migration to ``later`` (a worker: a
    countdown task) with its lease released, and this returns it still ``running``;
    without ``later`` (in-process) the wait is slept here."""
    with structlog.contextvars.bound_contextvars(migration_id=migration_id):
        return _run(deps, migration_id, later)


def _run(deps: SagaDeps, migration_id: str, later: Requeue | None) -> Migration:
    # the lease holder is this thread of this process: SagaDeps is built once per process and
    # shared by its worker threads, so deps.owner alone would let a sibling thread (or another
    # process on the same host) take over a migration that is being run right now
    owner = leases.this_thread(deps.owner)
    mig = leases.claim(deps.sessions, migration_id, owner, stale_after=deps.stale_after)
    if mig is None:
        return records.load(deps.sessions, migration_id)  # finished, or a live worker has it
    while True:
        mig = records.load(deps.sessions, migration_id)
        step = next_step(mig)
        if step is None:
            status = "dry_run" if mig.dry_run else "succeeded"
            records.finish(deps.sessions, mig.id, status, member_status="done")
            return records.load(deps.sessions, migration_id)
        try:
            _run_step(deps, mig, step)
        except Later as exc:
            if later is None:
                deps.sleep(exc.seconds)
                continue
            leases.release(deps.sessions, mig.id, owner)
            later(mig.id, exc.seconds)  # lost (a crash right here): the reaper resumes it
            return records.load(deps.sessions, migration_id)
        except Deferred as exc:
            if mig.generation > 1 or mig.step is not None:  # after a restart: route locked
                _compensate(deps, mig)
            until = utcnow() + timedelta(minutes=30)
            records.finish(deps.sessions, mig.id, "deferred", reason=str(exc), defer_until=until)
            return records.load(deps.sessions, migration_id)
        except Restart as exc:
            if mig.generation >= deps.max_restarts:
                _compensate(deps, mig)
                records.finish(
                    deps.sessions,
                    mig.id,
                    "deferred",
                    reason=f"legacy keeps changing during migration: {exc}",
                    defer_until=utcnow() + timedelta(minutes=30),
                )
                return records.load(deps.sessions, migration_id)
            _restart(deps, mig)
        except Exception as exc:  # noqa: BLE001 - every failure must end in a known state
            if recovery.is_transient(exc) and step not in VERIFY_STEPS:
                current = records.load(deps.sessions, mig.id)
                if current.pivoted and not current.dry_run:
                    return recovery.retry_later(deps, current, step, exc)
            return _fail(deps, mig, step, exc)


def _run_step(deps: SagaDeps, mig: Migration, step: str) -> None:
    fn = _table(deps)[step].run
    attempt = 0
    while True:
        attempt += 1
        step_id = records.begin_step(deps.sessions, mig, step, steps.key_for(mig, step))
        try:
            with leases.keep_alive(deps.sessions, mig.id, every=deps.stale_after / 3):
                advance, detail = fn(deps, mig)
        except (Deferred, Restart, Later) as signal:
            said: dict[str, Any] = {"reason": str(signal)}
            if isinstance(signal, Later):
                outcome, said["retry_in"] = "waiting", round(signal.seconds, 3)
            else:
                outcome = "deferred" if isinstance(signal, Deferred) else "restart"
            records.end_step(deps.sessions, step_id, outcome=outcome, detail=said)
            raise
        except (RateLimited, BackendUnavailable) as exc:
            records.end_step(deps.sessions, step_id, outcome="error", error=exc)
            if attempt >= deps.max_attempts:
                raise
            delay = backoff_delay(attempt)
            if isinstance(exc, RateLimited):
                name = exc.backend or "legacy"
                limiter = deps.limiters.get(LIMITER_OF_BACKEND.get(name, name))
                if limiter is not None:
                    limiter.penalise(exc.retry_after)
                delay = max(delay, exc.retry_after)
            deps.sleep(min(delay, 60.0))
            mig = records.load(deps.sessions, mig.id)
            continue
        except BaseException as exc:
            # a failed prove keeps both previews and their diff on the step record
            detail = getattr(exc, "detail", None)
            records.end_step(
                deps.sessions,
                step_id,
                outcome="error",
                error=exc,
                detail=detail if isinstance(detail, dict) else None,
            )
            raise
        records.end_step(deps.sessions, step_id, outcome="ok", detail=detail, advance=advance)
        return


def _restart(deps: SagaDeps, mig: Migration) -> None:
    """Discard the pending import and start over (preflight included: what changed may be a
    renewal or a dunning attempt) under a new generation; the route stays locked."""
    steps.discard_import(deps, mig)
    with transaction(deps.sessions) as session:
        row = session.get(Migration, mig.id)
        assert row is not None
        row.generation += 1
        row.import_id = None
        row.snapshot_id = None
        row.step = None
        audit.record(
            session,
            actor="system:saga",
            action="saga.restart",
            resource_type="migration",
            resource_id=mig.id,
            after={"generation": row.generation},
            reason="legacy changed",
        )


def _compensate(deps: SagaDeps, mig: Migration) -> None:
    """Undo everything before the pivot: discard the import, route back to legacy."""
    step_id = records.begin_step(deps.sessions, mig, "compensate")
    table = _table(deps)
    order = order_of(mig)
    try:
        for name in reversed(order[: order.index(_pivot(mig))]):  # every undo is idempotent
            undo = table[name].undo
            if undo is not None:
                undo(deps, mig)
    except Exception as exc:
        records.end_step(deps.sessions, step_id, outcome="error", error=exc)
        raise
    records.end_step(deps.sessions, step_id, outcome="ok")


def _fail(deps: SagaDeps, mig: Migration, step: str, exc: Exception) -> Migration:
    mig = records.load(deps.sessions, mig.id)
    if not isinstance(exc, TwinbillError):
        log.exception("migration %s: unexpected error in %s", mig.id, step)
    if not mig.pivoted:
        try:
            _compensate(deps, mig)
        except Exception as comp_exc:  # noqa: BLE001
            deps.page(
                f"migration {mig.id} (user {mig.user_id}): compensation failed after "
                f"{step} failed ({exc}); then {comp_exc}. See runbook: stuck-migrating."
            )
            records.finish(deps.sessions, mig.id, "running", error=comp_exc, member_status="failed")
            return records.load(deps.sessions, mig.id)
        error = _classified(exc)
        if step in PROVE_STEPS and isinstance(exc, (RateLimited, BackendUnavailable)):
            error = TwinbillError(f"could not prove (preview unavailable; not migrated): {exc}")
            error.kind = exc.kind
        records.finish(
            deps.sessions,
            mig.id,
            "compensated" if not mig.dry_run else "failed",
            error=error,
            member_status="failed",
        )
        return records.load(deps.sessions, mig.id)
    if step in VERIFY_STEPS:
        # the user is fully migrated (route `new`); only the check could not run. Not a
        # page: continuous reconciliation re-checks it, or `twinbill reconcile --user`.
        log.warning("migration %s: verify could not run (%s); reconcile later", mig.id, exc)
        records.finish(
            deps.sessions,
            mig.id,
            "succeeded",
            error=_classified(exc),
            member_status="done",
            reason=f"migrated; verification could not run: {exc}"[:500],
        )
        return records.load(deps.sessions, mig.id)
    # past the pivot: the user is canceled in legacy (a rollback: in new); never route back
    with contextlib.suppress(IllegalTransition):
        steps.mark_failed(deps, mig, reason=f"{step}: {exc}")
    command, pivot = (
        ("rollback", "the new system's cancel")
        if mig.direction == "rollback"
        else ("migrate", "the legacy cancel")
    )
    deps.page(
        f"migration {mig.id} (user {mig.user_id}) failed after {pivot}, in step "
        f"{step}: {exc}. The user is read-only; resume with `twinbill {command} "
        f"{mig.user_id} --resume` once the cause is fixed (runbook: failed-after-pivot)."
    )
    records.finish(deps.sessions, mig.id, "failed", error=_classified(exc), member_status="failed")
    return records.load(deps.sessions, mig.id)


def _classified(exc: Exception) -> Exception:
    """Data problems are data errors, whichever layer noticed them."""
    if isinstance(exc, (TransformError, BackendError, TwinbillError)):
        if isinstance(exc, BackendRejected) and not isinstance(exc, NotFound):
            exc.kind = "data"  # the new system refused what we built from legacy data
        return exc
    wrapped = TwinbillError(f"{type(exc).__name__}: {exc}")
    wrapped.kind = "bug"
    return wrapped
