"""Hypothesis strategies for canonical billing histories, and the identity transform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from core.canonical import (
    BillingHistory,
    Customer,
    Discount,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    System,
)
from reconciler.rules import SUBSCRIPTION_STATUS_RENAMES

CURRENCIES = ("USD", "EUR", "JPY", "BHD")
T0 = 1_600_000_000

instants = st.integers(min_value=T0, max_value=T0 + 200_000_000).map(
    lambda s: datetime.fromtimestamp(s, tz=UTC)
)
opt_instants = st.none() | instants
words = st.text(alphabet="abcdefghij <>&\"'é", min_size=1, max_size=8)
opt_words = st.none() | words
small = st.integers(min_value=0, max_value=10_000)
positive = st.integers(min_value=1, max_value=10_000)
metadata = st.dictionaries(st.sampled_from(["plan", "src", "note"]), words, max_size=2)


@st.composite
def histories(draw: st.DrawFn, user_id: str | None = None) -> BillingHistory:
    uid = user_id or draw(st.from_regex(r"u[0-9]{1,4}", fullmatch=True))
    cur = draw(st.sampled_from(CURRENCIES))
    cus = f"cus_{uid}"
    customer = Customer(
        id=cus,
        legacy_id=cus,
        currency=cur,
        user_id=uid,
        email=draw(opt_words),
        name=draw(opt_words),
        balance=draw(st.integers(-500, 500)),
        payment_method_ids=tuple(
            draw(st.lists(st.sampled_from(["pm_1", "pm_2", "card_3"]), max_size=3, unique=True))
        ),
        created_at=draw(opt_instants),
        metadata=draw(metadata),
    )
    subs = []
    for i in range(draw(st.integers(0, 2))):
        sid = f"sub_{uid}_{i}"
        start = draw(instants)
        items = tuple(
            SubscriptionItem(
                id=f"si_{uid}_{i}_{k}",
                legacy_id=f"si_{uid}_{i}_{k}",
                plan_code=draw(st.sampled_from(["basic", "pro"])),
                product_name=draw(opt_words),
                unit_amount=draw(small),
                quantity=draw(st.integers(1, 5)),
                interval=draw(st.sampled_from(list(Interval))),
                interval_count=draw(st.integers(1, 3)),
            )
            for k in range(draw(st.integers(1, 2)))
        )
        subs.append(
            Subscription(
                id=sid,
                legacy_id=sid,
                currency=cur,
                status=draw(st.sampled_from(list(SubscriptionStatus))),
                created_at=start,
                current_period_start=start,
                current_period_end=start + timedelta(days=30),
                trial_start=draw(opt_instants),
                trial_end=draw(opt_instants),
                cancel_at_period_end=draw(st.booleans()),
                canceled_at=draw(opt_instants),
                ended_at=draw(opt_instants),
                items=items,
                metadata=draw(metadata),
            )
        )
    sub_ids = [s.id for s in subs]
    maybe_sub = st.none() | st.sampled_from(sub_ids) if sub_ids else st.none()
    discounts = tuple(
        Discount(
            id=f"di_{uid}_{i}",
            legacy_id=f"di_{uid}_{i}",
            subscription_id=draw(maybe_sub),
            coupon_code=draw(words),
            percent_off_bp=draw(st.none() | st.integers(1, 10_000)),
            amount_off=draw(st.none() | small),
            currency=draw(st.none() | st.just(cur)),
            duration=draw(st.sampled_from(["once", "forever", "repeating"])),
            duration_in_months=draw(st.none() | st.integers(1, 12)),
            starts_at=draw(opt_instants),
            ends_at=draw(opt_instants),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    invoices = []
    for i in range(draw(st.integers(0, 3))):
        iid = f"in_{uid}_{i}"
        lines = tuple(
            InvoiceLine(
                id=f"il_{uid}_{i}_{k}",
                legacy_id=f"il_{uid}_{i}_{k}",
                description=draw(opt_words),
                amount=draw(st.integers(-1000, 10_000)),
                quantity=draw(st.integers(1, 3)),
                period_start=draw(opt_instants),
                period_end=draw(opt_instants),
                proration=draw(st.booleans()),
                plan_code=draw(st.none() | st.just("basic")),
            )
            for k in range(draw(st.integers(0, 2)))
        )
        total = draw(small)
        invoices.append(
            Invoice(
                id=iid,
                legacy_id=iid,
                currency=cur,
                number=draw(opt_words),
                subscription_id=draw(maybe_sub),
                status=draw(st.sampled_from(list(InvoiceStatus))),
                created_at=draw(instants),
                period_start=draw(opt_instants),
                period_end=draw(opt_instants),
                due_at=draw(opt_instants),
                paid_at=draw(opt_instants),
                subtotal=total,
                discount_total=draw(small),
                tax=draw(small),
                total=total,
                amount_paid=draw(small),
                amount_due=draw(small),
                paid_out_of_band=draw(st.booleans()),
                lines=lines,
            )
        )
    inv_ids = [i.id for i in invoices]
    maybe_inv = st.none() | st.sampled_from(inv_ids) if inv_ids else st.none()
    payments = tuple(
        Payment(
            id=f"py_{uid}_{i}",
            legacy_id=f"py_{uid}_{i}",
            currency=cur,
            invoice_id=draw(maybe_inv),
            amount=draw(positive),
            status=draw(st.sampled_from(list(PaymentStatus))),
            method=draw(st.sampled_from(["card", "offline"])),
            payment_method_id=draw(st.none() | st.just("pm_1")),
            reference=draw(opt_words),
            paid_at=draw(instants),
            amount_refunded=draw(small),
        )
        for i in range(draw(st.integers(0, 3)))
    )
    pay_ids = [p.id for p in payments]
    maybe_pay = st.none() | st.sampled_from(pay_ids) if pay_ids else st.none()
    refunds = tuple(
        Refund(
            id=f"re_{uid}_{i}",
            legacy_id=f"re_{uid}_{i}",
            currency=cur,
            payment_id=draw(maybe_pay),
            amount=draw(positive),
            reason=draw(opt_words),
            method=draw(st.sampled_from(["card", "offline"])),
            reference=draw(opt_words),
            created_at=draw(instants),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    return BillingHistory(
        user_id=uid,
        system=System.LEGACY,
        customer=customer,
        subscriptions=tuple(subs),
        discounts=discounts,
        invoices=tuple(invoices),
        payments=payments,
        refunds=refunds,
    )


def _renamed(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["id"] = "n_" + doc["id"]
    out["legacy_id"] = doc["id"]
    for ref in ("subscription_id", "invoice_id", "payment_id"):
        if out.get(ref):
            out[ref] = "n_" + out[ref]
    for child in ("items", "lines"):
        if child in out:
            out[child] = [_renamed(c) for c in out[child]]
    return out


def identity_new_doc(legacy: BillingHistory) -> dict[str, Any]:
    """What a correct migration produces: same data, the new system's own ids."""
    doc = legacy.model_dump(mode="json")
    doc["system"] = "new"
    if doc["customer"]:
        doc["customer"] = _renamed(doc["customer"])
    for key in ("subscriptions", "discounts", "invoices", "payments", "refunds"):
        doc[key] = [_renamed(r) for r in doc[key]]
    for sub in doc["subscriptions"]:  # the one declared rename (see reconciler.rules)
        sub["status"] = SUBSCRIPTION_STATUS_RENAMES.get(sub["status"], sub["status"])
    return doc


