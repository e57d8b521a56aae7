"""Operator actions on a whole cohort that are not part of running it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction
from core.errors import InvalidInput
from migration.cohorts import get
from migration.models import CohortMember


def delete(sessions: sessionmaker[Session], name: str, *, actor: str) -> int:
    """Remove a cohort that never ran (no member ever got a migration); returns its size."""
    with transaction(sessions) as session:
        cohort = get(session, name)
        members = list(session.scalars(sa.select(CohortMember).where(CohortMember.cohort == name)))
        if cohort.status != "created" or any(m.migration_id for m in members):
            raise InvalidInput(
                f"cohort {name!r} is {cohort.status} and has run: only cohorts that never ran "
                "can be deleted (pause it instead)"
            )
        for m in members:
            session.delete(m)
        session.flush()
        session.delete(cohort)
        audit.record(
            session,
            actor=actor,
            action="cohort.deleted",
            resource_type="cohort",
            resource_id=name,
            before={"status": cohort.status, "size": len(members)},
        )
    return len(members)
