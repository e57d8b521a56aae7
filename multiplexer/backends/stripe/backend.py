"""The legacy system: Stripe Billing through the official SDK (the only module importing stripe).

The client is built once by the composition root (``registry.build_legacy``) and
passed in; nothing here touches the global ``stripe.api_key``. Every request goes
through ``StripeCalls.call`` (transport): the throttle first (each page of a
list counts), then the SDK, then the error translation into ``core.errors``.

``dialect`` says which requests the server understands: ``"current"`` (real
Stripe at the SDK's pinned API version: Prices, ``proration_behavior``, payment
records, credit notes, balance transactions, ``create_preview``) or
``"localstripe"`` (the older Plans API: ``plan`` in items, ``prorate``, no offline
money; see docs/legacy-gaps.md). What each sends and how its answers read is one
frozen value, ``dialect.DIALECTS[dialect]``, read by the transport and the mapping;
the mapping reads both generations of shapes for every dialect.

Idempotency: every write sends an ``idempotency_key``; a write made of several
requests derives one key per step (``<key>:<step>``) so a retry replays each
step. Stripe replays a saved *500* under the same key as well: a retried write
that keeps failing that way must be re-read and retried under a fresh key by the
caller (the migration engine does re-read-then-retry), not hammered here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import stripe

from core.canonical import (
    BillingHistory,
    Customer,
    Invoice,
    NextCharges,
    Payment,
    Plan,
    Refund,
    RefundMode,
    Subscription,
)
from core.errors import BackendRejected, NotFound, TransformError
from core.money import Money
from multiplexer.backends.base import (
    InventoryEntry,
    LegacyChanges,
    RawSnapshot,
    Recreation,
    Stage,
    Throttle,
    UserRef,
    no_throttle,
)
from multiplexer.backends.stripe import bulk, cancel, events, rollback, snapshot
from multiplexer.backends.stripe.dialect import DialectName
from multiplexer.backends.stripe.fields import META_CURRENCY, META_REASON, META_USER
from multiplexer.backends.stripe.mapping import (
    customer_balance,
    customer_currency,
    map_customer,
    map_objects,
    map_plan,
    map_subscription,
)
from multiplexer.backends.stripe.offline import (
    record_offline_payment,
    record_offline_refund,
    refuse_on_localstripe,
)
from multiplexer.backends.stripe.payments import map_refund
from multiplexer.backends.stripe.preview import map_next_charges, wants_preview
from multiplexer.backends.stripe.transport import StripeCalls, to_plain

STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


class StripeLegacyBackend:
    """``LegacyBillingBackend`` over ``stripe.StripeClient``."""

    name = "stripe"

    def __init__(
        self,
        client: stripe.StripeClient,
        throttle: Throttle = no_throttle,
        *,
        dialect: DialectName = "current",
        page_size: int = 100,
    ) -> None:
        self.client = client
        self.dialect = dialect
        self._t = StripeCalls(client, throttle, page_size, dialect)

    # -- plumbing --------------------------------------------------------------
    def _customer_id(self, ref: UserRef) -> str:
        if not ref.legacy_customer_id:
            raise NotFound(f"user {ref.user_id!r} has no legacy customer id", backend=self.name)
        return ref.legacy_customer_id

    # -- account facts (``twinbill legacy check``) ----------------------------------
    @property
    def api_version(self) -> str:
        """The version every request is pinned to (the SDK sends it on each request)."""
        return str(stripe.api_version)

    def webhook_endpoints(self) -> list[dict[str, Any]]:
        """Webhook endpoints registered on the account (none on localstripe: 404)."""
        return list(self._t.pages("list webhook endpoints", self.client.v1.webhook_endpoints.list))

    # -- reads -----------------------------------------------------------------
    def snapshot(self, ref: UserRef) -> RawSnapshot:
        """The customer's complete state, every page of every list, as plain dicts."""
        cid = self._customer_id(ref)
        started = datetime.now(UTC)  # the read's start: any change after it may be missing
        return RawSnapshot(
            user_id=ref.user_id,
            customer_id=cid,
            objects=snapshot.fetch(self._t, cid),
            taken_at=started,
        )

    def snapshots(
        self,
        refs: Sequence[UserRef],
        on_snapshot: Callable[[RawSnapshot], None] | None = None,
        *,
        per_customer: bool = True,
        stage: Stage | None = None,
    ) -> dict[str, RawSnapshot]:
        """These users' snapshots from one account-wide read (bulk), each equal to its
        per-user ``snapshot`` and dated at the read's start; a user missing from the
        answer (no customer id, not in the account, gone mid-read) is read per user.
        ``stage``: the read a cohort's chunks share (``bulk.fill`` once, then assembled)."""
        return bulk.snapshots(self._t, refs, on_snapshot, per_customer=per_customer, stage=stage)

    def complete_snapshot(self, snap: RawSnapshot) -> RawSnapshot:
        """A ``snapshots(per_customer=False)`` snapshot made equal to the per-user one."""
        return bulk.complete(self._t, snap)

    def read_costs(self, members: int, account: Mapping[str, int]) -> tuple[int, int]:
        """Estimated requests to snapshot ``members`` users: (bulk, per user)."""
        return bulk.estimate(self._t, members, account)

    @property
    def events_gap(self) -> str | None:
        return self._t.wire.events_gap or None

    def list_changes(self, since: datetime) -> LegacyChanges:
        """Who changed since ``since``, from the account's event stream (events)."""
        return events.read_changes(self._t, since)

    def map_snapshot(self, snapshot: RawSnapshot) -> BillingHistory:
        return map_objects(
            snapshot.user_id, snapshot.objects, dialect=self.dialect, now=snapshot.taken_at
        )

    def preview_next_charges(
        self, ref: UserRef, *, now: datetime | None = None, known: RawSnapshot | None = None
    ) -> NextCharges:
        """What Stripe itself will charge next: every subscription as the server lists it,
        one upcoming-invoice preview per subscription that can bill (preview).

        ``known``: a snapshot the caller has just proved current (the saga's re-check):
        its customer and subscriptions are the server's own answers already, so only the
        previews are requested (one request per billing subscription instead of 2 + that)."""
        cid = self._customer_id(ref)
        v1 = self.client.v1
        now = now or datetime.now(UTC)
        if known is not None:
            customer = known.objects["customer"]
            subs = list(known.objects.get("subscriptions") or [])
        else:
            customer = to_plain(self._t.call("retrieve customer", v1.customers.retrieve, cid))
            subs = self.subscriptions_now(ref)
        previews = {
            s["id"]: self._t.upcoming_invoice(cid, s["id"])
            for s in subs
            if wants_preview(s, dialect=self.dialect, now=now)
        }
        try:
            own_currency: str | None = customer_currency(customer, subs)
        except TransformError:  # never billed and no currency recorded anywhere
            own_currency = None
        return map_next_charges(
            ref.user_id,
            customer,
            subs,
            previews,
            dialect=self.dialect,
            now=now,
            balance=customer_balance(customer, dialect=self.dialect),
            currency=own_currency,
        )

    def get_history(self, ref: UserRef) -> BillingHistory:
        return self.map_snapshot(self.snapshot(ref))

    def subscriptions_now(self, ref: UserRef) -> list[dict[str, Any]]:
        """The customer's subscriptions as the server lists them now (``status=all``, every
        page), in the snapshot's shape: one request where a snapshot costs 5–7."""
        return snapshot.subscriptions(self._t, self._customer_id(ref))

    def list_subscriptions(self, ref: UserRef) -> list[Subscription]:
        return list(self.get_history(ref).subscriptions)

    def list_invoices(self, ref: UserRef) -> list[Invoice]:
        return list(self.get_history(ref).invoices)

    def list_payments(self, ref: UserRef) -> list[Payment]:
        return list(self.get_history(ref).payments)

    def get_plan(self, plan_code: str) -> Plan:
        return map_plan(
            to_plain(
                self._t.call(
                    "retrieve plan",
                    self.client.v1.plans.retrieve,
                    plan_code,
                    {"expand": ["product"]},
                )
            )
        )

    def iter_customers(self, page_size: int = 100) -> Iterator[Customer]:
        wire = self._t.wire
        params = {"expand": ["data.subscriptions"]} if wire.customers_embed_subscriptions else {}
        for cus in self._t.pages(
            "list customers", "/v1/customers", params=params, page_size=page_size
        ):
            # localstripe embeds no subscriptions and invents customer.currency = eur
            # (docs/legacy-gaps.md): one extra call reads the real billing currency
            embedded = wire.customers_embed_subscriptions
            subs = [] if embedded else self._t.newest_subscription(cus["id"])
            yield map_customer(cus, subscriptions=subs, dialect=self.dialect)

    def read_inventory(
        self, *, on_page: Callable[[str, int], None] | None = None, stage: Stage | None = None
    ) -> tuple[int, Iterator[InventoryEntry]]:
        """Account-wide lists, 100 per page, grouped per customer (bulk), kept in ``stage``
        (default: in memory) until each customer's entry is made."""
        stage = stage if stage is not None else bulk.MemoryStage()
        bulk.fill(self._t, stage, on_page=on_page)
        ids = stage.customer_ids()
        return len(ids), bulk.entries(self._t, stage, self.map_snapshot, dialect=self.dialect)

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
