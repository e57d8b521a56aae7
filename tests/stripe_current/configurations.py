"""Billing configurations at the pinned API version, seeded into a ``StripeDouble``.

Each ``seed_<name>`` puts one customer (``cus_<name>``, user ``u-<name>``) and
everything Stripe would hold for them, built with ``shapes`` (Stripe's published
example objects + the SDK's fields; see its docstring for provenance), and returns
the customer id. Amounts are the ones Stripe would compute for that configuration;
the tests say what each must map to.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.stripe_current import shapes as s
from tests.stripe_current.double import StripeDouble

T0, DAY = s.T0, s.DAY
MONTH = 30 * DAY


def _catalogue(
    d: StripeDouble,
    currency: str = "eur",
    amount: int = 1250,
    *,
    tax_behavior: str = "unspecified",
    pid: str | None = None,
    interval: str = "month",
) -> dict:
    d.put("product", s.product("prod_basic", "Basic"))
    return d.put(
        "price",
        s.price(
            pid or f"price_basic_{interval}_{currency}",
            amount,
            currency,
            product_id="prod_basic",
            interval=interval,
            tax_behavior=tax_behavior,
        ),
    )


def _active(d: StripeDouble, name: str, price: dict, *, status: str = "active", **sub_fields):
    cid, sid = f"cus_{name}", f"sub_{name}"
    d.put("customer", s.customer(cid, f"u-{name}", currency=price["currency"]))
    items = [s.item(f"si_{sid}", sid, price, start=T0 - DAY, end=T0 - DAY + MONTH)]
    sub = d.put("subscription", s.subscription(sid, cid, items, status=status, **sub_fields))
    return cid, sid, sub


def _paid_invoice(
    d: StripeDouble,
    name: str,
    cid: str,
    sid: str,
    price: dict,
    *,
    subtotal: int,
    total: int,
    taxes=None,
    discount_amounts=None,
    line_amount: int | None = None,
    status: str = "paid",
    **more,
) -> dict:
    iid = f"in_{name}"
    cur = price["currency"]
    line = s.line(
        f"il_{name}",
        iid,
        line_amount if line_amount is not None else subtotal,
        cur,
        price_id=price["id"],
        sub_id=sid,
        start=T0 - DAY,
        end=T0 - DAY + MONTH,
        taxes=taxes,
    )
    pi, chid = f"pi_{name}", f"ch_{name}"
    inv = s.invoice(
        iid,
        cid,
        currency=cur,
        lines=[line],
        subtotal=subtotal,
        total=total,
        sub_id=sid,
        taxes=taxes,
        discount_amounts=discount_amounts,
        status=status,
        created=T0 - DAY,
        **more,
    )
    if status == "paid" and inv["amount_paid"]:
        d.put("charge", s.charge(chid, cid, inv["amount_paid"], cur, pi=pi, created=T0 - DAY))
        d.put(
            "invoice_payment",
            s.invoice_payment(
                f"inpay_{name}",
                iid,
                inv["amount_paid"],
                cur,
                payment={"type": "payment_intent", "payment_intent": pi},
                created=T0 - DAY,
            ),
        )
    return d.put("invoice", inv)


def seed_plain(d: StripeDouble) -> str:
    """Basic monthly at 12.50 EUR, first invoice paid by card."""
    price = _catalogue(d)
    cid, sid, _ = _active(d, "plain", price)
    _paid_invoice(d, "plain", cid, sid, price, subtotal=1250, total=1250)
    return cid


def seed_tax_inclusive(d: StripeDouble) -> str:
    """EU B2C: 12.50 EUR *including* 20 % VAT (208): Stripe's subtotal and total are 1250."""
    price = _catalogue(d, tax_behavior="inclusive", pid="price_incl")
    cid, sid, _ = _active(d, "tax_inclusive", price)
    _paid_invoice(
        d,
        "tax_inclusive",
        cid,
        sid,
        price,
        subtotal=1250,
        total=1250,
        taxes=[s.tax(208, "inclusive", 1042)],
    )
    return cid


def seed_tax_exclusive(d: StripeDouble) -> str:
    """12.50 EUR plus 20 % VAT on top: subtotal 1250, tax 250, total 1500."""
    price = _catalogue(d, tax_behavior="exclusive", pid="price_excl")
    cid, sid, _ = _active(d, "tax_exclusive", price)
    _paid_invoice(
        d,
        "tax_exclusive",
        cid,
        sid,
        price,
        subtotal=1250,
        total=1500,
        taxes=[s.tax(250, "exclusive", 1250)],
    )
    return cid


