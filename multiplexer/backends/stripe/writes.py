"""The Stripe legacy backend's writes: customers, subscription changes, cancels, a
rollback's writes, card refunds and offline money (``StripeWrites``, mixed into
``backend.StripeLegacyBackend``).

Kept apart from the reads (``backend.py``: snapshots, events, inventory) so that each
file stays short enough to review; callers still import ``StripeLegacyBackend`` from
``backend``. Every write goes through ``StripeCalls.write`` with the caller's idempotency key (see
``backend``'s docstring: one key per step, ``<key>:<step>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.canonical import BillingHistory, Customer, Payment, Plan, Refund, RefundMode, Subscription
from core.errors import BackendRejected, NotFound
from core.money import Money
from multiplexer.backends.base import Recreation, UserRef
from multiplexer.backends.stripe import cancel, rollback
from multiplexer.backends.stripe.fields import META_CURRENCY, META_REASON, META_USER
from multiplexer.backends.stripe.mapping import customer_currency, map_customer, map_subscription
from multiplexer.backends.stripe.offline import (
    record_offline_payment,
    record_offline_refund,
    refuse_on_localstripe,
)
from multiplexer.backends.stripe.payments import map_refund
from multiplexer.backends.stripe.transport import StripeCalls, to_plain

if TYPE_CHECKING:
    import stripe

    from multiplexer.backends.stripe.dialect import DialectName

STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


class StripeWrites:
    """The writes of ``StripeLegacyBackend`` (which provides the client, the transport,
    the customer id and the reads these use)."""

    name: str
    client: stripe.StripeClient
    dialect: DialectName
    _t: StripeCalls

    if TYPE_CHECKING:

        def _customer_id(self, ref: UserRef) -> str: ...
        def get_plan(self, plan_code: str) -> Plan: ...
        def get_history(self, ref: UserRef) -> BillingHistory: ...

    # -- writes ------------------------------------------------------------------

    def create_customer(
        self,
        user_id: str,
        *,
        email: str | None,
        name: str | None,
        currency: str,
        idempotency_key: str,
    ) -> Customer:
        """Stripe customers have no settable currency: twinbill keeps it in metadata."""
        params: dict[str, Any] = {"metadata": {META_USER: user_id, META_CURRENCY: currency.upper()}}
        if email is not None:
            params["email"] = email
        if name is not None:
            params["name"] = name
        cus = self._t.write(
            "create customer", self.client.v1.customers.create, key=idempotency_key, params=params
        )
        return map_customer(cus, dialect=self.dialect)

    def _check_plan(self, customer: dict[str, Any], plan: Plan) -> str:
        """Refuse a plan the catalogue does not hold as asked, or in another currency."""
        try:
            actual = self.get_plan(plan.id)
        except NotFound as exc:
            raise BackendRejected(
                f"legacy has no plan {plan.id!r}",
                backend=self.name,
                status=exc.status,
                field="plan",
            ) from exc
        mine = (actual.currency, actual.unit_amount, actual.interval, actual.interval_count)
        asked = (plan.currency, plan.unit_amount, plan.interval, plan.interval_count)
        if mine != asked:
            raise BackendRejected(
                f"plan {plan.id!r} is {mine} in legacy, caller asked {asked}",
                backend=self.name,
                field="plan",
            )
        cur = customer_currency(customer)
        if plan.currency != cur:
            raise BackendRejected(
                f"plan {plan.id!r} is in {plan.currency}, customer {customer['id']} bills in {cur}",
                backend=self.name,
                field="currency",
            )
        return plan.id

    def _item(self, code: str, **extra: Any) -> dict[str, Any]:
        return {self._t.wire.item_key: code, **extra}

    def create_subscription(
        self,
        ref: UserRef,
        plan: Plan,
        *,
        quantity: int,
        trial_days: int | None,
        idempotency_key: str,
    ) -> Subscription:
        cid = self._customer_id(ref)
        cus = to_plain(self._t.call("retrieve customer", self.client.v1.customers.retrieve, cid))
        params: dict[str, Any] = {
            "customer": cid,
            "items": [self._item(self._check_plan(cus, plan), quantity=quantity)],
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        sub = self._t.write(
            "create subscription",
            self.client.v1.subscriptions.create,
            key=idempotency_key,
            params=params,
        )
        return map_subscription(sub, dialect=self.dialect)

    def change_plan(
        self, ref: UserRef, subscription_id: str, plan: Plan, *, prorate: bool, idempotency_key: str
    ) -> Subscription:
        """With ``prorate`` the difference is invoiced (and charged) now.

        Current API: ``proration_behavior=always_invoice``. localstripe only knows
        ``prorate`` and leaves the credit pending, so the invoice is created and
        paid explicitly (and ``prorate=False`` is ignored by it: see legacy-gaps).
        """
        v1 = self.client.v1
        cid = self._customer_id(ref)
        sub = self._t.subscription(subscription_id)
        cus = to_plain(self._t.call("retrieve customer", v1.customers.retrieve, cid))
        item_id = sub["items"]["data"][0]["id"]
        params: dict[str, Any] = {"items": [self._item(self._check_plan(cus, plan), id=item_id)]}
        invoice_it = self._t.wire.proration == "prorate_then_invoice"
        if invoice_it:
            params["prorate"] = prorate
        else:
            params["proration_behavior"] = "always_invoice" if prorate else "none"
        updated = self._t.write(
            "change plan",
            v1.subscriptions.update,
            subscription_id,
            key=f"{idempotency_key}:update",
            params=params,
        )
        if invoice_it and prorate:
            inv = self._t.write(
                "invoice proration",
                v1.invoices.create,
                key=f"{idempotency_key}:invoice",
                params={"customer": cid, "subscription": subscription_id},
            )
            if inv.get("status") == "draft":
                self._t.write(
                    "pay proration", v1.invoices.pay, inv["id"], key=f"{idempotency_key}:pay"
                )
            updated = self._t.subscription(subscription_id)
        return map_subscription(updated, dialect=self.dialect)

    def cancel_subscription(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        at_period_end: bool,
        refund: RefundMode,
        idempotency_key: str,
    ) -> Subscription:
        v1 = self.client.v1
        if refund is RefundMode.PRORATED:
            raise BackendRejected(
                "the legacy adapter cannot refund a prorated share on cancel",
                backend=self.name,
                field="refund",
            )
        if at_period_end:
            if refund is not RefundMode.NONE:
                raise BackendRejected(
                    "no refund when cancelling at period end", backend=self.name, field="refund"
                )
            sub = self._t.write(
                "cancel at period end",
                v1.subscriptions.update,
                subscription_id,
                key=idempotency_key,
                params={"cancel_at_period_end": True},
            )
            return map_subscription(sub, dialect=self.dialect)
        if refund is RefundMode.LAST_PAYMENT:
            self._refund_last_payment(ref, subscription_id, f"{idempotency_key}:refund")
        sub = self._t.write(
            "cancel subscription",
            v1.subscriptions.cancel,
            subscription_id,
            key=f"{idempotency_key}:cancel",
            params={"invoice_now": False, "prorate": False},
        )
        return map_subscription(sub, dialect=self.dialect)

    def _refund_last_payment(self, ref: UserRef, subscription_id: str, key: str) -> None:
        history = self.get_history(ref)
        invoices = {i.id for i in history.invoices if i.subscription_id == subscription_id}
        paid = [
            p
            for p in history.payments
            if p.invoice_id in invoices and p.method == "card" and p.amount > p.amount_refunded
        ]
        if paid:
            last = max(paid, key=lambda p: (p.paid_at, p.id))
            self.refund_payment(ref, last.id, amount=None, reason="canceled", idempotency_key=key)

    def cancel_for_migration(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        migration_id: str,
        idempotency_key: str,
        known_live: bool = False,
    ) -> Subscription:
        """Cancel now, no proration, no refund, marked as the migration's: one request per
        live subscription where the dialect allows (``cancel``); safe to repeat."""
        sub = cancel.cancel_for_migration(
            self._t,
            subscription_id,
            migration_id=migration_id,
            key=idempotency_key,
            known_live=known_live,
        )
        return map_subscription(sub, dialect=self.dialect)

    # -- a rollback's writes (stripe/rollback.py) ------------------------------------------
    def recreate_subscription(
        self, ref: UserRef, spec: Recreation, *, rollback_id: str, idempotency_key: str
    ) -> Subscription:
        sub = rollback.recreate(
            self._t, self._customer_id(ref), spec, rollback_id=rollback_id, key=idempotency_key
        )
        return map_subscription(sub, dialect=self.dialect)

    def remove_recreated(
        self, ref: UserRef, subscription_id: str, *, rollback_id: str, idempotency_key: str
    ) -> None:
        rollback.remove(self._t, subscription_id, key=idempotency_key)

    def customer_live(self, ref: UserRef) -> bool:
        return rollback.customer_live(self._t, self._customer_id(ref))

    def recreated_by(self, ref: UserRef, rollback_id: str) -> list[str]:
        """Ids of the live subscriptions this rollback created (found by their marker)."""
        return [s["id"] for s in rollback.recreated(self._t, self._customer_id(ref), rollback_id)]

    def refund_payment(
        self,
        ref: UserRef,
        payment_id: str,
        *,
        amount: Money | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund:
        params: dict[str, Any] = {"charge": payment_id}
        if amount is not None:
            params["amount"] = amount.amount
        if reason:
            params["metadata"] = {META_REASON: reason}
            if reason in STRIPE_REFUND_REASONS and self._t.wire.refund_reason:
                params["reason"] = reason
        rf = self._t.write(
            "refund payment", self.client.v1.refunds.create, key=idempotency_key, params=params
        )
        return map_refund(rf)

    def record_offline_payment(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        paid_at: datetime,
        invoice_id: str | None,
        note: str | None,
        idempotency_key: str,
    ) -> Payment:
        return record_offline_payment(
            self._t,
            self._customer_id(ref),
            amount,
            reference=reference,
            paid_at=paid_at,
            invoice_id=invoice_id,
            note=note,
            idempotency_key=idempotency_key,
        )

    def record_offline_refund(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        refunded_at: datetime,
        payment_id: str | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund:
        refuse_on_localstripe(self._t, "an offline refund")
        return record_offline_refund(
            self._t,
            self.get_history(ref),
            amount,
            reference=reference,
            refunded_at=refunded_at,
            payment_id=payment_id,
            reason=reason,
            idempotency_key=idempotency_key,
        )
