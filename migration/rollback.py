"""The reverse saga: a user the forward saga moved goes back to legacy, safely.

    rb_lock -> rb_snapshot -> rb_build -> rb_create -> rb_prove     (compensated on failure)
    -> RB_CANCEL (the pivot: cancel in the new system)
    -> rb_activate -> rb_flip -> rb_verify                          (forward recovery only)

Same runner as the forward saga (``migration.saga``: rows, step records, leases,
heartbeats, the reaper, post-pivot retrying), over this step table: a migration row
with ``direction = "rollback"``. Before the pivot a failure deletes what ``rb_create``
made in legacy and gives the route back to ``new``; from the pivot on, only forward.

* ``rb_lock``: route ``new -> migrating`` (the application's writes wait, reads go on);
* ``rb_snapshot``: the new system's bundle (its own answer), stored with a content hash;
* ``rb_build``: the legacy re-creation of every billing subscription (``rollback_plan``);
* ``rb_create``: each one created in legacy *trialing until the new system's next
  charge*, no proration, no invoice now, marked with the rollback's id (idempotent:
  found again by that mark); undo: removed again;
* ``rb_prove``: legacy's own upcoming-invoice preview of the re-created subscriptions
  against the new system's own next charge for the user (``GET /v1/users/{id}/preview``);
* ``rb_cancel``: the new system cancels every subscription of the user in one call
  (no proration, no refund, ``cause: rollback``: its webhooks are suppressed);
* ``rb_activate``: nothing to call — the legacy subscriptions start billing at their
  trial end by themselves; the step checks they are still there;
* ``rb_flip``: route ``migrating -> legacy``, the forward pivot mark cleared (a later
  forward migration is allowed again); the new customer id is kept, for the history;
* ``rb_verify``: from both systems' own APIs — the new system charges nothing, legacy
  charges what was proved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.canonical import BillingState, NextCharges
from core.db import transaction
from core.errors import TwinbillError, UnknownUser
from migration import records, steps
from migration.deps import Result, SagaDeps, Step
from migration.rollback_plan import check, plan_of_bundle, spec_from_dict
from multiplexer import routing
from multiplexer.backends.base import RawSnapshot, UserRef
from multiplexer.models import Route
from reconciler.next_charge import compare_next_charges

if TYPE_CHECKING:
    from migration.models import Migration

ACTOR = "system:rollback"
PIVOT, PROVE, VERIFY = "rb_cancel", "rb_prove", "rb_verify"
NOOP_ACTIVATE = (
    "no call: each legacy subscription was created trialing until the new system's next "
    "charge, so legacy starts billing there by itself"
)


def _ref(deps: SagaDeps, user_id: str) -> UserRef:
    with deps.sessions() as session:
        route = session.get(Route, user_id)
        if route is None:
            raise UnknownUser(user_id)
        return UserRef(user_id, route.legacy_customer_id, route.new_customer_id)


def _detail(deps: SagaDeps, mig: Migration, step: str) -> dict[str, Any]:
    """The detail a finished step recorded (durable: a later step of any run reads it)."""
    with deps.sessions() as session:
        row = records.last_ok_step(session, mig.id, step)
        if row is not None:
            return dict(row.detail or {})
    raise TwinbillError(f"rollback {mig.id}: step {step} has not finished")


def step_lock(deps: SagaDeps, mig: Migration) -> Result:
    check(deps, mig.user_id, locked=_route_state(deps, mig) == routing.MIGRATING)
    with transaction(deps.sessions) as session:
        route = session.get(Route, mig.user_id)
        if route is not None and route.state != routing.MIGRATING:
            routing.transition(
                session,
                mig.user_id,
                routing.MIGRATING,
                actor=ACTOR,
                reason=f"rollback {mig.id}",
                cache=deps.cache,
            )
    return {}, None


def _route_state(deps: SagaDeps, mig: Migration) -> str | None:
    with deps.sessions() as session:
        route = session.get(Route, mig.user_id)
        return route.state if route is not None else None


def unlock(deps: SagaDeps, mig: Migration) -> None:
    steps.release_lock(deps, mig, routing.NEW, f"rollback {mig.id} compensated", actor=ACTOR)


def step_snapshot(deps: SagaDeps, mig: Migration) -> Result:
    if mig.snapshot_id is not None:
        return {}, {"reused_snapshot": mig.snapshot_id}
    bundle = deps.new.get_bundle(mig.user_id)
    customer = (bundle.get("customer") or {}).get("id") or ""
    snapshot_id, digest = records.store_snapshot(
        deps.sessions, mig.id, RawSnapshot(mig.user_id, customer, bundle)
    )
    imp = bundle.get("import") or {}
    return {"snapshot_id": snapshot_id, "import_id": imp.get("id")}, {
        "content_hash": digest,
        "import": imp,
        "objects": {k: len(v) for k, v in bundle.items() if isinstance(v, list)},
    }


def step_build(deps: SagaDeps, mig: Migration) -> Result:
    assert mig.snapshot_id is not None
    bundle = records.load_snapshot(deps.sessions, mig.snapshot_id).objects
    return {}, plan_of_bundle(deps, mig.user_id, bundle).to_dict()


def step_create(deps: SagaDeps, mig: Migration) -> Result:
    ref = _ref(deps, mig.user_id)
    created = {}
    for raw in _detail(deps, mig, "rb_build")["recreate"]:
        spec = spec_from_dict(raw)
        sub = deps.legacy.recreate_subscription(  # type: ignore[attr-defined]
            ref, spec, rollback_id=mig.id, idempotency_key=f"{mig.id}:rb_create:{spec.of}"
        )
        created[spec.of] = sub.id
    return {}, {"created": created}


def remove_created(deps: SagaDeps, mig: Migration) -> None:
    """Compensation: every legacy subscription this rollback created, found by its mark
    (so one created just before a crash, never recorded, goes too)."""
    ref = _ref(deps, mig.user_id)
    if ref.legacy_customer_id is None:
        return
    for sub_id in deps.legacy.recreated_by(ref, mig.id):  # type: ignore[attr-defined]
        deps.legacy.remove_recreated(  # type: ignore[attr-defined]
            ref, sub_id, rollback_id=mig.id, idempotency_key=f"{mig.id}:rb_remove:{sub_id}"
        )


def _legacy_preview(deps: SagaDeps, mig: Migration) -> NextCharges:
    """Legacy's own next charges, a re-creation's trial read as what it stands for: the
    renewal of a subscription that was not itself trialing in the new system (the trial is
    only how billing is made to resume at that date, with nothing invoiced now)."""
    created = _detail(deps, mig, "rb_create")["created"]
    renewals = {
        created[raw["of"]]
        for raw in _detail(deps, mig, "rb_build")["recreate"]
        if not raw["trialing"] and raw["of"] in created
    }
    legacy = deps.legacy.preview_next_charges(_ref(deps, mig.user_id))
    charges = tuple(
        c.model_copy(update={"state": BillingState.RENEWING, "until": None})
        if c.id in renewals and c.state is BillingState.TRIALING
        else c
        for c in legacy.charges
    )
    return legacy.model_copy(update={"charges": charges})


def _previews(deps: SagaDeps, mig: Migration) -> tuple[NextCharges, NextCharges]:
    """Both systems' own next charges, the new side paired onto the re-created legacy ids."""
    created = _detail(deps, mig, "rb_create")["created"]
    legacy = _legacy_preview(deps, mig)
    new = deps.new.preview_user(mig.user_id)  # type: ignore[attr-defined]
    paired = tuple(
        c.model_copy(update={"legacy_id": created.get(c.id, c.legacy_id)}) for c in new.charges
    )
    return legacy, new.model_copy(update={"charges": paired})


