"""The routing table's rules: who lives where, and the only way to change it.

``transition`` is the single function that changes a route: it checks the
state machine, bumps the version, writes the audit entry in the caller's
transaction, and invalidates the cache once that transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from core import audit
from core.errors import IllegalTransition, UnknownUser
from multiplexer.cache import RouteCache, RouteInfo
from multiplexer.models import Route

LEGACY, MIGRATING, NEW, FAILED, HELD = "legacy", "migrating", "new", "failed", "held"
STATES = (LEGACY, MIGRATING, NEW, FAILED, HELD)

#: The state machine. ``new -> legacy`` is absent on purpose: once the legacy
#: subscriptions are canceled, routing back would leave the user billed nowhere; a
#: rollback goes ``new -> migrating -> legacy`` and re-creates them first (``clear_pivot``). For the
#: same reason ``failed -> legacy`` is legal only for a user whose migration never passed
#: the pivot (``Route.pivoted_at`` unset): after it, see ``AFTER_PIVOT``.
ALLOWED: dict[str, frozenset[str]] = {
    LEGACY: frozenset({MIGRATING, HELD}),
    MIGRATING: frozenset({LEGACY, NEW, FAILED}),
    FAILED: frozenset({MIGRATING, LEGACY, NEW, HELD}),
    NEW: frozenset({HELD, MIGRATING}),  # migrating: a rollback (migration.rollback) holds it
    HELD: frozenset({LEGACY, NEW, FAILED}),  # release: back to where it was held from
}
WRITABLE = frozenset({LEGACY, NEW})
#: Targets no route may reach once its migration passed the pivot (legacy canceled, the new
#: system holds or is about to hold the user): only forward (resume, or ``new``) or held.
AFTER_PIVOT_FORBIDDEN = frozenset({LEGACY})

#: What ``allowed_actions`` may offer, with the label a person reads.
ACTIONS = {
    "hold": "Hold",
    "release": "Release",
    "legacy": "Route back to legacy",
    "resume": "Resume the migration",
}


def allowed_targets(route: Route) -> frozenset[str]:
    """The states ``transition`` would accept for this route now."""
    targets = ALLOWED[route.state]
    if route.pivoted_at is not None:
        targets = targets - AFTER_PIVOT_FORBIDDEN
    if route.state == HELD and route.held_from is not None:
        targets = targets & {route.held_from}
    return targets


def allowed_actions(route: Route) -> tuple[str, ...]:
    """What an operator may do with this route now, in display order (keys of ``ACTIONS``).

    Everything offered is legal for ``transition``: ``hold`` / ``release`` / ``legacy``
    (route back, only before the pivot); ``resume`` is the migration's forward recovery,
    offered for a user that failed after the pivot (route ``failed`` with ``pivoted_at``).
    A migrating route offers nothing: the saga owns it.
    """
    targets = allowed_targets(route)
    actions: list[str] = []
    if route.state == HELD:
        if route.held_from in targets:
            actions.append("release")
        return tuple(actions)
    if HELD in targets:
        actions.append("hold")
    if route.state == FAILED and LEGACY in targets:
        actions.append("legacy")
    if route.state == FAILED and route.pivoted_at is not None:
        actions.append("resume")
    return tuple(actions)


@dataclass(frozen=True, slots=True)
class Change:
    before: dict[str, Any] | None
    after: dict[str, Any]


def info_of(route: Route) -> RouteInfo:
    return RouteInfo(
        user_id=route.user_id,
        system=route.system,
        state=route.state,
        version=route.version,
        legacy_customer_id=route.legacy_customer_id,
        new_customer_id=route.new_customer_id,
        currency=route.currency,
    )


def _invalidate_after_commit(session: Session, cache: RouteCache | None, user_id: str) -> None:
    if cache is None:
        return
    cache.invalidate(user_id)  # now: readers in this process stop trusting the old entry

    @event.listens_for(session, "after_commit", once=True)
    def _again(_s: Session) -> None:  # and again after commit, against a racing re-fill
        cache.invalidate(user_id)


def transition(
    session: Session,
    user_id: str,
    to_state: str,
    *,
    actor: str,
    reason: str,
    cache: RouteCache | None = None,
    system: str | None = None,
    expected_version: int | None = None,
    **fields: Any,
) -> Route:
    """Move a user's route to ``to_state`` (and optionally another system / ids)."""
    if to_state not in STATES:
        raise IllegalTransition(f"unknown route state {to_state!r}")
    route = session.execute(
        sa.select(Route).where(Route.user_id == user_id).with_for_update()
    ).scalar_one_or_none()
    if route is None:
        raise UnknownUser(user_id)
    if expected_version is not None and route.version != expected_version:
        raise IllegalTransition(
            f"route of {user_id!r} changed underneath (version {route.version}, "
            f"expected {expected_version}); re-read and retry"
        )
    if to_state != route.state and to_state not in ALLOWED[route.state]:
        raise IllegalTransition(
            f"user {user_id!r}: route cannot go from {route.state!r} to {to_state!r}"
        )
    if route.pivoted_at is not None and to_state in AFTER_PIVOT_FORBIDDEN:
        raise IllegalTransition(
            f"user {user_id!r} passed the pivot of its migration (legacy subscriptions "
            f"canceled): the route cannot go back to {to_state!r}; resume the migration "
            f"forward (runbook: a user failed after the pivot)"
        )
    if route.state == HELD and to_state != route.held_from and route.held_from is not None:
        raise IllegalTransition(
            f"user {user_id!r} was held from {route.held_from!r}; release it there first"
        )
    before = route.snapshot()
    if to_state == HELD:
        route.held_from = route.state
    elif route.state == HELD:
        route.held_from = None
    route.state = to_state
    if system is not None:
        route.system = system
    for key, value in fields.items():
        if not hasattr(Route, key):
            raise TypeError(f"Route has no field {key!r}")
        setattr(route, key, value)
    route.version += 1
    audit.record(
        session,
        actor=actor,
        action=f"route.{to_state}",
        resource_type="route",
        resource_id=user_id,
        before=before,
        after=route.snapshot(),
        reason=reason,
    )
    session.flush()
    _invalidate_after_commit(session, cache, user_id)
    return route


