"""A cohort's account read, staged in the database and shared by all its chunks.

The legacy account can only be listed whole, so a chunk's bulk read cost the whole
account, whatever the chunk's size. A cohort of 600,000 in chunks of 1,000 would have
read the account 600 times, or (as the cost estimate then chose) each member per user:
about 9 legacy requests a user instead of 3.3. The account is instead read once per
cohort (``bulk.fill``), its members' objects kept in the database
(``multiplexer.stage.DbStage``, scope ``cohort:NAME``), not in a worker's memory; each
chunk's prefetch then assembles its members' snapshots from the rows (one query per 100
customers), with no list request.

A staged snapshot is dated at the stage's read, which may be hours before its member
runs. That is safe because "unchanged since the snapshot" is proved from the account's
event stream (``migration.recheck``; Stripe keeps 30 days of events), and a member whose
customer an event named since the read is not served from the stage at all
(``change_feed.named_since``) but read per user. The age only trades the read's cost
against those re-reads: a stage older than half ``snapshot_max_age`` is read again
(``migration.prefetch.stage_of``). The prefetch of the cohort's last chunk drops it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from migration.models import CohortMember
from multiplexer import stage
from multiplexer.models import Route


def scope(cohort: str) -> str:
    return f"cohort:{cohort}"[:120]


def of_cohort(sessions: sessionmaker[Session], cohort: str, *, max_age: float) -> stage.DbStage:
    """The cohort's stage: a read keeps every member's customer, for chunk after chunk."""

    def members() -> set[str] | None:
        with sessions() as session:
            return set(
                session.scalars(
                    sa.select(Route.legacy_customer_id)
                    .join(CohortMember, CohortMember.user_id == Route.user_id)
                    .where(CohortMember.cohort == cohort)
                    .where(Route.legacy_customer_id.is_not(None))
                )
            )

    return stage.DbStage(sessions, scope(cohort), max_age=max_age, wanted=members)


def drop(sessions: sessionmaker[Session], cohort: str) -> None:
    """Every chunk's snapshots are stored: the cohort's staged read is needed no more."""
    stage.drop(sessions, scope(cohort))
