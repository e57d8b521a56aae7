"""The saga's legacy cancel: one request per live subscription, marked as the migration's.

Current API: ``DELETE /v1/subscriptions/{id}`` with ``invoice_now=false``,
``prorate=false`` and ``cancellation_details[comment]=twinbill_migration:<id>`` cancels
and marks in one atomic request (no window where a subscription is marked but live, or
canceled but unmarked), and the resulting ``customer.subscription.deleted`` carries the
mark (``shapes.migration_mark`` reads it). No read first: the saga's snapshot, re-checked
just before, knew the subscription was live.

Repeating it is safe. Under the same idempotency key Stripe replays its first answer;
under a new one (after a 5xx) it refuses a canceled subscription with 404 "No such
subscription" (stripe/stripe-go#1887: a canceled subscription counts as deleted), which
is read once to tell "already canceled" from "gone". localstripe reads no parameter of
the DELETE and cancels a canceled subscription again (a new ``ended_at``, a second
event): unless the caller has just seen the subscription live, it is read first there
(``Dialect.cancel_refuses_canceled``; docs/legacy-gaps.md).
"""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from multiplexer.backends.stripe import shapes
from multiplexer.backends.stripe.transport import StripeCalls

OVER = frozenset({"canceled", "incomplete_expired"})  # a subscription that bills no more


def cancel_for_migration(
    calls: StripeCalls, subscription_id: str, *, migration_id: str, key: str, known_live: bool
) -> dict[str, Any]:
    """The subscription as the server holds it after the cancel (raw)."""
    wire = calls.wire
    if not (known_live or wire.cancel_refuses_canceled):
        sub = calls.subscription(subscription_id)
        if sub.get("status") in OVER:
            return sub
    params: dict[str, Any] = {"invoice_now": False, "prorate": False}
    if wire.cancel_marks:
        params["cancellation_details"] = {"comment": shapes.migration_comment(migration_id)}
    try:
        return calls.write(
            "cancel for migration",
            calls.client.v1.subscriptions.cancel,
            subscription_id,
            # not ``:cancel``: that key's first request had other parameters (the mark was
            # a request of its own before), and Stripe refuses a key reused with new ones
            key=f"{key}:cancel-marked",
            params=params,
        )
    except NotFound:
        sub = calls.subscription(subscription_id)  # NotFound again: really gone
        if sub.get("status") not in OVER:
            raise
        return sub
