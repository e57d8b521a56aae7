"""The legacy backend in the current dialect, on current-shape configurations.

Each configuration (tests/stripe_current/configurations.py) is seeded into the
in-process Stripe double and read back through the real snapshot path (every
request checked against the SDK's params types), then mapped: totals, tax,
discounts, balance, pause/cancel state and renewal dates must come out exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.canonical import BillingHistory, InvoiceStatus, SubscriptionStatus
from migration.preflight import defer_reason
from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from reconciler.unmapped import find_unmapped
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")

T0 = datetime.fromtimestamp(shapes.T0, UTC)
DAY = timedelta(days=1)


def read(name: str) -> tuple[BillingHistory, dict, StripeDouble]:
    double = StripeDouble()
    cid = configurations.CONFIGURATIONS[name](double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    snap = backend.snapshot(UserRef(f"u-{name}", legacy_customer_id=cid))
    return backend.map_snapshot(snap), snap.objects, double


def defer(history: BillingHistory, raw: dict) -> str | None:
    return defer_reason(history, now=T0, renewal_guard=timedelta(hours=1), raw=raw)


def test_inclusive_tax_is_not_added_again() -> None:
    h, _, _ = read("tax_inclusive")
    [inv] = h.invoices
    assert (inv.subtotal, inv.tax, inv.discount_total, inv.total) == (1042, 208, 0, 1250)
    assert [li.amount for li in inv.lines] == [1042]  # lines add up to the subtotal
    assert inv.amount_paid == 1250 and inv.amount_due == 0 and inv.balance_applied == 0


def test_exclusive_tax_is_added() -> None:
    h, _, _ = read("tax_exclusive")
    [inv] = h.invoices
    assert (inv.subtotal, inv.tax, inv.total, inv.amount_paid) == (1250, 250, 1500, 1500)


def test_item_discount_is_subtracted_once() -> None:
    h, _, _ = read("item_discount")
    [inv] = h.invoices
    assert (inv.subtotal, inv.discount_total, inv.tax, inv.total) == (1250, 125, 225, 1350)
    [disc] = h.discounts
    assert (disc.id, disc.subscription_id, disc.percent_off_bp) == (
        "di_item",
        "sub_item_discount",
        1000,
    )


def test_customer_coupon_is_expanded() -> None:
    h, raw, _ = read("customer_coupon")
    [disc] = h.discounts
    assert (disc.id, disc.coupon_code, disc.percent_off_bp, disc.subscription_id) == (
        "di_vip",
        "VIP20",
        2000,
        None,
    )
    assert raw["coupons"]["VIP20"]["percent_off"] == 20
    assert h.invoices[0].total == 1000


def test_paused_collection_is_read_and_deferred() -> None:
    h, raw, _ = read("paused")
    [sub] = h.subscriptions
    assert sub.status is SubscriptionStatus.ACTIVE and sub.collection_paused == "void"
    assert sub.collection_resumes_at == T0 + 60 * DAY
    assert sub.next_renewal_at is None
    assert "collection paused" in (defer(h, raw) or "")


def test_dated_cancel_is_read_and_deferred() -> None:
    h, raw, _ = read("cancel_at")
    [sub] = h.subscriptions
    assert sub.cancel_at == T0 + 10 * DAY and not sub.cancel_at_period_end
    assert sub.next_renewal_at is None
    assert "scheduled to cancel" in (defer(h, raw) or "")


def test_product_names_of_price_items() -> None:
    h, _, _ = read("plain")
    assert [i.product_name for i in h.subscriptions[0].items] == ["Basic"]


def test_multi_item_period_is_the_next_billing() -> None:
    h, raw, _ = read("multi_period")
    [sub] = h.subscriptions
    assert sub.current_period_end == T0 + 29 * DAY  # the monthly item, not the yearly one
    assert sub.next_renewal_at == T0 + 29 * DAY
    assert sorted(i.unit_amount for i in sub.items) == [1250, 9900]
    assert "different billing periods" in (defer(h, raw) or "")


def test_three_decimal_currency_is_not_divided() -> None:
    h, _, _ = read("three_decimals")
    assert h.customer is not None and h.customer.currency == "KWD"
    assert (h.invoices[0].currency, h.invoices[0].total) == ("KWD", 12500)
    assert [(p.currency, p.amount) for p in h.payments] == [("KWD", 12500)]


def test_trial_renews_at_trial_end() -> None:
    h, _, _ = read("trial")
    [sub] = h.subscriptions
    assert sub.status is SubscriptionStatus.TRIALING and sub.next_renewal_at == T0 + 13 * DAY
    assert h.invoices[0].total == 0 and h.payments == ()


def test_dunning_is_deferred() -> None:
    h, raw, _ = read("dunning")
    assert [i.status for i in h.invoices] == [InvoiceStatus.PAID, InvoiceStatus.OPEN]
    failed = [p for p in h.payments if p.status.value == "failed"]
    assert [p.invoice_id for p in failed] == ["in_dunning_2"]
    assert "open invoice in_dunning_2" in (defer(h, raw) or "")


def test_sepa_payment_is_not_a_card() -> None:
    h, _, _ = read("sepa")
    [pay] = h.payments
    assert (pay.method, pay.amount, pay.invoice_id) == ("other", 1250, "in_sepa")


def test_invoice_payments_are_paged_past_the_embedded_page() -> None:
    h, _, double = read("many_payments")
    offline = [p for p in h.payments if p.method == "offline"]
    assert len(offline) == 12 and sum(p.amount for p in offline) == 1200
    assert {p.invoice_id for p in offline} == {"in_many_payments"}
    assert sorted(p.reference for p in offline)[0] == "BANK-00"
    assert h.invoices[0].paid_out_of_band and h.invoices[0].amount_due == 0


def test_credit_notes_before_and_after_payment() -> None:
    h, _, _ = read("credit_notes")
    by_id = {i.id: i for i in h.invoices}
    open_inv = by_id["in_credit_notes_open"]
    # a pre-payment credit note lowers what is owed; it is not customer balance
    assert (open_inv.total, open_inv.amount_due, open_inv.balance_applied) == (1250, 1000, 0)
    assert h.customer is not None and h.customer.balance == -300  # post-payment credit
    assert h.refunds == ()  # neither credit note returned money


def test_tiered_price_is_deferred_before_mapping() -> None:
    from migration.preflight import unsupported_reason

    double = StripeDouble()
    cid = configurations.seed_tiered(double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    snap = backend.snapshot(UserRef("u-tiered", legacy_customer_id=cid))
    assert "tiered or custom-amount price (price_tiered)" in (
        unsupported_reason(snap.objects) or ""
    )
    for name in sorted(set(configurations.CONFIGURATIONS) - configurations.UNMAPPABLE):
        _, raw, _ = read(name)
        assert unsupported_reason(raw) is None, name


@pytest.mark.parametrize(
    "name", sorted(set(configurations.CONFIGURATIONS) - configurations.UNMAPPABLE)
)
def test_every_configuration_maps_with_no_unmapped_field(name: str) -> None:
    h, raw, _ = read(name)
    assert h.customer is not None and h.customer.user_id == f"u-{name}"
    unmapped = find_unmapped(h.user_id, raw)
    assert [f"{d.record_type}.{d.field}" for d in unmapped] == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain", (1250, 0, 1250, 1250)),
        ("item_discount", (1250, 125, 1125, 1125)),  # item coupon inside Stripe's subtotal
        ("customer_coupon", (1250, 250, 1000, 1000)),
    ],
)
def test_next_charge_preview_in_the_current_dialect(name: str, expected: tuple) -> None:
    """``POST /v1/invoices/create_preview``: every discount subtracted once."""
    double = StripeDouble()
    cid = configurations.CONFIGURATIONS[name](double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    nc = backend.preview_next_charges(UserRef(f"u-{name}", legacy_customer_id=cid), now=T0)
    [charge] = nc.charges
    assert (charge.subtotal, charge.discount, charge.total, charge.amount_due) == expected
    assert charge.charge_at == T0 - DAY + timedelta(days=30)
    assert nc.source == {f"sub_{name}": "POST /v1/invoices/create_preview"}


def test_catalogue_products_are_read_once_per_process() -> None:
    """Every customer of a plan shares its product: one retrieve, not one per snapshot."""
    double = StripeDouble()
    plain = configurations.seed_plain(double)
    trial = configurations.seed_trial(double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    for uid, cid in (("u-plain", plain), ("u-trial", trial)):
        h = backend.map_snapshot(backend.snapshot(UserRef(uid, legacy_customer_id=cid)))
        assert h.subscriptions[0].items[0].product_name == "Basic"
    reads = [w for w in double.reads if w.startswith("GET /v1/products/")]
    assert reads == ["GET /v1/products/prod_basic"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("paused", "collection paused"),
        ("cancel_at", "scheduled cancellation"),
        ("multi_period", "items on different periods"),
    ],
)
def test_feature_deferrals_are_grouped_as_expected_waits(name: str, kind: str) -> None:
    from migration.cohort_progress import EXPECTED_WAITS, _reason_class

    h, raw, _ = read(name)
    reason = defer(h, raw)
    assert _reason_class(reason) == kind and kind in EXPECTED_WAITS
