"""What happens to every raw legacy (Stripe) field: the table ``reconciler.unmapped`` checks.

``KNOWN_LEGACY_FIELDS`` declares, per legacy object type, what happens to every raw
field path (``KnownFields.status``):

* ``carried``: the mapping reads it and the new system receives it;
* ``derived``: the mapping reads it (or it duplicates a field that is carried) to
  compute something that is carried: the reason says what;
* ``dropped``: deliberately not migrated, with the reason;

and values that carry no information (a field at its declared default is not
worth a report). A field the mapping reads is never reported as unmapped: a unit
test runs the mapping over recorded snapshots and checks that every key it touched
is carried or derived here.

Paths are dotted for nested plain objects (``status_transitions.paid_at``). A
nested object that carries its own ``"object"`` tag (an expanded reference, a
list of items) is checked against its own type's entry. A declared path covers
everything under it. This table is the contract with the legacy adapter's
``map_snapshot``: when the mapping starts (or stops) reading a field, move it.
Data only; the walk over a raw snapshot is ``reconciler/unmapped.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class KnownFields:
    read: frozenset[str]  # carried
    ignored: Mapping[str, str] = field(default_factory=dict)  # dropped: path -> reason
    defaults: Mapping[str, Any] = field(default_factory=dict)  # path -> uninformative value
    rest: str = ""  # when set: every other field is dropped for this reason
    derived: Mapping[str, str] = field(default_factory=dict)  # path -> what it becomes

    def declares(self, path: str) -> bool:
        return bool(self.rest) or path in self.read or path in self.ignored or path in self.derived

    def status(self, path: str) -> tuple[str, str] | None:
        """(carried | derived | dropped, reason) for a declared path; None if undeclared."""
        if path in self.read:
            return "carried", "read by the legacy mapping and sent to the new system"
        if path in self.derived:
            return "derived", self.derived[path]
        if path in self.ignored:
            return "dropped", self.ignored[path]
        if self.rest:
            return "dropped", self.rest
        inside = [p for p in (*self.read, *self.derived) if p.startswith(path + ".")]
        if inside:  # a plain object the mapping opens to reach declared fields
            return "carried" if set(inside) & self.read else "derived", f"holds {sorted(inside)}"
        return None


def _known(
    read: str,
    ignored: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    rest: str = "",
    derived: Mapping[str, str] | None = None,
) -> KnownFields:
    base = {
        "object": "the type tag itself",
        "livemode": "test/live flag of the legacy account, not user data",
    }
    return KnownFields(
        frozenset(read.split()), {**base, **(ignored or {})}, defaults or {}, rest, derived or {}
    )


def _same(reason: str, paths: str) -> dict[str, str]:
    return dict.fromkeys(paths.split(), reason)


_NO_PAYMENT_METADATA = (
    "not in the new service's contract: payments and refunds carry no metadata there "
    "(docs/legacy-gaps.md, contract gaps)"
)
_CUSTOMER_KEPT = "stays on the Stripe customer, which is kept (card payments still flow through it)"
_LEGACY_DOCS = "legacy-hosted documents and receipts; the new system renders its own"
_CATALOGUE = "catalogue state of the legacy product setup, not of this user's billing"
_DUNNING = "the legacy system's dunning state; the new system runs its own collection"
_PROCESSOR = "processor-side detail that stays in Stripe with the charge"
_BACKPOINTER = "back-pointer to a parent object the snapshot already places"
_CHARGE_AUTO = {"collection_method": "charge_automatically", "billing": "charge_automatically"}

_CURRENT_SUBSCRIPTION = {  # current API (2026-10-28) shapes
    "automatic_tax": "tax computation setting; migrated invoices carry their own taxes",
    "billing_cycle_anchor_config": "implied by current_period_end, which is migrated",
    "billing_mode": "how Stripe computes prorations; the new system prorates its own way",
    "billing_schedules": "legacy billing schedule settings, implied by the item periods",
    "invoice_settings": _LEGACY_DOCS,
    "payment_settings": _DUNNING,
    "trial_settings": "what Stripe does when a trial ends without a card; the new system "
    "has its own rule",
    "pending_invoice_item_interval": "legacy batching of pending items; preflight defers "
    "users with pending items",
    "cancellation_details": "free-text feedback of a cancellation",
    "status_details": "detail of the status, which is migrated",
}
_CURRENT_INVOICE = {
    "account_country": "the legacy account's country, not the user's",
    "automatic_tax": "tax computation setting; the computed taxes are migrated",
    "customer_tax_exempt": "copy of the customer's tax_exempt",
    "effective_at": "accounting date of finalisation; created and paid_at are migrated",
    "issuer": "Connect issuer of the legacy account",
    "payment_settings": _DUNNING,
    "post_payment_credit_notes_amount": "credit notes after payment are read themselves "
    "(refunds, out-of-band refunds, customer balance)",
    "rendering": _LEGACY_DOCS,
    "total_pretax_credit_amounts": "credits are migrated through the customer balance",
}
_REST_CREDIT_NOTE = (
    "credit note details: its out-of-band part is migrated as an offline refund, its refund "
    "part through the refunds list, its credit part through the customer balance"
)

KNOWN_LEGACY_FIELDS: Mapping[str, KnownFields] = {
    "customer": _known(
        "id email name currency balance default_source sources "
        "invoice_settings.default_payment_method metadata created discount",
        {
            "description": "free-text staff note of the legacy dashboard",
            "phone": _CUSTOMER_KEPT,
            "address": _CUSTOMER_KEPT,
            "shipping": _CUSTOMER_KEPT,
            "tax_ids": _CUSTOMER_KEPT,
            "business_vat_id": _CUSTOMER_KEPT,
            "preferred_locales": "language of legacy-sent emails; the new system sends none",
            "delinquent": "derived from unpaid invoices, which are migrated themselves",
            "invoice_prefix": "numbering of legacy invoices; migrated invoices keep their number",
            "next_invoice_sequence": "numbering of legacy invoices",
            "invoice_settings.custom_fields": _LEGACY_DOCS,
            "invoice_settings.footer": _LEGACY_DOCS,
            "invoice_settings.rendering_options": _LEGACY_DOCS,
        },
        {"tax_exempt": "none"},
        derived={
            "subscriptions": "embedded copy, read only as a fallback for the billing currency; "
            "subscriptions are fetched and migrated themselves",
            "account_balance": "old-API balance -> customer.balance (the localstripe dialect "
            "flips its sign back, docs/legacy-gaps.md)",
        },
    ),
    "subscription": _known(
        "id customer status currency created current_period_start "
        "current_period_end trial_start trial_end cancel_at_period_end canceled_at ended_at "
        "items metadata discount default_tax_rates discounts cancel_at pause_collection "
        "pending_update schedule",
        {
            **_CURRENT_SUBSCRIPTION,
            "latest_invoice": "a pointer; invoices are migrated themselves",
            "trial_period_days": "creation parameter; the resulting trial dates are migrated",
            "trial_from_plan": "creation parameter; the resulting trial dates are migrated",
            "_enable_incomplete_payments": "localstripe-internal flag",
        },
        _CHARGE_AUTO,
        derived={
            "plan": "single-plan shorthand: duplicates items.data[0].plan, which is carried",
            "quantity": "single-plan shorthand: duplicates items.data[0].quantity",
            "billing_cycle_anchor": "implied by current_period_end, which is carried",
            "start_date": "a localstripe trial's trial_start (localstripe leaves it null)",
        },
    ),
    "tax_rate": _known(
        "id display_name percentage inclusive jurisdiction country",
        _same(_CATALOGUE, "created active description metadata tax_type state"),
    ),
    "subscription_item": _known(
        "id plan price quantity current_period_start current_period_end discounts",
        {
            "created": "the subscription's created is migrated",
            "subscription": _BACKPOINTER,
            "invoice": "localstripe-only link to the item's first invoice; invoices are migrated",
        },
    ),
    "plan": _known(
        "id amount currency interval interval_count product name",
        {
            "created": _CATALOGUE,
            "active": _CATALOGUE,
            "nickname": _CATALOGUE,
            "metadata": _CATALOGUE,
            "amount_decimal": "string twin of amount",
            "trial_period_days": "creation default; subscriptions carry their own trial dates",
        },
        {"usage_type": "licensed", "billing_scheme": "per_unit"},
        derived={"billing_scheme": "checked: tiered plans are refused (per_unit only)"},
    ),
    "price": _known(
        "id unit_amount currency recurring.interval recurring.interval_count product",
        {
            "created": _CATALOGUE,
            "active": _CATALOGUE,
            "nickname": _CATALOGUE,
            "metadata": _CATALOGUE,
            "lookup_key": _CATALOGUE,
            "unit_amount_decimal": "string twin of unit_amount",
            "tax_behavior": "how the legacy catalogue taxes the price; migrated invoices carry "
            "their own taxes (total_taxes, inclusive or exclusive)",
        },
        {
            "type": "recurring",
            "billing_scheme": "per_unit",
            "recurring.usage_type": "licensed",
        },
    ),
    "product": _known(
        "id name",
        _same(
            _CATALOGUE,
            "created updated active description caption attributes images metadata "
            "shippable statement_descriptor type url unit_label package_dimensions "
            "default_price marketing_features tax_code",
        ),
    ),
    "discount": _known(
        "id coupon source.coupon start end subscription",
        {
            "source.type": "always coupon at this API version",
            "subscription_item": "an item-level discount is placed on its subscription",
            "customer": "implied by the snapshot's owner",
            "promotion_code": "how the coupon was redeemed; the coupon itself is migrated",
            "invoice": _BACKPOINTER,
            "invoice_item": _BACKPOINTER,
            "checkout_session": "how the coupon was redeemed",
        },
    ),
    "coupon": _known(
        "id percent_off amount_off currency duration duration_in_months",
        _same(_CATALOGUE, "created name metadata max_redemptions redeem_by times_redeemed valid"),
    ),
    "invoice": _known(
        "id number customer subscription status currency created date period_start period_end "
        "due_date status_transitions.paid_at subtotal total tax amount_paid amount_due "
        "amount_remaining starting_balance paid_out_of_band lines total_discount_amounts "
        "parent.type parent.subscription_details.subscription metadata "
        "discount discounts paid total_tax_amounts total_taxes payments "
        "amount_paid_off_stripe ending_balance pre_payment_credit_notes_amount",
        {
            **_CURRENT_INVOICE,
            "customer_email": "copy of the customer's email",
            "customer_name": "copy of the customer's name",
            "status_transitions.finalized_at": "status history; the current status is migrated",
            "status_transitions.marked_uncollectible_at": "status history",
            "status_transitions.voided_at": "status history",
            "attempt_count": _DUNNING,
            "attempted": _DUNNING,
            "next_payment_attempt": _DUNNING,
            "auto_advance": _DUNNING,
            "webhooks_delivered_at": _DUNNING,
            "billing_reason": "why the legacy system cut the invoice",
            "hosted_invoice_url": _LEGACY_DOCS,
            "invoice_pdf": _LEGACY_DOCS,
            "receipt_number": _LEGACY_DOCS,
            "statement_descriptor": _LEGACY_DOCS,
            "_draft": "localstripe-internal flag",
            "_voided": "localstripe-internal flag",
        },
        {
            **_CHARGE_AUTO,
            "post_payment_credit_notes_amount": 0,
            "amount_overpaid": 0,
            "amount_shipping": 0,
            "application_fee": None,
        },
        derived={
            "charge": "links the charge to this invoice: carried as payment.invoice_id",
            "payment_intent": "links the charge to this invoice: carried as payment.invoice_id",
            "subtotal_excluding_tax": "subtotal minus tax; both carried",
            "total_excluding_tax": "total minus tax; both carried",
            "default_tax_rates": "the rates are carried on the subscription; this invoice's "
            "tax is carried as tax and tax_breakdown",
        },
    ),
    "line_item": _known(
        "id amount description quantity period.start period.end proration plan price "
        "parent.type parent.subscription_item_details.proration "
        "parent.invoice_item_details.proration pricing.price_details.price taxes",
        {
            "parent.subscription_item_details.subscription": _BACKPOINTER,
            "parent.subscription_item_details.subscription_item": _BACKPOINTER,
            "parent.subscription_item_details.invoice_item": _BACKPOINTER,
            "parent.subscription_item_details.proration_details": "which lines a proration "
            "credits; the proration flag and amount are migrated",
            "parent.invoice_item_details.invoice_item": _BACKPOINTER,
            "parent.invoice_item_details.subscription": _BACKPOINTER,
            "parent.invoice_item_details.proration_details": "which lines a proration credits",
            "pricing.type": "always price_details for subscription lines",
            "pricing.price_details.product": "the price's product, read on the subscription item",
            "pricing.unit_amount_decimal": "string twin of the unit amount",
            "subtotal": "the line before discounts; the line amount and invoice totals are "
            "migrated",
            "discounts": _BACKPOINTER,
            "pretax_credit_amounts": "credits are migrated on the invoice and customer balance",
            "currency": "always the invoice's currency, which is read",
            "created": "line creation time; the invoice's created is migrated",
            "metadata": "copied from the invoice item; the invoice's metadata is migrated",
            "subscription": _BACKPOINTER,
            "subscription_item": _BACKPOINTER,
            "invoice_item": _BACKPOINTER,
            "invoice": _BACKPOINTER,
            "discount_amounts": "discount totals are migrated on the invoice",
            "discountable": "input to the legacy discount computation, already applied",
            "type": "origin of the line (subscription or one-off), implied by plan",
            "unique_id": "older-API alias of id",
            "unique_line_item_id": "older-API alias of id",
            "amount_excluding_tax": "derived: amount minus tax",
        },
    ),
    "charge": _known(
        "id amount currency status invoice payment_method source payment_intent created "
        "amount_refunded refunds",
        {
            "customer": "implied by the snapshot's owner",
            "metadata": _NO_PAYMENT_METADATA,
            "balance_transaction": _PROCESSOR,
            "captured": "implied by status",
            "amount_captured": "equals amount for a succeeded charge",
            "transfer_data": "Connect routing of the legacy account",
            "paid": "implied by status",
            "refunded": "implied by amount_refunded",
            "failure_code": _PROCESSOR,
            "failure_message": _PROCESSOR,
            "outcome": _PROCESSOR,
            "payment_method_details": _PROCESSOR,
            "billing_details": _PROCESSOR,
            "fraud_details": _PROCESSOR,
            "statement_descriptor": _PROCESSOR,
            "receipt_email": _LEGACY_DOCS,
            "receipt_number": _LEGACY_DOCS,
            "receipt_url": _LEGACY_DOCS,
            "_authorized": "localstripe-internal flag",
        },
        {"disputed": False},
    ),
    "payment_intent": _known(
        "id amount currency status invoice payment_method latest_charge created",
        {
            "client_secret": "a browser credential, never copied",
            "customer": "implied by the snapshot's owner",
            "charges": "the charges are read as their own objects",
            "payment_method_types": _PROCESSOR,
            "confirmation_method": _PROCESSOR,
            "amount_received": "equals amount for a succeeded intent",
            "_canceled": "localstripe-internal flag",
            "_authentication_failed": "localstripe-internal flag",
        },
        {"capture_method": "automatic", "amount_capturable": 0, "next_action": None},
    ),
    "refund": _known(
        "id amount currency charge payment_intent reason created status",
        {
            "metadata": _NO_PAYMENT_METADATA,
            "balance_transaction": _PROCESSOR,
            "receipt_number": _LEGACY_DOCS,
            "date": "older-API alias of created",
            "destination_details": _PROCESSOR,
        },
    ),
    "credit_note": _known(
        "id amount currency out_of_band_amount created status metadata invoice",
        rest=_REST_CREDIT_NOTE,
    ),
    "customer_balance_transaction": _known(
        "id amount currency metadata created",
        rest="balance movements are reflected in customer.balance, which is migrated; only "
        "twinbill's tagged offline payments are payments",
    ),
    "invoice_payment": _known(
        "id invoice payment amount_paid currency status status_transitions.paid_at created",
        rest="how the invoice was paid is read through payment (charge, intent or record)",
    ),
    "payment_record": _known(
        "id amount_guaranteed amount metadata created processor_details",
        rest="reported-payment details; the amount, date and reference are migrated",
    ),
    "list": _known(
        "data",
        {"url": "the API path the list came from", "total_count": "len(data)"},
        {"has_more": False},
        derived={"has_more": "a truncated list is refused: the snapshot must page it fully"},
    ),
    **{
        kind: _known("id", rest="payment method details stay in Stripe; only the id carries over")
        for kind in ("card", "payment_method", "source", "bank_account")
    },
}
