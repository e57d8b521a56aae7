"""The saga's steps. Each takes (deps, migration), returns (fields to advance, detail).

Every step is idempotent: it may run again after a crash at any line, and its
writes carry idempotency keys derived from the migration id (and generation),
so a repeat lands on the same object instead of creating a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.canonical import SubscriptionStatus
from core.db import transaction
from core.errors import (
    BackendRejected,
    BackendUnavailable,
    IllegalTransition,
    NotFound,
    TwinbillError,
    UnknownUser,
)
from migration import records
from migration.deps import Deferred, Result, SagaDeps, Step
from migration.preflight import defer_reason, unsupported_reason
from migration.transform import build_payload
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.models import Route

if TYPE_CHECKING:
    from migration.models import Migration

_OVER = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
ACTOR = "system:saga"


def key_for(mig: Migration, step: str) -> str | None:
    return {
        "load": f"{mig.id}:g{mig.generation}:import",
        "activate": f"{mig.id}:activate",
        "discard": f"{mig.id}:g{mig.generation}:discard",
    }.get(step)


def _ref(deps: SagaDeps, user_id: str) -> UserRef:
    with deps.sessions() as session:
        route = session.get(Route, user_id)
        if route is None:
            raise UnknownUser(user_id)
        return UserRef(user_id, route.legacy_customer_id, route.new_customer_id)


def _take_snapshot(deps: SagaDeps, mig: Migration) -> Result:
    snap = deps.legacy.snapshot(_ref(deps, mig.user_id))
    snapshot_id, digest = records.store_snapshot(deps.sessions, mig.id, snap)
    return {"snapshot_id": snapshot_id}, _snapshot_detail(digest, snap.objects)


def _snapshot_detail(digest: str, objects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    counts = {k: len(v) if isinstance(v, list) else 1 for k, v in objects.items()}
    return {"content_hash": digest, "objects": counts, **extra}


def _prefetched(deps: SagaDeps, mig: Migration) -> Result | None:
    """The snapshot the cohort's bulk read stored for this migration (migration.prefetch),
    unless it is older than ``snapshot_max_age``: then the user is read again."""
    if mig.snapshot_id is None:
        return None
    snap = records.fresh_snapshot(deps.sessions, mig.snapshot_id, max_age=deps.snapshot_max_age)
    if snap is None:
        return None
    whole = deps.legacy.complete_snapshot(snap)  # the per-customer part: one request
    if whole is snap:
        digest, snapshot_id = records.content_hash(snap.objects), mig.snapshot_id
    else:
        snapshot_id, digest = records.store_snapshot(deps.sessions, mig.id, whole)
    return {"snapshot_id": snapshot_id}, _snapshot_detail(digest, whole.objects, prefetched=True)


def step_preflight(deps: SagaDeps, mig: Migration) -> Result:
    with deps.sessions() as session:
        route = session.get(Route, mig.user_id)
        if route is None:
            raise UnknownUser(mig.user_id)
        if route.state == routing.NEW or route.system == "new":
            raise IllegalTransition(f"user {mig.user_id!r} already lives in the new system")
        if route.state not in (routing.LEGACY, routing.MIGRATING):
            raise IllegalTransition(f"user {mig.user_id!r} is {route.state}, not legacy")
    advance, detail = _prefetched(deps, mig) or _take_snapshot(deps, mig)
    snap = records.load_snapshot(deps.sessions, advance["snapshot_id"])
    unsupported = unsupported_reason(snap.objects)  # before mapping, which would refuse it
    if unsupported:
        raise Deferred(unsupported)
    history = deps.legacy.map_snapshot(snap)
    reason = defer_reason(
        history,
        now=datetime.now(UTC),
        renewal_guard=deps.renewal_guard,
        include_in_flight=mig.include_in_flight,
        raw=snap.objects,
    )
    if reason:
        raise Deferred(reason)
    return advance, detail


def step_lock(deps: SagaDeps, mig: Migration) -> Result:
    with transaction(deps.sessions) as session:
        route = session.get(Route, mig.user_id)
        if route is not None and route.state != routing.MIGRATING:
            routing.transition(
                session,
                mig.user_id,
                routing.MIGRATING,
                actor=ACTOR,
                reason=f"migration {mig.id}",
                cache=deps.cache,
                cohort=mig.cohort or route.cohort,
            )
    return {}, None


def step_fetch(deps: SagaDeps, mig: Migration) -> Result:
    """Under the lock. The preflight snapshot is reused: the re-check step proves that
    nothing changed between it and the import, so a second full read buys nothing."""
    if mig.snapshot_id is not None:
        return {}, {"reused_snapshot": mig.snapshot_id}
    return _take_snapshot(deps, mig)


def step_transform(deps: SagaDeps, mig: Migration) -> Result:
    assert mig.snapshot_id is not None
    snap = records.load_snapshot(deps.sessions, mig.snapshot_id)
    history = deps.legacy.map_snapshot(snap)
    out = build_payload(history, source_ref=mig.id, bug=mig.inject_bug)
    return {}, {"counts": out.counts, "skipped": out.skipped}


def _payload(deps: SagaDeps, mig: Migration) -> dict[str, Any]:
    assert mig.snapshot_id is not None
    snap = records.load_snapshot(deps.sessions, mig.snapshot_id)
    return build_payload(
        deps.legacy.map_snapshot(snap), source_ref=mig.id, bug=mig.inject_bug
    ).payload


def step_load(deps: SagaDeps, mig: Migration) -> Result:
    from migration import shadow

    # a cohort rehearsed in shadow: its pending import, when built from this very content
    reused = shadow.adopt_for_load(deps, mig, shadow.snapshot_hash(deps, mig))
    if reused is not None:
        return {"import_id": reused}, {"import_id": reused, "status": "pending", "shadow": True}
    result = deps.new.create_import(_payload(deps, mig), idempotency_key=key_for(mig, "load"))
    return {"import_id": result.id}, {"import_id": result.id, "status": result.status}


def step_recheck(deps: SagaDeps, mig: Migration) -> Result:
    """Legacy unchanged since the snapshot: from the shared event feed, else a full re-read."""
    from migration.recheck import recheck

    return recheck(deps, mig, _ref(deps, mig.user_id))


def step_prove(deps: SagaDeps, mig: Migration) -> Result:
    """Last check before the pivot: both systems must agree on the user's next charge."""
    from migration.prove import prove

    return {}, prove(deps, mig, _ref(deps, mig.user_id))


