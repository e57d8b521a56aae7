"""The account's event stream (``GET /v1/events``) read as "who changed, and when".

The migration's re-check asks "did this customer change since its snapshot?". Stripe
answers it for the whole account at once: every change to a customer's billing
objects is an event (``customer.*``, ``customer.subscription.*``, ``invoice.*``,
``invoiceitem.*``, ``charge.*``, ``credit_note.*``, ``payment_method.*``...), kept
30 days and listable by ``created``. One paged read since a time serves every user
whose snapshot is newer than it (``multiplexer.change_feed`` shares it between workers).

The stream is only a proof where it is complete. It is not (``LegacyChanges.gap``)
when the dialect does not send an event for every change (localstripe:
``Dialect.events_gap``), when the window starts before the retention, or when there
are more events than one read pages through. The caller then re-reads the user.
What each event names (``shapes.event_keys``) is read the same way for webhooks.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from multiplexer.backends.base import LegacyChange, LegacyChanges
from multiplexer.backends.stripe.shapes import event_keys
from multiplexer.backends.stripe.transport import StripeCalls

#: pages one read goes through before it calls the window a gap (100 events a page)
MAX_PAGES = 50
#: how far inside the retention a clipped window starts (the boundary moves while we read)
RETENTION_SLACK = timedelta(minutes=5)


def unix(at: datetime) -> int:
    """Whole seconds, rounded down: an event stamped that second may be after ``at``."""
    return math.floor(at.timestamp())


def read_changes(
    calls: StripeCalls, since: datetime, *, now: datetime | None = None
) -> LegacyChanges:
    read_at = now or datetime.now(UTC)
    wire = calls.wire
    if wire.events_gap:  # no request: the stream could prove nothing
        return LegacyChanges(since=since, read_at=read_at, gap=wire.events_gap)
    gap = None
    start = since
    oldest = read_at - timedelta(seconds=wire.event_retention_seconds) + RETENTION_SLACK
    if since < oldest:
        start = oldest
        gap = f"events before {oldest:%Y-%m-%d %H:%M:%S}Z are past the legacy retention"
    floor = datetime.fromtimestamp(unix(start), UTC)
    changes: list[LegacyChange] = []
    limit = MAX_PAGES * calls.page_size
    for event in calls.pages(
        "list events", calls.client.v1.events.list, params={"created": {"gte": unix(start)}}
    ):
        if len(changes) >= limit:
            return LegacyChanges(
                since=since,
                read_at=read_at,
                gap=f"more than {limit} legacy events since {start:%Y-%m-%d %H:%M:%S}Z",
                requests=MAX_PAGES + 1,
            )
        created = event.get("created")
        at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else read_at
        changes.append(
            LegacyChange(
                keys=event_keys(event),
                at=at,
                event_type=str(event.get("type") or ""),
                event_id=str(event.get("id") or ""),
            )
        )
    return LegacyChanges(
        since=since,
        read_at=read_at,
        changes=tuple(changes),
        complete_from=floor,
        gap=gap,
        requests=len(changes) // calls.page_size + 1,
    )
