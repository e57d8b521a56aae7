"""Keep one user's shadow import in step with legacy, and compare the two systems.

``sync`` re-reads the user's legacy state; if its content changed since the shadow
import was built (or there is none yet), the old import is discarded and a new one
made under the next generation's idempotency key, from a stored snapshot — so a crash
at any line leaves a row the next sync completes with the very same key and body.
Then both next-charge previews are compared with ``prove``'s comparison and the result
kept as a ``ShadowCheck``. A short lease on the row keeps two syncs (a webhook and the
daily beat) and the load step's adoption from interleaving.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.db import transaction, utcnow
from core.errors import NotFound, TwinbillError
from migration import records
from migration.models import Cohort, ShadowCheck, ShadowImport, ShadowRun
from migration.preflight import defer_reason, unsupported_reason
from migration.prove import compare_previews
from migration.shadow import ACTIVE, LIVE, shadowed_import
from migration.transform import build_payload
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.models import Route

if TYPE_CHECKING:
    from migration.deps import SagaDeps

log = logging.getLogger("twinbill.shadow")
LEASE = timedelta(minutes=2)
NEXT_CHARGE = "next_charge"


def field_names(differences: list[dict[str, Any]]) -> list[str]:
    """What differed, by field (an unpaired record by its kind: ``next_charge:missing``)."""
    names = {
        d.get("field") or f"{d.get('record_type', '?')}:{d.get('kind', '?')}" for d in differences
    }
    return sorted(n for n in names if n)


def record_check(
    deps_sessions: Any,
    row_id: str,
    *,
    kind: str,
    trigger: str,
    outcome: str,
    differences: list[dict[str, Any]],
    detail: dict[str, Any] | None = None,
) -> None:
    with transaction(deps_sessions) as session:
        row = session.get(ShadowImport, row_id)
        if row is None:
            return
        session.add(
            ShadowCheck(
                run_id=row.run_id,
                user_id=row.user_id,
                kind=kind,
                trigger=trigger,
                outcome=outcome,
                fields=field_names(differences),
                detail={"differences": differences[:50], **(detail or {})},
                generation=row.generation,
                checked_at=utcnow(),
            )
        )
        if kind == NEXT_CHARGE and outcome in ("clean", "mismatch"):
            row.last_checked_at = utcnow()


def _claim(deps: SagaDeps, row_id: str) -> bool:
    now = utcnow()
    with transaction(deps.sessions) as session:
        active = sa.select(ShadowRun.id).where(ShadowRun.status == ACTIVE)
        claimed = session.execute(
            sa.update(ShadowImport)
            .where(
                ShadowImport.id == row_id,
                ShadowImport.status.in_(LIVE),
                ShadowImport.run_id.in_(active),
                sa.or_(ShadowImport.busy_until.is_(None), ShadowImport.busy_until < now),
            )
            .values(busy_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _release(deps: SagaDeps, row_id: str) -> None:
    with transaction(deps.sessions) as session:
        session.execute(
            sa.update(ShadowImport).where(ShadowImport.id == row_id).values(busy_until=None)
        )


def sync_user(deps: SagaDeps, user_id: str, *, trigger: str) -> str | None:
    """A legacy webhook about ``user_id``: re-sync it if it is shadowed (None: it is not)."""
    with deps.sessions() as session:
        row = shadowed_import(session, user_id)
        row_id = row.id if row is not None else None
    return sync(deps, row_id, trigger=trigger) if row_id else None


def sync(deps: SagaDeps, row_id: str, *, trigger: str) -> str:
    """Bring one shadow import in step and compare; returns the check's outcome (``busy``:
    another sync holds it; ``closed``: not in an active rehearsal any more)."""
    if not _claim(deps, row_id):
        with deps.sessions() as session:
            row = session.get(ShadowImport, row_id)
            return "busy" if row is not None and row.status in LIVE else "closed"
    try:
        return _sync(deps, row_id, trigger)
    except TwinbillError as exc:
        log.warning("shadow sync of %s (%s) failed: %s", row_id, trigger, exc)
        error = {"error": f"{type(exc).__name__}: {exc}"[:500], "kind": getattr(exc, "kind", "")}
        record_check(
            deps.sessions,
            row_id,
            kind=NEXT_CHARGE,
            trigger=trigger,
            outcome="error",
            differences=[],
            detail=error,
        )
        return "error"
    finally:
        _release(deps, row_id)


def _sync(deps: SagaDeps, row_id: str, trigger: str) -> str:
    from migration.shadow import discard

    with deps.sessions() as session:
        row = session.get(ShadowImport, row_id)
        assert row is not None
        run = session.get(ShadowRun, row.run_id)
        cohort = session.get(Cohort, row.cohort)
        route = session.get(Route, row.user_id)
        bug, in_flight = run.inject_bug if run else None, bool(cohort and cohort.include_in_flight)
    if route is None or route.state != routing.LEGACY or route.legacy_customer_id is None:
        state = route.state if route is not None else "unknown"
        discard(deps, row_id, reason=f"user is {state}, no longer on legacy: not shadowed")
        return "closed"
    ref = UserRef(route.user_id, route.legacy_customer_id, route.new_customer_id)
    fresh = deps.legacy.snapshot(ref)
    digest = records.content_hash(fresh.objects)
    reimported = False
    if digest != row.content_hash:
        if row.import_id is not None:
            with contextlib.suppress(NotFound):
                deps.new.discard_import(
                    row.import_id, idempotency_key=f"{row_id}:g{row.generation}:discard"
                )
        snapshot_id, _ = records.store_snapshot(deps.sessions, row_id, fresh)
        with transaction(deps.sessions) as session:
            row = session.get(ShadowImport, row_id)
            assert row is not None
            reimported = row.generation > 0
            row.generation += 1
            row.snapshot_id, row.content_hash, row.import_id = snapshot_id, digest, None
            row.status, row.reason = "pending", None
    with deps.sessions() as session:
        row = session.get(ShadowImport, row_id)
        assert row is not None
        generation, snapshot_id, import_id = row.generation, row.snapshot_id, row.import_id
    if import_id is None:
        assert snapshot_id is not None
        snap = records.load_snapshot(deps.sessions, snapshot_id)
        history = deps.legacy.map_snapshot(snap)
        reason = unsupported_reason(snap.objects) or defer_reason(
            history,
            now=utcnow(),
            renewal_guard=timedelta(0),  # nothing moves: a close renewal is no reason here
            include_in_flight=in_flight,
            raw=snap.objects,
        )
        if reason:
            with transaction(deps.sessions) as session:
                row = session.get(ShadowImport, row_id)
                assert row is not None
                row.status, row.reason, row.last_checked_at = "skipped", reason[:500], utcnow()
            return "skipped"
        payload = build_payload(history, source_ref=row_id, bug=bug).payload
        result = deps.new.create_import(payload, idempotency_key=f"{row_id}:g{generation}:import")
        import_id = result.id
        with transaction(deps.sessions) as session:
            row = session.get(ShadowImport, row_id)
            assert row is not None
            row.import_id, row.status, row.reason = import_id, "active", None
    result = compare_previews(deps, ref, import_id)
    outcome = "clean" if result.clean else "mismatch"
    differences = [d.to_dict() for d in result.differences]
    record_check(
        deps.sessions,
        row_id,
        kind=NEXT_CHARGE,
        trigger=trigger,
        outcome=outcome,
        differences=differences,
        detail={
            "reimported": reimported,
            "legacy": result.legacy.model_dump(mode="json"),
            "new": result.new.model_dump(mode="json"),
        },
    )
    return outcome
