"""In-memory billing backend implementing both the legacy and the new protocol.

Runs the same contract suite as the real adapters (tests/integration/multiplexer/
test_backend_contract.py): if it passes where a real one fails, this fake is wrong.
Idempotency is honoured per key (same key -> same answer, no second record).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.canonical import (
    BillingHistory,
    Customer,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NextCharges,
    Payment,
    PaymentStatus,
    Plan,
    Refund,
    RefundMode,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    System,
)
from core.errors import BackendRejected, NotFound
from core.money import Money
from multiplexer.backends.base import (
    ImportResult,
    InventoryEntry,
    LegacyChange,
    LegacyChanges,
    RawSnapshot,
    Stage,
    UserRef,
)
from multiplexer.facets import LegacyFeatures

_STEP = {Interval.DAY: 1, Interval.WEEK: 7, Interval.MONTH: 30, Interval.YEAR: 365}


class FakeBillingBackend:
    """``LegacyBillingBackend`` and ``NewBillingBackend`` in one in-memory object."""

    def __init__(
        self,
        name: str = "fake",
        system: System = System.NEW,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self.system = system
        self.clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))
        self.plans: dict[str, Plan] = {}
        self.customers: dict[str, Customer] = {}  # by user id
        self.subs: dict[str, Subscription] = {}
        self.owner: dict[str, str] = {}  # record id -> user id
        self.invoices: dict[str, Invoice] = {}
        self.payments: dict[str, Payment] = {}
        self.refunds: dict[str, Refund] = {}
        self.imports: dict[str, ImportResult] = {}
        self._keys: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self.calls: list[str] = []
        #: the account's event stream; None: the fake keeps none (every re-check re-reads).
        #: Tests append with ``touch``; a direct store edit without it is a lost event.
        self.events: list[LegacyChange] | None = None

    # -- helpers ---------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids)}"

    def _once(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._keys:
            self._keys[key] = fn()
        return self._keys[key]

    def _customer(self, user_id: str) -> Customer:
        try:
            return self.customers[user_id]
        except KeyError:
            raise NotFound(f"no customer for user {user_id!r}", backend=self.name) from None

    def _sub(self, sub_id: str) -> Subscription:
        try:
            return self.subs[sub_id]
        except KeyError:
            raise NotFound(f"no subscription {sub_id!r}", backend=self.name) from None

    def _legacy(self, rec_id: str) -> str | None:
        return rec_id if self.system is System.LEGACY else None

    def _charge(self, user: str, sub: Subscription, lines: list[InvoiceLine]) -> Invoice:
        now = self.clock()
        total = sum(li.amount for li in lines)
        inv_id = self._id("in")
        inv = Invoice(
            id=inv_id,
            legacy_id=self._legacy(inv_id),
            currency=sub.currency,
            subscription_id=sub.id,
            status=InvoiceStatus.PAID,
            created_at=now,
            period_start=min(li.period_start or now for li in lines),
            period_end=max(li.period_end or now for li in lines),
            paid_at=now,
            subtotal=total,
            total=total,
            amount_paid=max(total, 0),
            lines=tuple(lines),
        )
        self.invoices[inv.id] = inv
        self.owner[inv.id] = user
        if total > 0:
            pid = self._id("py")
            self.payments[pid] = Payment(
                id=pid,
                legacy_id=self._legacy(pid),
                currency=sub.currency,
                invoice_id=inv.id,
                amount=total,
                status=PaymentStatus.SUCCEEDED,
                method="card",
                paid_at=now,
            )
            self.owner[pid] = user
        return inv

    def _line(
        self, amount: int, plan: str, start: datetime, end: datetime, proration: bool
    ) -> InvoiceLine:
        lid = self._id("il")
        return InvoiceLine(
            id=lid,
            legacy_id=self._legacy(lid),
            amount=amount,
            plan_code=plan,
            period_start=start,
            period_end=end,
            proration=proration,
        )

    # -- reads -------------------------------------------------------------------

    def get_history(self, ref: UserRef) -> BillingHistory:
        self.calls.append("get_history")
        cus = self._customer(ref.user_id)
        mine = lambda d: tuple(v for k, v in d.items() if self.owner.get(k) == ref.user_id)  # noqa: E731
        return BillingHistory(
            user_id=ref.user_id,
            system=self.system,
            customer=cus,
            subscriptions=mine(self.subs),
            invoices=mine(self.invoices),
            payments=mine(self.payments),
            refunds=mine(self.refunds),
        )

    def list_subscriptions(self, ref: UserRef) -> list[Subscription]:
        return list(self.get_history(ref).subscriptions)

    def list_invoices(self, ref: UserRef) -> list[Invoice]:
        return list(self.get_history(ref).invoices)

    def list_payments(self, ref: UserRef) -> list[Payment]:
        return list(self.get_history(ref).payments)

    def get_plan(self, plan_code: str) -> Plan:
        try:
            return self.plans[plan_code]
        except KeyError:
            raise NotFound(f"no plan {plan_code!r}", backend=self.name) from None

    def iter_customers(self, page_size: int = 100) -> Iterator[Customer]:
        yield from list(self.customers.values())

    def read_inventory(
        self, *, on_page: Callable[[str, int], None] | None = None, stage: Stage | None = None
    ) -> tuple[int, Iterator[InventoryEntry]]:
        """Every customer with its history (the fake has no raw objects: card, no tax;
        nothing to keep in a ``stage``)."""
        self.calls.append("read_inventory")
        customers = list(self.customers.items())

        def entries() -> Iterator[InventoryEntry]:
            for user_id, cus in customers:
                ref = UserRef(user_id, cus.id)
                yield InventoryEntry(
                    customer_id=cus.id,
                    user_id=cus.user_id,
                    customer=cus,
                    history=self.get_history(ref),
                    features=LegacyFeatures(payment_method="card"),
                    snapshot=self.snapshot(ref),
                )

        return len(customers), entries()

    def snapshot(self, ref: UserRef) -> RawSnapshot:
        started = self.clock()
        history = self.get_history(ref)
        return RawSnapshot(
            user_id=ref.user_id,
            customer_id=ref.legacy_customer_id or "",
            objects={"history": history.model_dump(mode="json")},
            taken_at=started,
        )

    def touch(self, *keys: str, event_type: str = "customer.updated") -> None:
        """An event in the account's stream about these ids (a customer id, or ``*``)."""
        assert self.events is not None, "set fake.events = [] to keep an event stream"
        self.events.append(LegacyChange(keys, self.clock(), event_type, self._id("evt")))

    @property
    def events_gap(self) -> str | None:
        return "the fake keeps no events" if self.events is None else None

    def list_changes(self, since: datetime) -> LegacyChanges:
        self.calls.append("list_changes")
        read_at = datetime.now(UTC)  # when the read started, on twinbill's clock
        if self.events is None:
            return LegacyChanges(since=since, read_at=read_at, gap=self.events_gap)
        floor = since.replace(microsecond=0)
        return LegacyChanges(
            since=since,
            read_at=read_at,
            changes=tuple(c for c in self.events if c.at >= floor),
            complete_from=floor,
            requests=1,
        )

    def snapshots(
        self,
        refs: Sequence[UserRef],
        on_snapshot: Callable[[RawSnapshot], None] | None = None,
        *,
        per_customer: bool = True,
        stage: Stage | None = None,
    ) -> dict[str, RawSnapshot]:
        """One "bulk read": the users the fake knows, dated at its start (it has nothing
        that costs a request per customer: ``per_customer`` changes nothing). With a
        ``stage``, the fake fills it as Stripe's read does (``"account read"``, each
        wanted customer's objects as rows) unless it is filled, and answers from its rows."""
        self.calls.append("snapshots")
        if stage is None:
            started = self.clock()
            known = [r for r in refs if r.user_id in self.customers]
            objects = {r.legacy_customer_id or "": self.snapshot(r).objects for r in known}
        else:
            if stage.taken_at is None:
                self.calls.append("account read")
                started = self.clock()
                wanted = stage.wanted()
                stage.begin()
                stage.add(
                    [
                        (cus.id, "customers", self.snapshot(UserRef(user_id, cus.id)).objects)
                        for user_id, cus in self.customers.items()
                        if wanted is None or cus.id in wanted
                    ]
                )
                stage.finish(started, {})
            assert stage.taken_at is not None
            started = stage.taken_at
            rows = stage.load([r.legacy_customer_id or "" for r in refs])
            objects = {cid: got["customers"][0] for cid, got in rows.items()}
        out = {}
        for r in refs:
            if (cid := r.legacy_customer_id or "") in objects:
                snap = RawSnapshot(r.user_id, cid, objects[cid])
                out[r.user_id] = replace(snap, taken_at=started)
                if on_snapshot is not None:
                    on_snapshot(out[r.user_id])
        return out

    def complete_snapshot(self, snap: RawSnapshot) -> RawSnapshot:
        return snap

    def read_costs(self, members: int, account: Mapping[str, int]) -> tuple[int, int]:
        """As Stripe's: a page per 100 customers against 5 requests per user."""
        return max(1, account.get("customers", 0) // 100), 5 * members

    def map_snapshot(self, snapshot: RawSnapshot) -> BillingHistory:
        return BillingHistory.model_validate(snapshot.objects["history"])

    # -- writes -------------------------------------------------------------------

    def create_customer(
        self,
        user_id: str,
        *,
        email: str | None,
        name: str | None,
        currency: str,
        idempotency_key: str,
    ) -> Customer:
        def make() -> Customer:
            if user_id in self.customers:
                raise BackendRejected(f"user {user_id!r} already has a customer", backend=self.name)
            cid = self._id("cus")
            cus = Customer(
                id=cid,
                legacy_id=self._legacy(cid),
                user_id=user_id,
                email=email,
                name=name,
                currency=currency,
                created_at=self.clock(),
            )
            self.customers[user_id] = cus
            return cus

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    def create_subscription(
        self,
        ref: UserRef,
        plan: Plan,
        *,
        quantity: int,
        trial_days: int | None,
        idempotency_key: str,
    ) -> Subscription:
        def make() -> Subscription:
            cus = self._customer(ref.user_id)
            if plan.currency != cus.currency:
                raise BackendRejected(
                    f"plan currency {plan.currency} differs from the customer's {cus.currency}",
                    backend=self.name,
                )
            now = self.clock()
            end = now + timedelta(days=trial_days or _STEP[plan.interval] * plan.interval_count)
            sid, iid = self._id("sub"), self._id("si")
            item = SubscriptionItem(
                id=iid,
                legacy_id=self._legacy(iid),
                plan_code=plan.id,
                product_name=plan.product_name,
                unit_amount=plan.unit_amount,
                quantity=quantity,
                interval=plan.interval,
                interval_count=plan.interval_count,
            )
            sub = Subscription(
                id=sid,
                legacy_id=self._legacy(sid),
                currency=plan.currency,
                status=SubscriptionStatus.TRIALING if trial_days else SubscriptionStatus.ACTIVE,
                created_at=now,
                current_period_start=now,
                current_period_end=end,
                trial_start=now if trial_days else None,
                trial_end=end if trial_days else None,
                items=(item,),
            )
            self.subs[sid] = sub
            self.owner[sid] = ref.user_id
            if not trial_days:
                self._charge(
                    ref.user_id,
                    sub,
                    [self._line(plan.unit_amount * quantity, plan.id, now, end, False)],
                )
            return sub

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    def change_plan(
        self, ref: UserRef, subscription_id: str, plan: Plan, *, prorate: bool, idempotency_key: str
    ) -> Subscription:
        def make() -> Subscription:
            sub = self._sub(subscription_id)
            if plan.currency != sub.currency:
                raise BackendRejected("plan currency differs", backend=self.name)
            old = sub.items[0]
            item = old.model_copy(
                update={
                    "plan_code": plan.id,
                    "unit_amount": plan.unit_amount,
                    "product_name": plan.product_name,
                }
            )
            new = sub.model_copy(update={"items": (item,)})
            self.subs[sub.id] = new
            if prorate and sub.status is SubscriptionStatus.ACTIVE:
                now, end = self.clock(), sub.current_period_end
                span = (end - sub.current_period_start).total_seconds() or 1
                share = (end - now).total_seconds() / span
                credit = round(old.unit_amount * old.quantity * share)
                debit = round(plan.unit_amount * old.quantity * share)
                self._charge(
                    ref.user_id,
                    new,
                    [
                        self._line(-credit, old.plan_code, now, end, True),
                        self._line(debit, plan.id, now, end, True),
                    ],
                )
            return new

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    def cancel_subscription(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        at_period_end: bool,
        refund: RefundMode,
        idempotency_key: str,
    ) -> Subscription:
        def make() -> Subscription:
            sub = self._sub(subscription_id)
            if sub.status is SubscriptionStatus.CANCELED:
                raise BackendRejected(f"{sub.id} is already canceled", backend=self.name)
            if at_period_end:
                new = sub.model_copy(update={"cancel_at_period_end": True})
            else:
                now = self.clock()
                new = sub.model_copy(
                    update={
                        "status": SubscriptionStatus.CANCELED,
                        "canceled_at": now,
                        "ended_at": now,
                    }
                )
            self.subs[sub.id] = new
            return new

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    def cancel_for_migration(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        migration_id: str,
        idempotency_key: str,
        known_live: bool = False,
    ) -> Subscription:
        sub = self._sub(subscription_id)
        if sub.status is SubscriptionStatus.CANCELED:
            return sub
        self.subs[sub.id] = sub.model_copy(
            update={"metadata": {**sub.metadata, "twinbill_migration": migration_id}}
        )
        return self.cancel_subscription(
            ref,
            subscription_id,
            at_period_end=False,
            refund=RefundMode.NONE,
            idempotency_key=idempotency_key,
        )

    def refund_payment(
        self,
        ref: UserRef,
        payment_id: str,
        *,
        amount: Money | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund:
        def make() -> Refund:
            if payment_id not in self.payments:
                raise NotFound(f"no payment {payment_id!r}", backend=self.name)
            pay = self.payments[payment_id]
            left = pay.amount - pay.amount_refunded
            value = left if amount is None else amount.amount
            if value <= 0 or value > left:
                raise BackendRejected(f"{payment_id} has {left} left to refund", backend=self.name)
            rid = self._id("re")
            rf = Refund(
                id=rid,
                legacy_id=self._legacy(rid),
                currency=pay.currency,
                payment_id=pay.id,
                amount=value,
                reason=reason,
                method="card" if pay.method == "card" else "offline",
                created_at=self.clock(),
            )
            self.refunds[rid] = rf
            self.owner[rid] = self.owner[pay.id]
            self.payments[pay.id] = pay.model_copy(
                update={"amount_refunded": pay.amount_refunded + value}
            )
            return rf

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

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
        def make() -> Payment:
            cus = self._customer(ref.user_id)
            if amount.currency != cus.currency:
                raise BackendRejected("currency differs from the customer's", backend=self.name)
            pid = self._id("py")
            pay = Payment(
                id=pid,
                legacy_id=self._legacy(pid),
                currency=amount.currency,
                invoice_id=invoice_id,
                amount=amount.amount,
                status=PaymentStatus.SUCCEEDED,
                method="offline",
                reference=reference,
                paid_at=paid_at,
            )
            self.payments[pid] = pay
            self.owner[pid] = ref.user_id
            return pay

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

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
        def make() -> Refund:
            self._customer(ref.user_id)
            rid = self._id("re")
            rf = Refund(
                id=rid,
                legacy_id=self._legacy(rid),
                currency=amount.currency,
                payment_id=payment_id,
                amount=amount.amount,
                reason=reason,
                method="offline",
                reference=reference,
                created_at=refunded_at,
            )
            self.refunds[rid] = rf
            self.owner[rid] = ref.user_id
            return rf

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    # -- imports (new side) ----------------------------------------------------------

    def create_import(self, payload: dict[str, Any], *, idempotency_key: str) -> ImportResult:
        def make() -> ImportResult:
            imp = ImportResult(
                id=self._id("imp"), status="pending", user_id=payload["user_id"], raw=payload
            )
            self.imports[imp.id] = imp
            return imp

        return self._once(idempotency_key, make)  # type: ignore[no-any-return]

    def _set_import(self, import_id: str, status: str, allowed: set[str]) -> ImportResult:
        imp = self.get_import(import_id)
        if imp.status == status:
            return imp
        if imp.status not in allowed:
            raise BackendRejected(f"import {import_id} is {imp.status}", backend=self.name)
        new = ImportResult(id=imp.id, status=status, user_id=imp.user_id, raw=imp.raw)
        self.imports[imp.id] = new
        return new

    def activate_import(self, import_id: str, *, idempotency_key: str) -> ImportResult:
        return self._set_import(import_id, "active", {"pending"})

    def discard_import(self, import_id: str, *, idempotency_key: str) -> ImportResult:
        return self._set_import(import_id, "discarded", {"pending"})

    def get_import(self, import_id: str) -> ImportResult:
        try:
            return self.imports[import_id]
        except KeyError:
            raise NotFound(f"no import {import_id!r}", backend=self.name) from None

    def subscriptions_now(self, ref: UserRef) -> list[dict[str, Any]]:
        # the fake's snapshot holds a mapped history, no raw subscriptions (as before)
        return list(self.snapshot(ref).objects.get("subscriptions") or [])

    def preview_next_charges(
        self, ref: UserRef, *, known: RawSnapshot | None = None
    ) -> NextCharges:
        from tests.fakes import preview

        self.calls.append("preview_next_charges")
        cus = self._customer(ref.user_id)
        subs = [s for s in self.subs.values() if self.owner.get(s.id) == ref.user_id]
        charges = [
            preview.charge(
                id=s.id,
                legacy_id=s.id,
                currency=s.currency,
                status=s.status.value,
                cancel_at_period_end=s.cancel_at_period_end,
                trial_end=s.trial_end,
                period_end=s.current_period_end,
                amount=s.recurring_amount,
            )
            for s in sorted(subs, key=lambda s: (s.created_at, s.id))
        ]
        return preview.settle(ref.user_id, System.LEGACY, charges, cus.balance)

    def preview_import(self, import_id: str) -> NextCharges:
        from tests.fakes import preview

        self.calls.append("preview_import")
        imp = self.get_import(import_id)
        if imp.status == "discarded":
            raise BackendRejected(f"import {import_id} was discarded", backend=self.name)
        return preview.from_payload(imp.raw)

    def get_bundle(self, user_id: str) -> dict[str, Any]:
        return self.get_history(UserRef(user_id)).model_dump(mode="json")

    def map_bundle(self, bundle: dict[str, Any]) -> BillingHistory:
        return BillingHistory.model_validate(bundle)

    def export(self) -> Iterator[dict[str, Any]]:
        for user_id in list(self.customers):
            yield self.get_bundle(user_id)