def seed_item_discount(d: StripeDouble) -> str:
    """10 % coupon on the subscription *item*, exclusive VAT 20 %. Stripe's subtotal already
    has the item discount off (1125), tax 225, total 1350; total_discount_amounts = 125."""
    price = _catalogue(d, tax_behavior="exclusive", pid="price_excl")
    cid, sid = "cus_item_discount", "sub_item_discount"
    d.put("coupon", s.coupon("TEN", percent_off=10))
    disc = d.put(
        "discount", s.discount("di_item", "TEN", customer=cid, subscription=sid, item=f"si_{sid}")
    )
    d.put("customer", s.customer(cid, "u-item_discount", currency="eur"))
    items = [
        s.item(
            f"si_{sid}", sid, price, start=T0 - DAY, end=T0 - DAY + MONTH, discounts=[disc["id"]]
        )
    ]
    d.put("subscription", s.subscription(sid, cid, items))
    _paid_invoice(
        d,
        "item_discount",
        cid,
        sid,
        price,
        subtotal=1125,
        total=1350,
        line_amount=1250,
        taxes=[s.tax(225, "exclusive", 1125)],
        discount_amounts=[{"amount": 125, "discount": "di_item"}],
    )
    return cid


def seed_customer_coupon(d: StripeDouble) -> str:
    """A 20 % forever coupon on the *customer*: ``customer.discount.source.coupon`` is an id."""
    price = _catalogue(d)
    d.put("coupon", s.coupon("VIP20", percent_off=20))
    cid, sid, _ = _active(d, "customer_coupon", price)
    cus = d.get("customer", cid)
    cus["discount"] = s.discount("di_vip", "VIP20", customer=cid)
    _paid_invoice(
        d,
        "customer_coupon",
        cid,
        sid,
        price,
        subtotal=1250,
        total=1000,
        discount_amounts=[{"amount": 250, "discount": "di_vip"}],
    )
    return cid


def seed_paused(d: StripeDouble) -> str:
    """Collection paused (status stays ``active``), invoices voided until resumes_at."""
    price = _catalogue(d)
    cid, sid, _ = _active(
        d, "paused", price, pause_collection={"behavior": "void", "resumes_at": T0 + 60 * DAY}
    )
    _paid_invoice(d, "paused", cid, sid, price, subtotal=1250, total=1250)
    return cid


def seed_cancel_at(d: StripeDouble) -> str:
    """A dated cancellation inside the current period (not at its end)."""
    price = _catalogue(d)
    cid, sid, _ = _active(d, "cancel_at", price, cancel_at=T0 + 10 * DAY)
    _paid_invoice(d, "cancel_at", cid, sid, price, subtotal=1250, total=1250)
    return cid


def seed_multi_period(d: StripeDouble) -> str:
    """Two items: monthly (ends T0+29d) and yearly (ends T0+364d) on one subscription."""
    monthly = _catalogue(d)
    yearly = _catalogue(d, amount=9900, interval="year")
    cid, sid = "cus_multi_period", "sub_multi_period"
    d.put("customer", s.customer(cid, "u-multi_period", currency="eur"))
    items = [
        s.item(f"si_{sid}_y", sid, yearly, start=T0 - DAY, end=T0 + 364 * DAY),
        s.item(f"si_{sid}_m", sid, monthly, start=T0 - DAY, end=T0 + 29 * DAY),
    ]
    d.put("subscription", s.subscription(sid, cid, items))
    return cid


def seed_three_decimals(d: StripeDouble) -> str:
    """KWD has three decimals: 12.500 KWD is 12500 minor units."""
    price = _catalogue(d, currency="kwd", amount=12500)
    cid, sid, _ = _active(d, "three_decimals", price)
    _paid_invoice(d, "three_decimals", cid, sid, price, subtotal=12500, total=12500)
    return cid


def seed_trial(d: StripeDouble) -> str:
    """``trialing`` with a 0 invoice; the period ends at trial_end."""
    price = _catalogue(d)
    cid, sid = "cus_trial", "sub_trial"
    d.put("customer", s.customer(cid, "u-trial", currency="eur"))
    items = [s.item(f"si_{sid}", sid, price, start=T0 - DAY, end=T0 + 13 * DAY)]
    d.put(
        "subscription",
        s.subscription(
            sid, cid, items, status="trialing", trial_start=T0 - DAY, trial_end=T0 + 13 * DAY
        ),
    )
    _paid_invoice(d, "trial", cid, sid, price, subtotal=0, total=0)
    return cid


def seed_dunning(d: StripeDouble) -> str:
    """``past_due``: the renewal invoice is ``open`` with a next_payment_attempt, charge failed."""
    price = _catalogue(d)
    cid, sid, _ = _active(d, "dunning", price, status="past_due")
    _paid_invoice(d, "dunning_1", cid, sid, price, subtotal=1250, total=1250)
    inv = _paid_invoice(
        d,
        "dunning_2",
        cid,
        sid,
        price,
        subtotal=1250,
        total=1250,
        status="open",
        next_payment_attempt=T0 + 3 * DAY,
        attempt_count=2,
    )
    inv["created"] = T0
    d.put(
        "charge",
        s.charge(
            "ch_dunning_fail", cid, 1250, "eur", pi="pi_dunning_2", created=T0, status="failed"
        ),
    )
    d.put(
        "invoice_payment",
        s.invoice_payment(
            "inpay_dunning_2",
            inv["id"],
            1250,
            "eur",
            status="open",
            payment={"type": "payment_intent", "payment_intent": "pi_dunning_2"},
            created=T0,
        ),
    )
    return cid