def step_cancel(deps: SagaDeps, mig: Migration) -> Result:
    """The pivot. Marked durably *before* the first legacy write.

    One legacy request per live subscription: the snapshot (re-checked unchanged just
    before) says which are live, so a first run reads nothing. A run that finds the pivot
    already marked is a repeat (a crash, a retried step): some may be canceled already,
    and the backend reads first where a second cancel would not be refused."""
    resumed = mig.pivoted
    with transaction(deps.sessions) as session:
        from migration.models import Migration as M

        row = session.get(M, mig.id)
        assert row is not None
        row.pivoted = True
        routing.mark_pivoted(
            session,
            mig.user_id,
            actor=ACTOR,
            reason=f"migration {mig.id} passed the pivot (legacy cancel)",
            cache=deps.cache,
        )
    assert mig.snapshot_id is not None
    snap = records.load_snapshot(deps.sessions, mig.snapshot_id)
    history = deps.legacy.map_snapshot(snap)
    ref = _ref(deps, mig.user_id)
    answers: dict[str, str] = {}
    # every subscription that is not over, not only the billing ones: an `incomplete` one
    # turns `active` when its first invoice gets paid (and localstripe shows trials as
    # `incomplete`, docs/legacy-gaps.md), which would bill a user who now lives in new
    for sub in history.subscriptions:
        if sub.status in _OVER:
            continue
        answers[sub.id] = _cancel_one(deps, mig, ref, sub.id, known_live=not resumed)
    # each status as legacy answered the cancel: verify reads them instead of a listing
    # when the event feed proves nothing else changed (migration.verify)
    return {}, {"canceled": list(answers), "answers": answers}


def _cancel_one(
    deps: SagaDeps, mig: Migration, ref: UserRef, sub_id: str, *, known_live: bool
) -> str:
    """Cancel one subscription; its status as legacy answered (the cancel's response, or
    the listing after a 5xx). Stripe replays a saved 500 under the same idempotency key:
    after a 5xx, re-read the subscription; only if it is still live, try again under a
    *new* key."""
    for attempt in range(1, deps.max_attempts + 1):
        key = f"{mig.id}:cancel:{sub_id}:{attempt}"
        try:
            answer = deps.legacy.cancel_for_migration(
                ref, sub_id, migration_id=mig.id, idempotency_key=key, known_live=known_live
            )
            return str(answer.status)
        except BackendUnavailable:
            status = _legacy_status(deps, ref, sub_id)
            if status in _OVER:
                return str(status)
            known_live = status is not None  # just read, still live (None: the read failed)
            if attempt == deps.max_attempts:
                raise
            from core.ratelimit import backoff_delay

            deps.sleep(min(backoff_delay(attempt), 30.0))
    raise AssertionError("unreachable: the last attempt raises")


def _legacy_status(deps: SagaDeps, ref: UserRef, sub_id: str) -> str | None:
    """Its status as legacy lists it now ("missing" if not listed); None: legacy could
    not say."""
    try:
        subs = deps.legacy.list_subscriptions(ref)
    except TwinbillError:
        return None
    return next((str(s.status) for s in subs if s.id == sub_id), "missing")


