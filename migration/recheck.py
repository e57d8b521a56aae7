"""The re-check before the pivot: is legacy still what the import was built from?

Proved from the shared change feed (``multiplexer.change_feed``) when it can be:
the account's event stream is complete from before the snapshot's read started
until after the import (``ChangeFeed.check``), and no event in that window names
the user's customer or an object its snapshot holds — then no per-user call is
made. Otherwise (an event names the user, or the stream has a gap) the user's
whole legacy state is re-read and compared by content hash, as before; a change
event that changed nothing (a webhook echo, ``invoice.upcoming``) then costs a
re-read but never a restart. The step detail says which: ``proved_by`` "events"
or "full re-read" (and why).

No saga write reaches legacy before the cancel step (preflight, fetch and prove
only read; the import goes to the new system), so every event in the window is
someone else's change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.db import utcnow
from migration import records
from migration.deps import Later, Restart, Result, SagaDeps
from multiplexer.backends.base import RawSnapshot, UserRef

if TYPE_CHECKING:
    from migration.models import Migration


def recheck(deps: SagaDeps, mig: Migration, ref: UserRef) -> Result:
    assert mig.snapshot_id is not None
    snap = records.load_snapshot(deps.sessions, mig.snapshot_id)
    before = records.snapshot_hash(deps.sessions, mig.snapshot_id)
    why = "event re-check off (TWINBILL_EVENT_RECHECK=off)"
    if deps.change_feed is not None and snap.taken_at is not None:
        verdict = deps.change_feed.check(snapshot_ids(snap), snap.taken_at, _imported_at(deps, mig))
        horizon = verdict.horizon.isoformat() if verdict.horizon else None
        if verdict.unchanged:
            return {}, {
                "proved_by": "events",
                "content_hash": before,
                "since": snap.taken_at.isoformat(),
                "horizon": horizon,
                "read_events": verdict.read,
            }
        if verdict.wait is not None:  # the read that can tell is not due yet
            raise Later(verdict.wait, verdict.reason)
        why = verdict.reason
    fresh = deps.legacy.snapshot(ref)
    after = records.content_hash(fresh.objects)
    if after != before:
        raise Restart(
            f"legacy state changed since snapshot {mig.snapshot_id} ({before[:12]} -> {after[:12]})"
        )
    return {}, {"proved_by": "full re-read", "why": why, "content_hash": after}


def _imported_at(deps: SagaDeps, mig: Migration) -> datetime:
    """When this generation's import finished: the feed's horizon must reach it."""
    with deps.sessions() as session:
        load = records.last_ok_step(session, mig.id, "load")
        return (load.finished_at if load is not None else None) or utcnow()


def snapshot_ids(snap: RawSnapshot) -> set[str]:
    """The customer id and every string the snapshot holds: any object id an event may
    name (subscriptions, invoices, charges, plans, coupons...) is among them."""
    return {snap.customer_id, *_strings(snap.objects)}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
