"""One customer's legacy objects in one shape, whichever read produced them.

The per-user snapshot (``fetch``: the lists filtered by ``customer``) and the bulk
read (``bulk.fill``: the same lists account-wide, kept per customer in a stage) ask
for the same lists with the same expansions (``lists``) and hand what they got to the
same ``assemble``. So a customer's ``objects`` — and the content hash stored with a
snapshot — are equal whichever read took them, in both dialects (tested for every
configuration: tests/unit/multiplexer/backends/test_stripe_bulk_snapshot.py and
tests/integration/multiplexer/test_inventory_localstripe.py).

``assemble``:

* pages the embedded lists a page truncated (more than 10 subscription items,
  invoice lines) for that object only;
* adds the refunds of charges whose embedded page of 10 has more: from the
  account-wide refunds list when the bulk read passes it in, else one list per charge;
* keeps only the one-off invoice items still waiting for an invoice (localstripe has
  no ``pending`` filter);
* trims the expanded default payment method to ``id``/``object``/``type``: the
  snapshot needs its type (facets), not card details;
* orders every list as Stripe does, newest first, ties by id (the refunds of a
  customer's charges come in another order from the account list than per charge);
* current dialect: the invoice payments an invoice's page cannot carry (payment
  records, more than 10), the coupons and products left as ids (deeper than Stripe's
  four expansion levels; retrieved once per read / per process), credit notes, and
  the customer's balance transactions (no account-wide list: one request per
  customer in both reads; ``per_customer=False`` leaves them out: ``users sync``, and
  a cohort's read, whose members' preflights add them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from multiplexer.backends.stripe.fields import ref_id
from multiplexer.backends.stripe.transport import StripeCalls, to_plain

#: expanded on the customer by both reads (``data.`` prefixed on the list)
CUSTOMER_EXPAND = "invoice_settings.default_payment_method"
#: Stripe list name (the bulk read's progress label) -> key in ``objects``
PENDING = "invoice items"
CREDIT_NOTES = "credit notes"

Obj = dict[str, Any]
Lists = Mapping[str, list[Obj]]


def _expand(on: bool, *paths: str) -> dict[str, Any]:
    return {"expand": list(paths)} if on else {}


def lists(calls: StripeCalls) -> list[tuple[str, Any, dict[str, Any]]]:
    """The lists of a customer's objects: ``(name, path, params)``, read as JSON pages
    (``StripeCalls.pages``). Per user they are filtered by ``customer``; the bulk read
    sends them as they are, account-wide."""
    on = calls.wire.list_expansions
    out: list[tuple[str, Any, dict[str, Any]]] = [
        (
            "subscriptions",
            "/v1/subscriptions",
            {
                "status": "all",
                **_expand(on, "data.discounts.source.coupon", "data.items.data.discounts"),
            },
        ),
        ("invoices", "/v1/invoices", _expand(on, "data.payments", "data.amount_paid_off_stripe")),
        ("charges", "/v1/charges", _expand(on, "data.refunds")),
        (PENDING, "/v1/invoiceitems", {}),
    ]
    if on:
        out.append((CREDIT_NOTES, "/v1/credit_notes", {}))
    return out


def fetch(calls: StripeCalls, cid: str) -> Obj:
    """The per-user read: one customer, every page of every list (5–7 requests and more)."""
    v1 = calls.client.v1
    customer = to_plain(
        calls.call("retrieve customer", v1.customers.retrieve, cid, {"expand": [CUSTOMER_EXPAND]})
    )
    got = {
        name: list(calls.pages(f"list {name}", fn, params={**params, "customer": cid}))
        for name, fn, params in lists(calls)
    }
    return assemble(calls, customer, got)


def subscriptions(calls: StripeCalls, cid: str) -> list[Obj]:
    """Only the customer's subscriptions, as ``fetch`` lists them (same params, same order)."""
    name, fn, params = lists(calls)[0]
    assert name == "subscriptions"
    return ordered(list(calls.pages(f"list {name}", fn, params={**params, "customer": cid})))


def needs_refund_list(charge: Mapping[str, Any]) -> bool:
    refunds = charge.get("refunds")
    return refunds is None or bool(isinstance(refunds, Mapping) and refunds.get("has_more"))


def ordered(objs: list[Obj]) -> list[Obj]:
    """Stripe's list order, newest first, ties by id: the same whichever list they came from."""
    return sorted(objs, key=lambda o: (-(o.get("created") or 0), str(o.get("id") or "")))


def _full(calls: StripeCalls, what: str, fn: Any, *args: Any, **params: Any) -> Obj:
    data = list(calls.pages(what, fn, *args, params=params or None))
    return {"object": "list", "has_more": False, "data": data}


def _trimmed(customer: Obj) -> Obj:
    settings = customer.get("invoice_settings")
    pm = settings.get("default_payment_method") if isinstance(settings, Mapping) else None
    if not isinstance(pm, Mapping):
        return customer
    keep = {k: pm.get(k) for k in ("id", "object", "type")}
    return {**customer, "invoice_settings": {**settings, "default_payment_method": keep}}


