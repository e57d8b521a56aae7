"""What each legacy dialect sends and how its answers read: one frozen value per dialect.

``current`` is real Stripe at the SDK's API version; ``localstripe`` is the emulator's
older API *and its quirks* (docs/legacy-gaps.md). Every difference between them is a
field here, read by the transport (requests) and the mapping (answers), instead of
``if dialect == ...`` checks spread over the adapter. Generic Stripe semantics (both
generations of shapes) are read by the mapping for every dialect and are not here.
No SDK import: the mapping modules use this without the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DialectName = Literal["current", "localstripe"]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: DialectName
    # --- what it sends -------------------------------------------------------------
    item_key: str  # subscription items name their price: "price" (current) | "plan"
    proration: str  # "proration_behavior" (Stripe invoices it) | "prorate_then_invoice"
    list_expansions: bool  # expand[] on lists (localstripe: 400 "Bad expand")
    customers_embed_subscriptions: bool  # else one call per customer reads the currency
    refund_reason: bool  # Stripe's refund ``reason`` (localstripe: 400)
    offline_money: bool  # payment records, credit notes, balance transactions
    preview: str  # "create_preview" | "upcoming" (removed from the current API)
    preview_endpoint: str  # how a prove answer names where the preview came from
    #: smaller pages for some account-wide lists (list name, page size). localstripe
    #: recomputes every invoice's lines and totals from a scan of its whole store on
    #: export: a page of 100 invoices outlasts the client's timeout on a few thousand
    #: customers (docs/legacy-gaps.md), so it reads invoices 10 per page
    page_caps: tuple[tuple[str, int], ...]
    #: why its event stream (``GET /v1/events``) cannot prove a customer unchanged since a
    #: time ("": it can): the event-based re-check then falls back to a full re-read
    events_gap: str
    #: how long events stay listable (Stripe: 30 days); an older window is a gap
    event_retention_seconds: int
    #: a re-created subscription (rollback) may name its ``discounts`` and its
    #: ``default_payment_method`` (localstripe: 400 "Unexpected" for both)
    subscription_discounts: bool
    subscription_payment_method: bool
    #: the cancel request itself carries the migration mark (``cancellation_details
    #: [comment]`` on ``DELETE /v1/subscriptions/{id}``): mark and cancel are one atomic
    #: request. localstripe reads no parameter of that DELETE and drops subscription
    #: metadata updates, so no request marks it there: its events are told apart by the
    #: route state alone (docs/legacy-gaps.md)
    cancel_marks: bool
    # --- how its answers read ------------------------------------------------------
    #: ``account_balance`` is stored as *minus* the balance given (localstripe)
    account_balance_negated: bool
    #: an ``incomplete`` subscription with a future ``trial_end`` is trialing (localstripe)
    incomplete_trial_is_trialing: bool
    #: a preview's renewal line ``period.start`` dates the charge (current API)
    preview_dated_by_lines: bool
    #: a preview is dated at period end even during a trial: the trial end wins (localstripe)
    preview_ignores_trial: bool
    #: a preview's ``total`` is the charge, its subtotal net of item discounts (current API)
    preview_total_is_charge: bool
    #: a preview's ``starting_balance`` has localstripe's stored sign, not Stripe's
    preview_balance_negated: bool
    #: canceling a canceled subscription is refused (Stripe: 404 "No such subscription"),
    #: so a repeated cancel needs no read first. localstripe cancels it again (a new
    #: ``ended_at``, a second ``customer.subscription.deleted``)
    cancel_refuses_canceled: bool


DIALECTS: dict[str, Dialect] = {
    "current": Dialect(
        name="current",
        item_key="price",
        proration="proration_behavior",
        list_expansions=True,
        customers_embed_subscriptions=True,
        refund_reason=True,
        offline_money=True,
        preview="create_preview",
        preview_endpoint="POST /v1/invoices/create_preview",
        page_caps=(),
        events_gap="",
        event_retention_seconds=30 * 86400,
        subscription_discounts=True,
        subscription_payment_method=True,
        cancel_marks=True,
        account_balance_negated=False,
        incomplete_trial_is_trialing=False,
        preview_dated_by_lines=True,
        preview_ignores_trial=False,
        preview_total_is_charge=True,
        preview_balance_negated=False,
        cancel_refuses_canceled=True,
    ),
    "localstripe": Dialect(  # docs/legacy-gaps.md, Part 1
        name="localstripe",
        item_key="plan",
        proration="prorate_then_invoice",
        list_expansions=False,
        customers_embed_subscriptions=False,
        refund_reason=False,
        offline_money=False,
        preview="upcoming",
        preview_endpoint="GET /v1/invoices/upcoming",
        page_caps=(("invoices", 10),),
        # docs/legacy-gaps.md, "Events": no event for subscription updates (plan change,
        # cancel_at_period_end, metadata), invoice items, charges, refunds, voided invoices
        events_gap=(
            "localstripe sends no event for subscription updates, invoice items, charges, "
            "refunds or voided invoices (docs/legacy-gaps.md, Events)"
        ),
        event_retention_seconds=30 * 86400,
        subscription_discounts=False,
        subscription_payment_method=False,
        cancel_marks=False,
        account_balance_negated=True,
        incomplete_trial_is_trialing=True,
        preview_dated_by_lines=False,
        preview_ignores_trial=True,
        preview_total_is_charge=False,
        preview_balance_negated=True,
        cancel_refuses_canceled=False,
    ),
}
