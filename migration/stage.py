"""A cohort's account read, staged in the database and shared by all its chunks.

The legacy account can only be listed whole (Stripe's lists take no set of customers),
so a chunk's bulk read cost the whole account, whatever the chunk's size. A cohort of
600,000 in chunks of 1,000 would have read the account 600 times, or (as the cost
estimate then chose) each member per user: about 9 legacy requests a user instead of
3.3. The account is instead read once per cohort (``bulk.fill``), its members' objects
kept in ``cohort_stage``, not in a worker's memory (a whole account would not fit); each
chunk's prefetch then assembles its members' snapshots from the rows (``load``: one
query per 500 customers), with no list request.

A staged snapshot is dated at the stage's read, which may be hours before its member
runs. That is safe because "unchanged since the snapshot" is proved from the account's
event stream (``migration.recheck``; Stripe keeps 30 days of events), and a member whose
customer an event named since the read is not served from the stage at all
(``changed_since``) but read per user. The age only trades the read's cost against
those re-reads: a stage older than ``snapshot_max_age`` is read again.

The rows live as long as the cohort needs them: the prefetch of the last chunk drops
them (``drop``), and a new read replaces them (``begin``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction, utcnow
from migration.models import Cohort, CohortMember, StagedObject
from multiplexer.backends.base import StagedRow
from multiplexer.models import LegacyChangeMark, Route

#: rows per INSERT: one statement per list page, bounded
INSERT_BATCH = 500
#: wider than the change feed's clock margin: a member served from a stage its customer
#: changed after costs a restart at the re-check; one read per user needlessly, one read
SKEW = timedelta(seconds=60)


class CohortStage:
    """A ``multiplexer.backends.base.Stage`` on the ``cohort_stage`` table of one cohort.

    Each read writes its rows under its own ``reader`` id and only a finished read's rows
    are served: two prefetches of one cohort reading at once (the reaper handed back a
    prefetch still alive) never mix their objects. Finishing removes the rows of the read
    it replaces; an unfinished read's rows stay until the stage is dropped."""

    def __init__(self, sessions: sessionmaker[Session], cohort: str, *, max_age: float) -> None:
        """``max_age``: a read that started longer ago counts as none (it is read again)."""
        self.sessions = sessions
        self.cohort = cohort
        self.reader = ""
        with sessions() as session:
            row = session.get(Cohort, cohort)
            taken_at = row.stage_taken_at if row is not None else None
            extra = (row.stage_extra if row is not None else None) or {}
        if taken_at is not None and taken_at < utcnow() - timedelta(seconds=max_age):
            taken_at = None
        self.taken_at: datetime | None = taken_at
        self.extra: dict[str, Any] = dict(extra) if taken_at is not None else {}
        self.reader = str(self.extra.get("reader", ""))

    def wanted(self) -> set[str] | None:
        """Every member's customer: the read serves the whole cohort, chunk after chunk."""
        with self.sessions() as session:
            return set(
                session.scalars(
                    sa.select(Route.legacy_customer_id)
                    .join(CohortMember, CohortMember.user_id == Route.user_id)
                    .where(CohortMember.cohort == self.cohort)
                    .where(Route.legacy_customer_id.is_not(None))
                )
            )

    def begin(self) -> None:
        self.taken_at, self.extra, self.reader = None, {}, uuid.uuid4().hex

    def add(self, rows: Sequence[StagedRow]) -> None:
        values = [
            {
                "cohort": self.cohort,
                "reader": self.reader,
                "customer_id": cid,
                "list_name": name,
                "body": obj,
            }
            for cid, name, obj in rows
        ]
        with transaction(self.sessions) as session:
            for at in range(0, len(values), INSERT_BATCH):
                session.execute(sa.insert(StagedObject), values[at : at + INSERT_BATCH])

    def finish(self, taken_at: datetime, extra: dict[str, Any]) -> None:
        extra = {**extra, "reader": self.reader}
        with transaction(self.sessions) as session:
            row = session.get(Cohort, self.cohort, with_for_update=True)
            before = ((row.stage_extra if row is not None else None) or {}).get("reader")
            if before and before != self.reader:
                session.execute(_rows(self.cohort).where(StagedObject.reader == before))
            session.execute(
                sa.update(Cohort)
                .where(Cohort.name == self.cohort)
                .values(stage_taken_at=taken_at, stage_extra=extra)
            )
        self.taken_at, self.extra = taken_at, extra

    def load(self, customer_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if not customer_ids or self.taken_at is None:
            return out
        with self.sessions() as session:
            rows = session.execute(
                sa.select(StagedObject.customer_id, StagedObject.list_name, StagedObject.body)
                .where(
                    StagedObject.cohort == self.cohort,
                    StagedObject.reader == self.reader,
                    StagedObject.customer_id.in_(list(customer_ids)),
                )
                .order_by(StagedObject.id)
            )
            for cid, name, body in rows:
                out.setdefault(cid, {}).setdefault(name, []).append(body)
        return out

    def changed_since(self, customer_ids: Sequence[str]) -> set[str]:
        """The customers an event named after the stage's read started (the change feed's
        marks, from event reads and webhooks): their staged objects may be out of date."""
        if self.taken_at is None or not customer_ids:
            return set()
        with self.sessions() as session:
            return set(
                session.scalars(
                    sa.select(LegacyChangeMark.key).where(
                        LegacyChangeMark.key.in_(list(customer_ids)),
                        LegacyChangeMark.changed_at >= self.taken_at - SKEW,
                    )
                )
            )


def _rows(cohort: str) -> sa.Delete:
    return sa.delete(StagedObject).where(StagedObject.cohort == cohort)


def drop(sessions: sessionmaker[Session], cohort: str) -> None:
    """The cohort needs its staged read no more (every chunk's snapshots are stored)."""
    with transaction(sessions) as session:
        session.execute(_rows(cohort))
        session.execute(
            sa.update(Cohort)
            .where(Cohort.name == cohort)
            .values(stage_taken_at=None, stage_extra=None)
        )
