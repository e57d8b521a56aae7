"""Cohorts: named sets of users migrated together.

Selection is pure over inventory rows (``select_users``); everything else is a
short transaction. Paused and halted cohorts start no new user (users already running
finish their saga — stopping a saga midway is what the reaper is for). Progress, the
halt on a crossed failure threshold and the done decision are ``migration.cohort_progress``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from core.errors import InvalidInput
from migration.models import Cohort, CohortMember, Migration
from multiplexer import facets as facets_of
from multiplexer.models import Route

FINISHED = ("done", "failed")


@dataclass(frozen=True)
class Candidate:
    user_id: str
    facets: dict[str, Any]


def _facet(c: Candidate, name: str) -> Any:
    return c.facets.get(name)


def select_users(
    candidates: Sequence[Candidate],
    *,
    where: dict[str, set[str]] | None = None,
    min_complexity: int | None = None,
    max_complexity: int | None = None,
    size: int | None = None,
    stratify: Sequence[str] = (),
    seed: int = 0,
) -> list[str]:
    """Filter (``where``: facet -> wanted values, ``multiplexer.facets.matches``), then
    sample ``size`` users covering every value of each stratify field."""
    pool = [
        c
        for c in candidates
        if all(facets_of.matches(k, _facet(c, k), v) for k, v in (where or {}).items())
        and (min_complexity is None or (_facet(c, "complexity") or 0) >= min_complexity)
        and (max_complexity is None or (_facet(c, "complexity") or 0) <= max_complexity)
    ]
    pool.sort(key=lambda c: c.user_id)
    rng = random.Random(seed)
    rng.shuffle(pool)
    if size is None or size >= len(pool):
        return sorted(c.user_id for c in pool)
    chosen: dict[str, Candidate] = {}
    for fld in stratify:  # first one user per distinct value of every stratify field
        seen: set[Any] = {_facet(c, fld) for c in chosen.values()}
        for c in pool:
            value = _facet(c, fld)
            if value not in seen and len(chosen) < size:
                chosen[c.user_id] = c
                seen.add(value)
    for c in pool:
        if len(chosen) >= size:
            break
        chosen.setdefault(c.user_id, c)
    return sorted(chosen)


def candidates(session: Session) -> list[Candidate]:
    """Users still on legacy and not in any unfinished cohort, with their inventory facets
    (``multiplexer.facets``; the clock-bound ones computed now)."""
    now = utcnow()
    busy = sa.select(CohortMember.user_id).where(CohortMember.status.notin_(FINISHED))
    rows = session.execute(
        sa.select(Route.user_id, Route.facets, Route.currency).where(
            Route.state == "legacy",
            Route.legacy_customer_id.is_not(None),
            Route.user_id.notin_(busy),
        )
    )
    return [
        Candidate(r.user_id, facets_of.live({"currency": r.currency, **(r.facets or {})}, now))
        for r in rows
    ]


def create(
    sessions: sessionmaker[Session],
    name: str,
    user_ids: Iterable[str],
    *,
    actor: str,
    definition: dict[str, Any] | None = None,
    halt_at_bp: int = 500,
    dry_run: bool = False,
    include_in_flight: bool = False,
    inject_bug: str | None = None,
) -> int:
    ids = list(dict.fromkeys(u.strip() for u in user_ids if u.strip()))
    if not name or len(name) > 80:
        raise InvalidInput("cohort name must be 1-80 characters")
    if not ids:
        raise InvalidInput(f"cohort {name!r} would be empty: no user matched")
    with transaction(sessions) as session:
        if session.get(Cohort, name) is not None:
            raise InvalidInput(f"cohort {name!r} already exists")
        routes = {
            r.user_id: r for r in session.scalars(sa.select(Route).where(Route.user_id.in_(ids)))
        }
        unknown = [u for u in ids if u not in routes]
        if unknown:
            raise InvalidInput(
                f"unknown users (run `twinbill users sync`): {', '.join(unknown[:10])}"
            )
        not_legacy = [u for u in ids if routes[u].state != "legacy"]
        if not_legacy:
            raise InvalidInput(
                "only users on legacy can join a cohort; not: "
                + ", ".join(f"{u} ({routes[u].state})" for u in not_legacy[:10])
            )
        session.add(
            Cohort(
                name=name,
                status="created",
                definition=definition or {},
                halt_at_bp=halt_at_bp,
                dry_run=dry_run,
                include_in_flight=include_in_flight,
                inject_bug=inject_bug,
            )
        )
        session.flush()
        for u in ids:
            session.add(CohortMember(cohort=name, user_id=u, status="pending"))
        audit.record(
            session,
            actor=actor,
            action="cohort.created",
            resource_type="cohort",
            resource_id=name,
            after={"size": len(ids), **(definition or {})},
        )
    return len(ids)


def get(session: Session, name: str) -> Cohort:
    cohort = session.get(Cohort, name)
    if cohort is None:
        raise InvalidInput(f"no cohort named {name!r} (twinbill cohort list)")
    return cohort


def set_status(
    sessions: sessionmaker[Session],
    name: str,
    status: str,
    *,
    actor: str,
    reason: str | None = None,
) -> Cohort:
    allowed = {
        "running": {"created", "paused", "halted", "done", "running"},
        "paused": {"running", "created"},
        "halted": {"running"},
        "done": {"running"},
    }
    with transaction(sessions) as session:
        cohort = get(session, name)
        if cohort.status not in allowed[status]:
            raise InvalidInput(f"cohort {name!r} is {cohort.status}; cannot become {status}")
        before = cohort.status
        cohort.status = status
        if status == "running":
            cohort.started_at = cohort.started_at or utcnow()
            cohort.halt_reason = None
            cohort.finished_at = None
        if status == "halted":
            cohort.halt_reason = reason
        if status == "done":
            cohort.finished_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action=f"cohort.{status}",
            resource_type="cohort",
            resource_id=name,
            before={"status": before},
            after={"status": status},
            reason=reason,
        )
        return cohort


def members_to_start(session: Session, name: str, statuses: Sequence[str]) -> list[str]:
    return list(
        session.scalars(
            sa.select(CohortMember.user_id)
            .where(CohortMember.cohort == name, CohortMember.status.in_(statuses))
            .order_by(CohortMember.user_id)
        )
    )


def latest_migration(session: Session, user_id: str) -> Migration | None:
    return session.scalar(
        sa.select(Migration)
        .where(Migration.user_id == user_id)
        .order_by(Migration.created_at.desc())
        .limit(1)
    )