def assemble(
    calls: StripeCalls,
    customer: Obj,
    got: Lists,
    *,
    refunds: Mapping[str, list[Obj]] | None = None,
    coupons: dict[str, Obj] | None = None,
    per_customer: bool = True,
) -> Obj:
    """``objects`` of one customer from its list pages (``got``: ``lists`` name -> objects).

    ``refunds`` (charge id -> refunds) is the bulk read's account-wide refunds list;
    ``coupons`` a cache shared by the customers of one read.
    """
    v1 = calls.client.v1
    subs = list(got.get("subscriptions") or [])
    for sub in subs:
        if (sub.get("items") or {}).get("has_more"):
            sub["items"] = _full(
                calls, "list subscription items", v1.subscription_items.list, subscription=sub["id"]
            )
    invoices = list(got.get("invoices") or [])
    for inv in invoices:
        if (inv.get("lines") or {}).get("has_more"):
            inv["lines"] = _full(
                calls, "list invoice lines", v1.invoices.line_items.list, inv["id"]
            )
    charges = list(got.get("charges") or [])
    extra_refunds: list[Obj] = []
    for ch in filter(needs_refund_list, charges):
        if refunds is not None:
            extra_refunds += refunds.get(ch["id"], [])
        else:
            extra_refunds += calls.pages(
                "list refunds", v1.refunds.list, params={"charge": ch["id"]}
            )
    # one-off items waiting for the next invoice: canceling the subscription would drop
    # them, so preflight defers such users
    pending = [i for i in got.get(PENDING) or [] if not i.get("invoice")]
    objects: Obj = {
        "customer": _trimmed(customer),
        "pending_invoice_items": ordered(pending),
        "subscriptions": ordered(subs),
        "invoices": ordered(invoices),
        "charges": ordered(charges),
        "refunds": ordered(extra_refunds),
        "plans": {
            it["plan"]["id"]: it["plan"]
            for s in subs
            for it in (s.get("items") or {}).get("data", [])
            if it.get("plan")
        },
    }
    if calls.wire.list_expansions:
        cache = {} if coupons is None else coupons
        objects.update(
            _current_extras(calls, customer, subs, invoices, got, cache, per_customer=per_customer)
        )
    return objects


def _current_extras(
    calls: StripeCalls,
    customer: Obj,
    subs: list[Obj],
    invoices: list[Obj],
    got: Lists,
    coupons: dict[str, Obj],
    *,
    per_customer: bool,
) -> Obj:
    """What the current API keeps out of reach of one list call's expansions."""
    v1 = calls.client.v1
    payments: list[Obj] = []
    for inv in invoices:
        embedded = inv.get("payments") or {}
        data = embedded.get("data") or []
        if embedded.get("has_more") or any(
            (ip.get("payment") or {}).get("type") == "payment_record" for ip in data
        ):
            payments += calls.pages(
                "list invoice payments",
                v1.invoice_payments.list,
                params={"invoice": inv["id"], "expand": ["data.payment.payment_record"]},
            )
            inv["payments"] = {"object": "list", "has_more": False, "data": []}
    for coupon in coupon_ids([customer, *subs]) - set(coupons):
        coupons[coupon] = to_plain(calls.call("retrieve coupon", v1.coupons.retrieve, coupon))
    out: Obj = {
        "invoice_payments": ordered(payments),
        "coupons": {c: coupons[c] for c in sorted(coupon_ids([customer, *subs]))},
        "products": {pid: calls.product(pid) for pid in sorted(product_ids(subs))},
        "credit_notes": ordered(list(got.get(CREDIT_NOTES) or [])),
    }
    if per_customer:
        out.update(read_per_customer(calls, customer["id"]))
    return out


#: the key of ``objects`` no account-wide list holds (current API)
PER_CUSTOMER = "balance_transactions"


def read_per_customer(calls: StripeCalls, customer_id: str) -> Obj:
    """The part of a customer's ``objects`` no account-wide list holds (current API: its
    balance transactions), one request; empty in a dialect without them."""
    if not calls.wire.list_expansions:
        return {}
    return {
        PER_CUSTOMER: ordered(
            list(
                calls.pages(
                    "list balance transactions",
                    calls.client.v1.customers.balance_transactions.list,
                    customer_id,
                )
            )
        )
    }


def _walk(value: Any) -> Iterator[Obj]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def coupon_ids(owners: list[Any]) -> set[str]:
    """Coupon ids left unexpanded in discounts anywhere under these objects."""
    found: set[str] = set()
    for obj in _walk(owners):
        if obj.get("object") == "discount":
            source = obj.get("source") or {}
            coupon = source.get("coupon") if "coupon" not in obj else obj["coupon"]
            if isinstance(coupon, str):
                found.add(coupon)
    return found


def product_ids(subs: list[Any]) -> set[str]:
    """Products of the subscriptions' Prices and Plans that are ids, not objects."""
    found: set[str] = set()
    for sub in subs:
        for item in (sub.get("items") or {}).get("data") or []:
            for key in ("price", "plan"):
                price = item.get(key)
                if isinstance(price, dict) and isinstance(price.get("product"), str):
                    found.add(price["product"])
    return found


def charge_of(refund: Mapping[str, Any]) -> str | None:
    return ref_id(refund.get("charge"))
