"""The legacy change feed: who changed in legacy and when, shared by every worker.

The migration's re-check must know whether a user's legacy state changed between
the snapshot and the import. Re-reading each user costs 6-7 list calls; the
account's event stream answers for everyone at once. This module keeps one copy of
that answer in the database, for all threads and worker processes:

* ``legacy_changes``: per id an event named (customer, object, or ``*`` when the
  event could not tell its owner), the last time it changed. Written by the event
  reads below and by incoming legacy webhooks (``mark_event``); only moves forward.
* ``legacy_change_feed`` (one row): the window ``[complete_from, horizon]`` those
  marks are complete for, and the lease of the one worker extending it.

A worker that needs a horizon later than its import (``check``) takes the lease
with a conditional UPDATE (the same on PostgreSQL and SQLite) once events of that
moment can be listed (``settle``) and at most once per ``refresh_every``, reads the
events since the current horizon (``LegacyBillingBackend.list_changes``) and extends
the window; everyone else reuses its read. ``check`` never sleeps: until a read can
serve it, it answers "ask again in N seconds" and the saga frees the worker's thread. A worker
that dies holding the lease loses it after ``lease`` seconds. Times of events are
the legacy system's clock: ``margin`` widens every window by the clock skew allowed.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction, utcnow
from multiplexer.backends.base import ANY_CUSTOMER, LegacyBillingBackend, LegacyChange
from multiplexer.backends.stripe.shapes import event_keys
from multiplexer.models import LegacyChangeFeed, LegacyChangeMark

FEED = 1  # the row id
KEEP = timedelta(days=31)  # marks older than the legacy retention prove nothing: pruned
POLL = 0.2  # seconds between looks at the feed while another worker reads
MAX_KEY = 120


@dataclass(frozen=True, slots=True)
class Verdict:
    """``unchanged``: proved from events; else ``reason`` says changed (and how) or gap."""

    unchanged: bool
    reason: str
    horizon: datetime | None = None
    read: bool = False  # this call read legacy events itself
    changed: bool = False  # the user was named by an event (not merely a gap)
    wait: float | None = None  # not known yet: ask again in this many seconds


def _floor(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def mark(session: Session, changes: Iterable[LegacyChange], *, source: str) -> int:
    """Record changes (keep each key's latest time). Does not commit."""
    rows: dict[str, dict[str, Any]] = {}
    for ch in changes:
        for key in ch.keys:
            if not key or len(key) > MAX_KEY:
                continue
            row = rows.get(key)
            if row is None or row["changed_at"] < ch.at:
                rows[key] = {
                    "key": key,
                    "changed_at": ch.at,
                    "event_type": ch.event_type[:80],
                    "event_id": ch.event_id[:120],
                    "source": source,
                }
    if not rows:
        return 0
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = sorted(rows.values(), key=lambda r: r["key"])  # one lock order for every writer
    for start in range(0, len(values), 500):
        stmt = insert(LegacyChangeMark).values(values[start : start + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "changed_at": stmt.excluded.changed_at,
                "event_type": stmt.excluded.event_type,
                "event_id": stmt.excluded.event_id,
                "source": stmt.excluded.source,
            },
            where=LegacyChangeMark.changed_at < stmt.excluded.changed_at,
        )
        session.execute(stmt)
    return len(rows)


def mark_event(session: Session, event: dict[str, Any]) -> int:
    """A legacy webhook event marks what it names as changed (in the inbound transaction)."""
    created = event.get("created")
    if not isinstance(created, int):
        return 0
    at = datetime.fromtimestamp(created, UTC)
    change = LegacyChange(event_keys(event), at, str(event.get("type")), str(event.get("id")))
    return mark(session, [change], source="webhook")


def named_since(
    sessions: sessionmaker[Session], keys: Collection[str], since: datetime
) -> set[str]:
    """The keys an event (read from the stream, or a webhook) named at or after ``since``:
    one indexed lookup by key, for a batch of customers."""
    if not keys:
        return set()
    with sessions() as session:
        return set(
            session.scalars(
                sa.select(LegacyChangeMark.key).where(
                    LegacyChangeMark.key.in_(list(keys)), LegacyChangeMark.changed_at >= since
                )
            )
        )


class ChangeFeed:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        legacy: LegacyBillingBackend,
        *,
        refresh_every: float = 1.0,
        settle: float = 1.0,
        margin: float = 5.0,
        max_wait: float = 30.0,
        lease: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.legacy = legacy
        self.refresh_every = timedelta(seconds=refresh_every)
        self.settle = timedelta(seconds=settle)
        self.margin = timedelta(seconds=margin)
        self.max_wait = timedelta(seconds=max_wait)
        self.lease = timedelta(seconds=lease)
        self.clock = clock
        #: how far behind now the horizon may be: one refresh, the settle, one wait
        self.lag = self.refresh_every + self.settle + timedelta(seconds=POLL * 5)

    # -- the question the re-check asks ---------------------------------------------
    def check(self, ids: Iterable[str], since: datetime, imported_at: datetime) -> Verdict:
        """Did anything named by ``ids`` change after ``since``, as known up to the import?

        Never sleeps: when the answer needs a read that cannot start yet (events of the
        import's moment are not listable before ``settle``; another worker is reading; one
        read too recently), the verdict says ``wait`` seconds and the caller asks again
        then — the saga hands its thread to another user meanwhile (``migration.deps.Later``).
        This call reads the events itself when it may. Any read that started ``settle``
        after the import serves, so workers whose imports finished before one read share it.
        Asked long after the import (a queue in front of it, a worker that died), the
        horizon must reach ``lag`` before now — as fresh as the shared read ever is — so a
        late re-check still proves the user unchanged until just before it returns.
        """
        why = self.legacy.events_gap
        if why is not None:  # this legacy system's stream can never prove it: no wait, no read
            return Verdict(False, f"gap: {why}")
        now = self.clock()
        until = max(imported_at, now - self.lag)
        ready_at = until + self.settle  # a read started earlier cannot see up to `until`
        deadline = ready_at + self.max_wait
        lo = _floor(since - self.margin)
        read = False
        while True:
            st = self._state()
            if _covers(st, lo, until):
                break
            last = st.last_read_at
            if st.gap and last is not None and last >= ready_at and not _held(st, now):
                return Verdict(False, f"gap: {st.gap}", st.horizon, read)
            if now >= ready_at and not read and self._claim(now):
                read = True
                self._refresh(lo)
                now = self.clock()
                continue
            if now >= deadline or read:
                return Verdict(False, _short(st, lo, until, self.max_wait), st.horizon, read)
            wait = _pause(st, now, ready_at, self.refresh_every)
            return Verdict(False, f"waiting {wait:.1f}s for the event feed", st.horizon, wait=wait)
        named = self._named(set(ids) | {ANY_CUSTOMER}, lo)
        untold = [(t, at) for key, t, at in named if key == ANY_CUSTOMER]
        if untold:
            t, at = untold[0]
            return Verdict(
                False, f"gap: a {t} event at {at:%H:%M:%S}Z names no customer", st.horizon, read
            )
        if named:
            what = ", ".join(f"{t} at {at:%H:%M:%S}Z" for _, t, at in named[:3])
            return Verdict(False, f"changed: {what}", st.horizon, read, changed=True)
        return Verdict(True, "no event since the snapshot", st.horizon, read)

    # -- the feed row ---------------------------------------------------------------
    def _state(self) -> LegacyChangeFeed:
        with self.sessions() as session:
            row = session.get(LegacyChangeFeed, FEED)
            if row is not None:
                return row
        with transaction(self.sessions) as session:  # a database older than revision 0009's row
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            session.execute(
                insert(LegacyChangeFeed)
                .values(id=FEED, reads=0, requests=0)
                .on_conflict_do_nothing(index_elements=["id"])
            )
        return self._state()

    def _claim(self, now: datetime) -> bool:
        """Take the lease to read, unless a live worker holds it or one read too recently."""
        with transaction(self.sessions) as session:
            result = session.execute(
                sa.update(LegacyChangeFeed)
                .where(
                    LegacyChangeFeed.id == FEED,
                    sa.or_(
                        LegacyChangeFeed.lease_until.is_(None), LegacyChangeFeed.lease_until < now
                    ),
                    sa.or_(
                        LegacyChangeFeed.last_read_at.is_(None),
                        LegacyChangeFeed.last_read_at <= now - self.refresh_every,
                    ),
                )
                .values(lease_owner=_me(), lease_until=now + self.lease, last_read_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _refresh(self, lo: datetime) -> None:
        """Read the events the window lacks and extend it (holding the lease)."""
        st = self._state()
        fresh = st.complete_from is None or st.horizon is None
        start = lo if fresh or lo < st.complete_from or lo > st.horizon else st.horizon  # type: ignore[operator]
        try:
            got = self.legacy.list_changes(start)
        except BaseException:
            self._release()
            raise
        now = self.clock()
        with transaction(self.sessions) as session:
            mark(session, got.changes, source="events")
            row = session.get(LegacyChangeFeed, FEED, with_for_update=True)
            assert row is not None
            if row.lease_owner != _me():  # the lease ran out meanwhile: keep the marks only
                return
            row.reads += 1
            row.requests += got.requests
            row.gap, row.gap_at = (got.gap, now) if got.gap else (None, None)
            row.lease_owner = row.lease_until = None
            if got.complete_from is None:
                return
            end = got.read_at - self.settle
            joined = row.horizon is not None and row.complete_from is not None
            joined = joined and got.complete_from <= row.horizon  # type: ignore[operator]
            if joined:
                row.complete_from = min(row.complete_from, got.complete_from)  # type: ignore[type-var]
                row.horizon = max(row.horizon, end)  # type: ignore[type-var]
            else:
                row.complete_from, row.horizon = got.complete_from, end
            cut = now - KEEP  # older marks can prove nothing (past the legacy retention)
            session.execute(sa.delete(LegacyChangeMark).where(LegacyChangeMark.changed_at < cut))
            row.complete_from = max(row.complete_from, cut)  # type: ignore[type-var]

    def _release(self) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                sa.update(LegacyChangeFeed)
                .where(LegacyChangeFeed.id == FEED, LegacyChangeFeed.lease_owner == _me())
                .values(lease_owner=None, lease_until=None)
            )

    def _named(self, ids: set[str], lo: datetime) -> list[tuple[str, str, datetime]]:
        with self.sessions() as session:
            rows = session.execute(
                sa.select(
                    LegacyChangeMark.key, LegacyChangeMark.event_type, LegacyChangeMark.changed_at
                )
                .where(LegacyChangeMark.changed_at >= lo)
                .order_by(LegacyChangeMark.changed_at)
            )
            return [(key, t, at) for key, t, at in rows if key in ids]


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:120]


def _held(st: LegacyChangeFeed, now: datetime) -> bool:
    return st.lease_until is not None and st.lease_until >= now


def _covers(st: LegacyChangeFeed, lo: datetime, until: datetime) -> bool:
    return (
        st.complete_from is not None
        and st.horizon is not None
        and st.complete_from <= lo
        and st.horizon >= until
    )


def _pause(st: LegacyChangeFeed, now: datetime, ready_at: datetime, every: timedelta) -> float:
    """Until the next moment a read may start (or another worker's read may have ended)."""
    nxt = max(ready_at, st.last_read_at + every if st.last_read_at else now)
    if _held(st, now):
        nxt = min(nxt, now + timedelta(seconds=POLL))
    return min(max((nxt - now).total_seconds(), 0.01), POLL * 5)


def _short(st: LegacyChangeFeed, lo: datetime, until: datetime, waited: timedelta) -> str:
    if st.complete_from is None or st.horizon is None:
        return f"gap: no complete event window after {waited.total_seconds():.0f}s"
    if st.complete_from > lo:
        return f"gap: the event window starts at {st.complete_from:%H:%M:%S}Z, after the snapshot"
    return f"gap: the event window ends at {st.horizon:%H:%M:%S}Z, before the import"