def identity_new(legacy: BillingHistory) -> BillingHistory:
    return BillingHistory.model_validate(identity_new_doc(legacy))


def fixed_history(user_id: str = "u1", currency: str = "EUR") -> BillingHistory:
    """A small deterministic legacy history: one subscription, paid invoices, a refund."""
    t = datetime(2024, 1, 1, tzinfo=UTC)
    sid, uid = f"sub_{user_id}", user_id
    return BillingHistory(
        user_id=uid,
        system=System.LEGACY,
        customer=Customer(
            id=f"cus_{uid}",
            legacy_id=f"cus_{uid}",
            currency=currency,
            user_id=uid,
            email=f"{uid}@example.com",
            name="Ada <b>Lovelace</b>",
            payment_method_ids=("pm_1",),
            created_at=t,
        ),
        subscriptions=(
            Subscription(
                id=sid,
                legacy_id=sid,
                currency=currency,
                status=SubscriptionStatus.ACTIVE,
                created_at=t,
                current_period_start=t + timedelta(days=31),
                current_period_end=t + timedelta(days=60),
                items=(
                    SubscriptionItem(
                        id=f"si_{uid}",
                        legacy_id=f"si_{uid}",
                        plan_code="pro",
                        unit_amount=1200,
                        interval=Interval.MONTH,
                    ),
                ),
            ),
        ),
        discounts=(
            Discount(
                id=f"di_{uid}",
                legacy_id=f"di_{uid}",
                subscription_id=sid,
                coupon_code="WELCOME",
                percent_off_bp=1000,
                duration="forever",
            ),
        ),
        invoices=tuple(
            Invoice(
                id=f"in_{uid}_{k}",
                legacy_id=f"in_{uid}_{k}",
                currency=currency,
                subscription_id=sid,
                status=InvoiceStatus.PAID,
                created_at=t + timedelta(days=31 * k),
                subtotal=1200,
                total=1200,
                amount_paid=1200,
                lines=(InvoiceLine(id=f"il_{uid}_{k}", legacy_id=f"il_{uid}_{k}", amount=1200),),
            )
            for k in range(2)
        ),
        payments=tuple(
            Payment(
                id=f"py_{uid}_{k}",
                legacy_id=f"py_{uid}_{k}",
                currency=currency,
                invoice_id=f"in_{uid}_{k}",
                amount=1200,
                status=PaymentStatus.SUCCEEDED,
                method="card",
                payment_method_id="pm_1",
                paid_at=t + timedelta(days=31 * k),
            )
            for k in range(2)
        ),
        refunds=(
            Refund(
                id=f"re_{uid}",
                legacy_id=f"re_{uid}",
                currency=currency,
                payment_id=f"py_{uid}_1",
                amount=300,
                created_at=t + timedelta(days=40),
            ),
        ),
    )
