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

This module holds the class, its plumbing and its reads (snapshots, events,
inventory); its writes are the ``writes.StripeWrites`` mixin.
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
    Subscription,
)
from core.errors import NotFound, TransformError
from multiplexer.backends.base import (
    InventoryEntry,
    LegacyChanges,
    RawSnapshot,
    Stage,
    Throttle,
    UserRef,
    no_throttle,
)
from multiplexer.backends.stripe import bulk, events, snapshot
from multiplexer.backends.stripe.dialect import DialectName
from multiplexer.backends.stripe.mapping import (
    customer_balance,
    customer_currency,
    map_customer,
    map_objects,
    map_plan,
)
from multiplexer.backends.stripe.preview import map_next_charges, wants_preview
from multiplexer.backends.stripe.transport import StripeCalls, to_plain
from multiplexer.backends.stripe.writes import STRIPE_REFUND_REASONS, StripeWrites

__all__ = ["STRIPE_REFUND_REASONS", "StripeLegacyBackend"]


class StripeLegacyBackend(StripeWrites):
    """``LegacyBillingBackend`` over ``stripe.StripeClient``; the writes are inherited
    from ``StripeWrites`` (writes.py)."""

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
