"""A bulk read of the legacy account, kept in the database instead of a worker's memory.

The legacy account can only be listed whole (Stripe's lists take no set of customers),
so a bulk read pays for the whole account whatever it keeps. Two readers need it:

* a cohort (``migration.stage``): read once, every chunk's snapshots assembled from the
  rows, where each chunk's read listed the account again (600 times for a cohort of
  600,000 in chunks of 1,000);
* ``users sync`` (``migration.readiness.sync_legacy``): every customer's objects, which
  for a 600,000-customer account (some 8 million objects) do not fit in memory.

``DbStage`` is the ``multiplexer.backends.base.Stage`` on two tables: ``legacy_stages``
(one row per scope: the finished read being served, when it started, the adapter's
notes) and ``legacy_stage_objects`` (the objects, under the read that kept them). Each
read writes under its own ``reader`` id and only a finished read's rows are served: a
read killed midway is never served, and two reads of one scope at once (a prefetch
handed back while it was only slow) never mix their objects. Finishing removes the rows
of the read it replaces; an unfinished read's rows stay until the scope is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction, utcnow
from multiplexer.backends.base import StagedRow
from multiplexer.models import LegacyStage, LegacyStagedObject

#: rows per INSERT: one statement per list page, bounded
INSERT_BATCH = 500


class DbStage:
    """A ``Stage`` in the database for one ``scope``. ``max_age``: a finished read that
    started longer ago counts as none (the next read replaces it); ``wanted``: the
    customers a read keeps (None: all of them)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        scope: str,
        *,
        max_age: float,
        wanted: Callable[[], set[str] | None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.scope = scope
        self._wanted = wanted
        with sessions() as session:
            row = session.get(LegacyStage, scope)
            taken_at = row.taken_at if row is not None else None
            reader = (row.reader if row is not None else None) or ""
            extra = (row.extra if row is not None else None) or {}
        if taken_at is not None and taken_at < utcnow() - timedelta(seconds=max_age):
            taken_at = None
        self.taken_at: datetime | None = taken_at
        self.reader = reader if taken_at is not None else ""
        self.extra: dict[str, Any] = dict(extra) if taken_at is not None else {}

    def wanted(self) -> set[str] | None:
        return self._wanted()

    def begin(self) -> None:
        self.taken_at, self.extra, self.reader = None, {}, uuid.uuid4().hex

    def add(self, rows: Sequence[StagedRow]) -> None:
        values = [
            {
                "scope": self.scope,
                "reader": self.reader,
                "customer_id": cid,
                "list_name": name,
                "body": obj,
            }
            for cid, name, obj in rows
        ]
        with transaction(self.sessions) as session:
            for at in range(0, len(values), INSERT_BATCH):
                session.execute(sa.insert(LegacyStagedObject), values[at : at + INSERT_BATCH])

    def finish(self, taken_at: datetime, extra: dict[str, Any]) -> None:
        with transaction(self.sessions) as session:
            row = session.get(LegacyStage, self.scope, with_for_update=True)
            if row is None:
                row = LegacyStage(scope=self.scope)
                session.add(row)
            elif row.reader and row.reader != self.reader:
                session.execute(_rows(self.scope).where(LegacyStagedObject.reader == row.reader))
            row.reader, row.taken_at, row.extra = self.reader, taken_at, dict(extra)
        self.taken_at, self.extra = taken_at, dict(extra)

    def _served(self, *columns: Any) -> sa.Select[Any]:
        """These columns of the served read's rows, in the order they were added."""
        return (
            sa.select(*columns)
            .where(LegacyStagedObject.scope == self.scope, LegacyStagedObject.reader == self.reader)
            .order_by(LegacyStagedObject.id)
        )

    def customer_ids(self) -> list[str]:
        if self.taken_at is None:
            return []
        with self.sessions() as session:
            return list(
                session.scalars(
                    self._served(LegacyStagedObject.customer_id).where(
                        LegacyStagedObject.list_name == "customers"
                    )
                )
            )

    def load(self, customer_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if not customer_ids or self.taken_at is None:
            return out
        with self.sessions() as session:
            rows = session.execute(
                self._served(
                    LegacyStagedObject.customer_id,
                    LegacyStagedObject.list_name,
                    LegacyStagedObject.body,
                ).where(LegacyStagedObject.customer_id.in_(list(customer_ids)))
            )
            for cid, name, body in rows:
                out.setdefault(cid, {}).setdefault(name, []).append(body)
        return out


def _rows(scope: str) -> sa.Delete:
    return sa.delete(LegacyStagedObject).where(LegacyStagedObject.scope == scope)


def drop(sessions: sessionmaker[Session], scope: str) -> None:
    """The scope's staged reads are needed no more: every row goes, finished or not."""
    with transaction(sessions) as session:
        session.execute(_rows(scope))
        session.execute(sa.delete(LegacyStage).where(LegacyStage.scope == scope))


def drop_older(sessions: sessionmaker[Session], prefix: str, stamp: str) -> int:
    """Drop every scope ``prefix + X`` whose X sorts before ``stamp``: for scopes named by
    a sortable start time (``users sync``'s), the reads started before it. One range
    delete on the scope index, no scan. Returns the objects removed."""
    lo, hi = prefix, prefix + stamp
    with transaction(sessions) as session:
        gone = session.execute(
            sa.delete(LegacyStagedObject).where(
                LegacyStagedObject.scope >= lo, LegacyStagedObject.scope < hi
            )
        ).rowcount  # type: ignore[attr-defined]
        session.execute(
            sa.delete(LegacyStage).where(LegacyStage.scope >= lo, LegacyStage.scope < hi)
        )
    return int(gone or 0)