def step_prove(deps: SagaDeps, mig: Migration) -> Result:
    """Last check before the pivot: legacy's re-creation charges what the new system would."""
    from migration.prove import ProveFailed, store_result

    legacy, new = _previews(deps, mig)
    result = compare_next_charges(legacy, new)
    detail = {**result.to_dict(), "report_id": store_result(deps, mig, result)}
    if not result.clean:
        raise ProveFailed(result, detail)
    return {}, detail


def step_cancel(deps: SagaDeps, mig: Migration) -> Result:
    """The pivot, marked durably before the new system's write."""
    with transaction(deps.sessions) as session:
        from migration.models import Migration as M

        row = session.get(M, mig.id)
        assert row is not None
        row.pivoted = True
    import_id = _detail(deps, mig, "rb_build")["import_id"]
    result = deps.new.rollback_import(  # type: ignore[attr-defined]
        import_id, rollback_id=mig.id, idempotency_key=f"{mig.id}:rb_cancel"
    )
    subs = result.raw.get("subscriptions") or []
    return {}, {
        "import": {"id": result.id, "status": result.status},
        "canceled": [s["id"] for s in subs if s.get("status") == "canceled"],
    }


def step_activate(deps: SagaDeps, mig: Migration) -> Result:
    created = _detail(deps, mig, "rb_create")["created"]
    live = set(deps.legacy.recreated_by(_ref(deps, mig.user_id), mig.id))  # type: ignore[attr-defined]
    missing = sorted(set(created.values()) - live)
    if missing:
        raise TwinbillError(
            f"rollback {mig.id}: re-created legacy subscriptions {missing} are gone after the "
            "new system's cancel; the user is billed nowhere (runbook: roll a cohort back)"
        )
    return {}, {"noop": True, "why": NOOP_ACTIVATE, "live": sorted(live)}