def step_activate(deps: SagaDeps, mig: Migration) -> Result:
    assert mig.import_id is not None
    result = deps.new.activate_import(mig.import_id, idempotency_key=key_for(mig, "activate"))
    subs = result.raw.get("subscriptions") or []
    return {}, {
        "status": result.status,
        "next_renewals": {s.get("external_id"): s.get("next_renewal_at") for s in subs},
    }


def step_flip(deps: SagaDeps, mig: Migration) -> Result:
    new_customer = None
    try:
        bundle = deps.new.get_bundle(mig.user_id)
        new_customer = (bundle.get("customer") or {}).get("id")
    except NotFound:
        pass
    with transaction(deps.sessions) as session:
        route = session.get(Route, mig.user_id)
        assert route is not None
        if route.state != routing.NEW:
            routing.transition(
                session,
                mig.user_id,
                routing.NEW,
                actor=ACTOR,
                reason=f"migration {mig.id}",
                cache=deps.cache,
                system="new",
                new_customer_id=new_customer,
            )
    return {}, {"new_customer_id": new_customer}


def step_verify(deps: SagaDeps, mig: Migration) -> Result:
    if deps.verifier is not None:
        return {}, deps.verifier(mig, deps)
    return {}, count_and_total_check(deps, mig)


def count_and_total_check(deps: SagaDeps, mig: Migration) -> dict[str, Any]:
    """Fallback verification: same number of records and same per-currency totals."""
    payload = _payload(deps, mig)
    new = deps.new.map_bundle(deps.new.get_bundle(mig.user_id))
    counts_new = {
        "subscriptions": len([s for s in new.subscriptions if s.legacy_id]),
        "invoices": len([i for i in new.invoices if i.legacy_id]),
        "payments": len([p for p in new.payments if p.legacy_id]),
        "refunds": len([r for r in new.refunds if r.legacy_id]),
    }
    counts_old = {k: len(payload[k]) for k in counts_new}
    paid_old = sum(i["amount_paid"] for i in payload["invoices"])
    paid_new = sum(i.amount_paid for i in new.invoices if i.legacy_id)
    clean = counts_old == counts_new and paid_old == paid_new
    return {
        "clean": clean,
        "counts": counts_new,
        "expected": counts_old,
        "amount_paid": [paid_old, paid_new],
    }


def step_discard(deps: SagaDeps, mig: Migration) -> Result:
    """Dry run only: the import proved the payload acceptable; now remove it."""
    discard_import(deps, mig)
    return {"import_id": None}, {"discarded": True}


# -- helpers used by compensation and restarts -------------------------------------------


def discard_import(deps: SagaDeps, mig: Migration) -> None:
    mig = records.load(deps.sessions, mig.id)
    if mig.import_id is None:
        return
    try:
        deps.new.discard_import(mig.import_id, idempotency_key=f"{mig.id}:discard:{mig.import_id}")
    except NotFound:
        pass
    except BackendRejected as exc:
        if "active" in str(exc):
            raise IllegalTransition(
                f"import {mig.import_id} is already active; cannot compensate, continue forward"
            ) from exc
        raise


def release_lock(
    deps: SagaDeps, mig: Migration, to_state: str, reason: str, *, actor: str = ACTOR
) -> None:
    """Move the user's route from ``migrating`` to ``to_state`` (the compensation of either
    saga's lock, or failed); a route that already left ``migrating`` is left alone."""
    with transaction(deps.sessions) as session:
        route = session.get(Route, mig.user_id)
        if route is not None and route.state == routing.MIGRATING:
            routing.transition(
                session,
                mig.user_id,
                to_state,
                actor=actor,
                reason=reason[:500],
                cache=deps.cache,
            )


def unlock(deps: SagaDeps, mig: Migration) -> None:
    release_lock(deps, mig, routing.LEGACY, f"migration {mig.id} compensated")


def mark_failed(deps: SagaDeps, mig: Migration, *, reason: str) -> None:
    release_lock(deps, mig, routing.FAILED, reason)


# -- the table the saga runs ------------------------------------------------------------

#: every step by name; the saga's order is ``SAGA`` (``DRY_RUN`` for a dry run)
STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("preflight", step_preflight),
        Step("lock", step_lock, undo=unlock),
        Step("fetch", step_fetch),
        Step("transform", step_transform),
        Step("load", step_load, undo=discard_import),
        Step("recheck", step_recheck),
        Step("prove", step_prove),
        Step("cancel", step_cancel, pivot=True),
        Step("activate", step_activate),
        Step("flip", step_flip),
        Step("verify", step_verify),
        Step("discard", step_discard),
    )
}
SAGA = (
    "preflight",
    "lock",
    "fetch",
    "transform",
    "load",
    "recheck",
    "prove",
    "cancel",
    "activate",
    "flip",
    "verify",
)
DRY_RUN = ("preflight", "fetch", "transform", "load", "prove", "discard")