def mark_pivoted(
    session: Session, user_id: str, *, actor: str, reason: str, cache: RouteCache | None = None
) -> None:
    """Remember on the route that its migration passed the pivot (in the caller's
    transaction, the one that marks the migration pivoted, before any legacy write)."""
    route = session.execute(
        sa.select(Route).where(Route.user_id == user_id).with_for_update()
    ).scalar_one_or_none()
    if route is None:
        raise UnknownUser(user_id)
    if route.pivoted_at is not None:
        return
    from core.db import utcnow

    route.pivoted_at = utcnow()
    route.version += 1
    audit.record(
        session,
        actor=actor,
        action="route.pivoted",
        resource_type="route",
        resource_id=user_id,
        after={**route.snapshot(), "pivoted_at": route.pivoted_at.isoformat()},
        reason=reason,
    )
    session.flush()
    _invalidate_after_commit(session, cache, user_id)


def clear_pivot(
    session: Session, user_id: str, *, actor: str, reason: str, cache: RouteCache | None = None
) -> None:
    """A rollback re-created the user's legacy subscriptions and canceled the new ones: the
    route may lead back to legacy again (in the caller's transaction, with the flip)."""
    route = session.execute(
        sa.select(Route).where(Route.user_id == user_id).with_for_update()
    ).scalar_one_or_none()
    if route is None:
        raise UnknownUser(user_id)
    if route.pivoted_at is None:
        return
    before = {**route.snapshot(), "pivoted_at": route.pivoted_at.isoformat()}
    route.pivoted_at = None
    route.version += 1
    audit.record(
        session,
        actor=actor,
        action="route.pivot_cleared",
        resource_type="route",
        resource_id=user_id,
        before=before,
        after={**route.snapshot(), "pivoted_at": None},
        reason=reason,
    )
    session.flush()
    _invalidate_after_commit(session, cache, user_id)


def create_route(
    session: Session,
    user_id: str,
    *,
    system: str,
    actor: str,
    reason: str,
    cache: RouteCache | None = None,
    **fields: Any,
) -> Route:
    """Create a route row (inventory sync, import, or placement of a new user)."""
    fields.setdefault("facets", {})
    route = Route(user_id=user_id, system=system, state=system, version=1, **fields)
    session.add(route)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="route.created",
        resource_type="route",
        resource_id=user_id,
        before=None,
        after=route.snapshot(),
        reason=reason,
    )
    _invalidate_after_commit(session, cache, user_id)
    return route


def lookup(session: Session, cache: RouteCache, user_id: str) -> RouteInfo:
    """For reads: cached, version-carrying route information."""
    hit = cache.get(user_id)
    if hit is not None:
        return hit
    return resolve_for_write(session, cache, user_id)


def resolve_for_write(session: Session, cache: RouteCache, user_id: str) -> RouteInfo:
    """For writes: always the database's current row (refreshes the cache on the way)."""
    route = session.get(Route, user_id, populate_existing=True)
    if route is None:
        raise UnknownUser(user_id)
    info = info_of(route)
    cache.put(info)
    return info