def step_flip(deps: SagaDeps, mig: Migration) -> Result:
    with transaction(deps.sessions) as session:
        route = session.get(Route, mig.user_id)
        assert route is not None
        reason = f"rollback {mig.id}"
        routing.clear_pivot(session, mig.user_id, actor=ACTOR, reason=reason, cache=deps.cache)
        if route.state != routing.LEGACY:
            routing.transition(
                session,
                mig.user_id,
                routing.LEGACY,
                actor=ACTOR,
                reason=reason,
                cache=deps.cache,
                system="legacy",
            )
    return {}, {"route": "legacy"}


def step_verify(deps: SagaDeps, mig: Migration) -> Result:
    """Exactly one billing system, the same next charge: from each system's own answers."""
    proved = _detail(deps, mig, PROVE)
    legacy = _legacy_preview(deps, mig)
    new = deps.new.preview_user(mig.user_id)  # type: ignore[attr-defined]
    still_new = [c.id for c in new.charges if c.charge_at is not None]
    drift = compare_next_charges(NextCharges.model_validate(proved["legacy"]), legacy)
    build = _detail(deps, mig, "rb_build")
    return {}, {
        "clean": not still_new and drift.clean,
        "new_still_charging": still_new,
        "legacy_next": [
            c.model_dump(mode="json", include={"id", "charge_at", "amount_due", "currency"})
            for c in legacy.charges
            if c.charge_at is not None
        ],
        "differences": [d.to_dict() for d in drift.differences],
        "history_in_new": build["history"],
    }


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("rb_lock", step_lock, undo=unlock),
        Step("rb_snapshot", step_snapshot),
        Step("rb_build", step_build),
        Step("rb_create", step_create, undo=remove_created),
        Step(PROVE, step_prove),
        Step(PIVOT, step_cancel, pivot=True),
        Step("rb_activate", step_activate),
        Step("rb_flip", step_flip),
        Step(VERIFY, step_verify),
    )
}
ORDER = tuple(STEPS)


# -- what the CLI and the admin call ------------------------------------------------------


def plan_user(deps: SagaDeps, user_id: str) -> dict[str, Any]:
    """A dry run: what a rollback of the user would do, or the refusal; reads only."""
    return check(deps, user_id).to_dict()


def rollback_user(deps: SagaDeps, user_id: str) -> Migration:
    """Roll one user back synchronously. Refusals are raised before anything is written."""
    from migration import saga

    check(deps, user_id)
    mig_id = records.create(deps.sessions, user_id, direction="rollback")
    return saga.run(deps, mig_id)


def cohort_users(deps: SagaDeps, name: str) -> list[str]:
    """The cohort's members who live in the new system now (what `cohort rollback` moves)."""
    import sqlalchemy as sa

    from migration.models import CohortMember

    with deps.sessions() as session:
        from migration import cohorts

        cohorts.get(session, name)  # an unknown cohort is refused by name
        rows = session.execute(
            sa.select(CohortMember.user_id)
            .join(Route, Route.user_id == CohortMember.user_id)
            .where(CohortMember.cohort == name, Route.state == routing.NEW)
            .order_by(CohortMember.user_id)
        )
        return [r[0] for r in rows]


def after_cohort_rollback(deps: SagaDeps, name: str, mig: Migration) -> None:
    """A member rolled back is pending again: `cohort run` would move it forward anew."""
    from migration.models import CohortMember

    if mig.status != "succeeded":
        return
    with transaction(deps.sessions) as session:
        member = session.get(CohortMember, (name, mig.user_id))
        if member is not None:
            member.status, member.migration_id = "pending", mig.id
            member.reason = f"rolled back to legacy by {mig.id}"