def seed_sepa(d: StripeDouble) -> str:
    """Paid by SEPA Direct Debit, not a card."""
    cid = seed_plain_named(d, "sepa")
    ch = d.get("charge", "ch_sepa")
    ch.update(
        s.charge("ch_sepa", cid, 1250, "eur", pi="pi_sepa", created=T0 - DAY, method="sepa_debit")
    )
    return cid


def seed_plain_named(d: StripeDouble, name: str) -> str:
    price = _catalogue(d)
    cid, sid, _ = _active(d, name, price)
    _paid_invoice(d, name, cid, sid, price, subtotal=1250, total=1250)
    return cid


#: (currency, unit amount) of ``seed_varied``: 2, 2, 0 and 3 decimals
_VARIED_PRICES = (("eur", 1250), ("usd", 1500), ("jpy", 1500), ("kwd", 12500))


def seed_varied(d: StripeDouble, name: str, i: int) -> str:
    """The ``i``-th customer of a population-sized mix, for benches (``cus_<name>``): EUR,
    USD, JPY or KWD, monthly or (every third) yearly, with 1 to 3 paid invoices."""
    currency, amount = _VARIED_PRICES[i % len(_VARIED_PRICES)]
    price = _catalogue(d, currency, amount, interval="year" if i % 3 == 2 else "month")
    cid, sid, _ = _active(d, name, price)
    for n in range(1 + i % 3):
        _paid_invoice(d, f"{name}_{n}", cid, sid, price, subtotal=amount, total=amount)
    return cid


def seed_many_payments(d: StripeDouble) -> str:
    """An invoice of 12.00 EUR settled by twelve 1.00 EUR bank transfers reported as Payment
    Records: the invoice's embedded ``payments`` page holds 10 and says ``has_more``."""
    price = _catalogue(d, amount=1200)
    cid, sid, _ = _active(d, "many_payments", price)
    inv = _paid_invoice(
        d, "many_payments", cid, sid, price, subtotal=1200, total=1200, status="open", paid=0
    )
    for n in range(12):
        pr = d.put(
            "payment_record",
            s.payment_record(
                f"pr_many_{n:02d}", cid, 100, "eur", reference=f"BANK-{n:02d}", created=T0 + n
            ),
        )
        d.put(
            "invoice_payment",
            s.invoice_payment(
                f"inpay_many_{n:02d}",
                inv["id"],
                100,
                "eur",
                payment={"type": "payment_record", "payment_record": pr["id"]},
                created=T0 + n,
            ),
        )
    inv.update(status="paid", amount_paid=1200, amount_remaining=0)
    inv["status_transitions"]["paid_at"] = T0 + 11
    return cid


def seed_credit_notes(d: StripeDouble) -> str:
    """A pre-payment credit note (250) on an open invoice, and a post-payment one (300, to
    the customer's credit balance) on a paid one."""
    cid = seed_plain_named(d, "credit_notes")
    price = d.get("price", "price_basic_month_eur")
    paid = d.get("invoice", "in_credit_notes")
    paid["post_payment_credit_notes_amount"] = 300
    d.put("credit_note", s.credit_note("cn_post", paid["id"], cid, "eur", amount=300, credit=300))
    d.get("customer", cid)["balance"] = -300
    d.put(
        "customer_balance_transaction",
        s.balance_transaction("cbtxn_cn_post", cid, -300, "eur", ending=-300, kind="credit_note"),
    )
    inv = _paid_invoice(
        d,
        "credit_notes_open",
        cid,
        "sub_credit_notes",
        price,
        subtotal=1250,
        total=1250,
        status="open",
        paid=0,
    )
    inv.update(
        created=T0,
        amount_due=1000,
        amount_remaining=1000,
        pre_payment_credit_notes_amount=250,
        starting_balance=0,
        ending_balance=0,
    )
    d.put(
        "credit_note",
        s.credit_note("cn_pre", inv["id"], cid, "eur", amount=250, kind="pre_payment"),
    )
    return cid


CONFIGURATIONS: dict[str, Callable[[StripeDouble], str]] = {
    name[len("seed_") :]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("seed_") and name not in ("seed_plain_named", "seed_varied") and callable(fn)
}


def seed_tiered(d: StripeDouble) -> str:
    """A tiered (volume) price: no single unit amount. Deferred before mapping."""
    price = _catalogue(d, pid="price_tiered")
    price.update(
        billing_scheme="tiered", tiers_mode="volume", unit_amount=None, unit_amount_decimal=None
    )
    cid, sid, _ = _active(d, "tiered", price)
    return cid


#: configurations the mapping refuses by design (preflight defers them before mapping)
UNMAPPABLE = frozenset({"tiered"})
CONFIGURATIONS["tiered"] = seed_tiered
