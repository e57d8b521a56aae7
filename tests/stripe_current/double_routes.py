"""The routes ``StripeDouble`` answers (see its docstring for what each models)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.stripe_current import shapes
from tests.stripe_current.double import Refused, page

if TYPE_CHECKING:
    from tests.stripe_current.double import StripeDouble

ID = "([^/]+)"


def _int(params: dict[str, Any], key: str, default: int | None = None) -> int:
    if key not in params:
        if default is None:
            raise Refused(400, f"Missing required param: {key}.")
        return default
    return int(params[key])


def _expands(params: dict[str, Any]) -> set[str]:
    return set(params.get("expand") or [])


def register(d: StripeDouble) -> None:  # noqa: C901 - one flat table of routes
    # -- customers ----------------------------------------------------------------
    @d.route("post", "/v1/customers")
    def create_customer(p: dict[str, Any]) -> Any:
        cid = d.new_id("cus")
        cus = shapes.customer(cid, (p.get("metadata") or {}).get("app_user_id", ""))
        cus.update(email=p.get("email"), name=p.get("name"), metadata=p.get("metadata") or {})
        cus["invoice_settings"]["default_payment_method"] = None
        cus["created"] = d.now
        return d.put("customer", cus)

    @d.route("get", f"/v1/customers/{ID}")
    def get_customer(p: dict[str, Any], cid: str) -> Any:
        return d.get("customer", cid)

    @d.route("post", f"/v1/customers/{ID}")
    def update_customer(p: dict[str, Any], cid: str) -> Any:
        cus = d.get("customer", cid)
        if "invoice_settings" in p:
            cus["invoice_settings"].update(p["invoice_settings"])
        cus["metadata"].update(p.get("metadata") or {})
        return cus

    @d.route("get", "/v1/customers")
    def list_customers(p: dict[str, Any]) -> Any:
        out = page(d.all("customer"), p, "/v1/customers")
        if "data.subscriptions" in _expands(p):
            for cus in out["data"]:
                subs = [s for s in d.all("subscription") if s["customer"] == cus["id"]]
                cus["subscriptions"] = shapes.listed(subs, f"/v1/customers/{cus['id']}/subs")
        return out

    @d.route("get", f"/v1/customers/{ID}/balance_transactions")
    def list_balance(p: dict[str, Any], cid: str) -> Any:
        txs = [t for t in d.all("customer_balance_transaction") if t["customer"] == cid]
        return page(txs, p, f"/v1/customers/{cid}/balance_transactions")

    @d.route("post", f"/v1/customers/{ID}/balance_transactions")
    def create_balance(p: dict[str, Any], cid: str) -> Any:
        cus = d.get("customer", cid)
        amount = _int(p, "amount")
        cus["balance"] += amount
        tx = shapes.balance_transaction(
            d.new_id("cbtxn"),
            cid,
            amount,
            p["currency"],
            ending=cus["balance"],
            metadata=p.get("metadata") or {},
            created=d.now,
        )
        tx["description"] = p.get("description")
        return d.put("customer_balance_transaction", tx)

    @d.route("get", "/v1/webhook_endpoints")
    def list_webhook_endpoints(p: dict[str, Any]) -> Any:
        return page(d.all("webhook_endpoint"), p, "/v1/webhook_endpoints")

    # -- catalogue ------------------------------------------------------------------
    @d.route("get", f"/v1/prices/{ID}")
    def get_price(p: dict[str, Any], pid: str) -> Any:
        return d.get("price", pid)

    @d.route("get", f"/v1/plans/{ID}")
    def get_plan(p: dict[str, Any], pid: str) -> Any:
        plan = shapes.plan_echo(d.get("price", pid))
        if "product" in _expands(p):
            plan["product"] = d.get("product", plan["product"])
        return plan

    @d.route("get", f"/v1/products/{ID}")
    def get_product(p: dict[str, Any], pid: str) -> Any:
        return d.get("product", pid)

    @d.route("get", f"/v1/coupons/{ID}")
    def get_coupon(p: dict[str, Any], cid: str) -> Any:
        return d.get("coupon", cid)

    # -- subscriptions ------------------------------------------------------------------
    def sub_view(sub: dict[str, Any], expands: set[str]) -> dict[str, Any]:
        out = copy.deepcopy(sub)
        if "data.discounts.source.coupon" in expands or "discounts.source.coupon" in expands:
            out["discounts"] = [_expand_discount(d, x) for x in out["discounts"]]
        if "data.items.data.discounts" in expands:
            for it in out["items"]["data"]:
                it["discounts"] = [
                    d.get("discount", x) if isinstance(x, str) else x for x in it["discounts"]
                ]
        return out

    @d.route("get", "/v1/subscriptions")
    def list_subs(p: dict[str, Any]) -> Any:
        subs = [s for s in d.all("subscription") if s["customer"] == p.get("customer")]
        if p.get("status", "active") != "all":
            subs = [s for s in subs if s["status"] == p.get("status", "active")]
        out = page(subs, p, "/v1/subscriptions")
        out["data"] = [sub_view(s, _expands(p)) for s in out["data"]]
        return out

    @d.route("get", f"/v1/subscriptions/{ID}")
    def get_sub(p: dict[str, Any], sid: str) -> Any:
        return sub_view(d.get("subscription", sid), _expands(p))

    @d.route("get", "/v1/subscription_items")
    def list_items(p: dict[str, Any]) -> Any:
        sub = d.get("subscription", p["subscription"])
        return page(sub["items"]["data"], p, "/v1/subscription_items")

    @d.route("post", "/v1/subscriptions")
    def create_sub(p: dict[str, Any]) -> Any:
        cus = d.get("customer", p["customer"])
        sid = d.new_id("sub")
        start = d.now
        trial = int(p.get("trial_period_days") or 0)
        items = []
        for n, raw in enumerate(p.get("items") or []):
            price = d.get("price", raw.get("price") or "")
            end = _period_end(start, price, trial)
            items.append(
                shapes.item(
                    f"si_{sid}_{n}",
                    sid,
                    price,
                    start=start,
                    end=end,
                    quantity=int(raw.get("quantity") or 1),
                )
            )
        sub = shapes.subscription(
            sid,
            cus["id"],
            items,
            status="trialing" if trial else "active",
            created=start,
            start_date=start,
        )
        if trial:
            sub.update(trial_start=start, trial_end=items[0]["current_period_end"])
        d.put("subscription", sub)
        cus["currency"] = cus["currency"] or sub["currency"]
        amount = 0 if trial else sum(i["price"]["unit_amount"] * i["quantity"] for i in items)
        lines = [
            (
                f"{i['quantity']} × {d.get('product', i['price']['product'])['name']}",
                0 if trial else i["price"]["unit_amount"] * i["quantity"],
                i,
                False,
            )
            for i in items
        ]
        inv = _bill(d, cus, sub, lines, "subscription_create")
        sub["latest_invoice"] = inv["id"]
        return sub_view(sub, set()) if amount >= 0 else sub

    @d.route("post", f"/v1/subscriptions/{ID}")
    def update_sub(p: dict[str, Any], sid: str) -> Any:
        sub = d.get("subscription", sid)
        cus = d.get("customer", sub["customer"])
        sub["metadata"].update(p.get("metadata") or {})
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = p["cancel_at_period_end"] == "true"
            sub["cancel_at"] = (
                sub["items"]["data"][0]["current_period_end"]
                if sub["cancel_at_period_end"]
                else None
            )
        changes = []
        for raw in p.get("items") or []:
            it = next(i for i in sub["items"]["data"] if i["id"] == raw.get("id"))
            old, new = it["price"], d.get("price", raw["price"])
            it["price"], it["plan"] = new, shapes.plan_echo(new)
            changes.append((it, old, new))
        if changes and p.get("proration_behavior") == "always_invoice":
            lines = []
            for it, old, new in changes:
                lines.append(
                    (f"Unused time on {old['id']}", -old["unit_amount"] * it["quantity"], it, True)
                )
                lines.append(
                    (
                        f"Remaining time on {new['id']}",
                        new["unit_amount"] * it["quantity"],
                        it,
                        True,
                    )
                )
            _bill(d, cus, sub, lines, "subscription_update")
        return sub_view(sub, set())

    @d.route("delete", f"/v1/subscriptions/{ID}")
    def cancel_sub(p: dict[str, Any], sid: str) -> Any:
        sub = d.get("subscription", sid)
        if sub["status"] != "canceled":
            sub.update(status="canceled", canceled_at=d.now, ended_at=d.now)
        return sub_view(sub, set())

    @d.route("get", "/v1/invoiceitems")
    def list_invoice_items(p: dict[str, Any]) -> Any:
        found = [i for i in d.all("invoiceitem") if i.get("customer") == p.get("customer")]
        return page(found, p, "/v1/invoiceitems")

    # -- invoices -------------------------------------------------------------------
    def inv_view(inv: dict[str, Any], expands: set[str], prefix: str = "") -> dict[str, Any]:
        out = copy.deepcopy(inv)
        ips = [ip for ip in d.all("invoice_payment") if ip["invoice"] == inv["id"]]
        if f"{prefix}payments" in expands:
            listed = page(ips, {"limit": 10}, f"/v1/invoice_payments?invoice={inv['id']}")
            out["payments"] = listed
        if f"{prefix}amount_paid_off_stripe" in expands:
            out["amount_paid_off_stripe"] = _off_stripe(d, inv["id"])
        return out

    @d.route("get", "/v1/invoices")
    def list_invoices(p: dict[str, Any]) -> Any:
        found = [i for i in d.all("invoice") if i["customer"] == p.get("customer")]
        out = page(found, p, "/v1/invoices")
        out["data"] = [inv_view(i, _expands(p), "data.") for i in out["data"]]
        return out

    @d.route("get", f"/v1/invoices/{ID}")
    def get_invoice(p: dict[str, Any], iid: str) -> Any:
        return inv_view(d.get("invoice", iid), _expands(p))

    @d.route("post", f"/v1/invoices/{ID}")
    def update_invoice(p: dict[str, Any], iid: str) -> Any:
        inv = d.get("invoice", iid)
        inv["metadata"].update(p.get("metadata") or {})
        return inv_view(inv, _expands(p))

    @d.route("get", f"/v1/invoices/{ID}/lines")
    def list_lines(p: dict[str, Any], iid: str) -> Any:
        return page(d.get("invoice", iid)["lines"]["data"], p, f"/v1/invoices/{iid}/lines")

    @d.route("post", f"/v1/invoices/{ID}/attach_payment")
    def attach_payment(p: dict[str, Any], iid: str) -> Any:
        inv = d.get("invoice", iid)
        pr = d.get("payment_record", p.get("payment_record") or "")
        if inv["status"] != "open":
            raise Refused(
                400, f"Invoice {iid} is {inv['status']}; only open invoices take payments"
            )
        value = pr["amount_guaranteed"]["value"]
        if value > inv["amount_remaining"]:
            raise Refused(400, "The payment is larger than the amount remaining on the invoice")
        if any(ip["payment"].get("payment_record") == pr["id"] for ip in d.all("invoice_payment")):
            raise Refused(400, f"Payment record {pr['id']} is already attached")
        d.put(
            "invoice_payment",
            shapes.invoice_payment(
                d.new_id("inpay"),
                iid,
                value,
                inv["currency"],
                payment={"type": "payment_record", "payment_record": pr["id"]},
                created=d.now,
            ),
        )
        _credit(inv, value, d.now)
        return inv_view(inv, _expands(p))

    @d.route("post", "/v1/invoices/create_preview")
    def create_preview(p: dict[str, Any]) -> Any:
        """The subscription's next invoice: each item for its next period, item-level
        coupons inside the subtotal, subscription/customer coupons off the total, the
        customer balance applied to amount_due (as Stripe previews it)."""
        cus = d.get("customer", p["customer"])
        sub = d.get("subscription", p.get("subscription") or "")
        if sub["status"] in ("canceled", "incomplete_expired") or sub.get("pause_collection"):
            raise Refused(
                400, "No upcoming invoices for this subscription", "invoice_upcoming_none"
            )
        lines, item_off = [], 0
        for n, it in enumerate(sub["items"]["data"]):
            gross = it["price"]["unit_amount"] * it["quantity"]
            off = sum(_percent(d, x, gross) for x in it["discounts"])
            item_off += off
            start = it["current_period_end"]
            lines.append(
                shapes.line(
                    f"il_preview_{n}",
                    "upcoming",
                    gross,
                    sub["currency"],
                    price_id=it["price"]["id"],
                    sub_id=sub["id"],
                    start=start,
                    end=_period_end(start, it["price"], 0),
                    discount_amounts=[{"amount": off, "discount": "item"}] if off else [],
                )
            )
        subtotal = sum(li["amount"] for li in lines) - item_off
        owners = [*sub["discounts"], *([cus["discount"]] if cus.get("discount") else [])]
        inv_off = sum(_percent(d, x, subtotal) for x in owners)
        total = subtotal - inv_off
        offs = [{"amount": a, "discount": "d"} for a in (item_off, inv_off) if a]
        inv = shapes.invoice(
            "upcoming",
            cus["id"],
            currency=sub["currency"],
            lines=lines,
            subtotal=subtotal,
            total=total,
            status="draft",
            sub_id=sub["id"],
            created=d.now,
            discount_amounts=offs,
            starting_balance=cus["balance"],
            paid=0,
        )
        inv["id"] = None  # a preview has no id
        inv["next_payment_attempt"] = min(li["period"]["start"] for li in lines)
        return inv

    @d.route("get", "/v1/invoice_payments")
    def list_invoice_payments(p: dict[str, Any]) -> Any:
        found = [ip for ip in d.all("invoice_payment") if ip["invoice"] == p.get("invoice")]
        out = page(found, p, "/v1/invoice_payments")
        if "data.payment.payment_record" in _expands(p):
            for ip in out["data"]:
                if ip["payment"].get("payment_record"):
                    ip["payment"]["payment_record"] = d.get(
                        "payment_record", ip["payment"]["payment_record"]
                    )
        return out

    @d.route("post", "/v1/payment_records/report_payment")
    def report_payment(p: dict[str, Any]) -> Any:
        req = p["amount_requested"]
        cid = (p.get("customer_details") or {}).get("customer")
        pr = shapes.payment_record(
            d.new_id("pr"),
            cid,
            int(req["value"]),
            req["currency"],
            reference=((p.get("processor_details") or {}).get("custom") or {}).get(
                "payment_reference", ""
            ),
            metadata=p.get("metadata") or {},
            created=d.now,
        )
        return d.put("payment_record", pr)

    @d.route("get", f"/v1/payment_records/{ID}")
    def get_payment_record(p: dict[str, Any], prid: str) -> Any:
        return d.get("payment_record", prid)

    # -- charges, refunds, credit notes ---------------------------------------------------
    @d.route("get", "/v1/charges")
    def list_charges(p: dict[str, Any]) -> Any:
        found = [c for c in d.all("charge") if c["customer"] == p.get("customer")]
        return page(found, p, "/v1/charges")

    @d.route("get", "/v1/refunds")
    def list_refunds(p: dict[str, Any]) -> Any:
        found = [r for r in d.all("refund") if r["charge"] == p.get("charge")]
        return page(found, p, "/v1/refunds")

    @d.route("post", "/v1/refunds")
    def create_refund(p: dict[str, Any]) -> Any:
        ch = d.get("charge", p.get("charge") or "")
        amount = _int(p, "amount", ch["amount"] - ch["amount_refunded"])
        if amount > ch["amount"] - ch["amount_refunded"]:
            raise Refused(400, f"Refund amount ({amount}) is greater than unrefunded amount")
        rf = shapes.refund(
            d.new_id("re"), ch["id"], amount, ch["currency"], created=d.now, reason=p.get("reason")
        )
        rf["metadata"] = p.get("metadata") or {}
        d.put("refund", rf)
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] == ch["amount"]
        ch["refunds"]["data"].insert(0, rf)
        return rf

    @d.route("get", "/v1/credit_notes")
    def list_credit_notes(p: dict[str, Any]) -> Any:
        found = [
            c
            for c in d.all("credit_note")
            if c["customer"] == p.get("customer") or c["invoice"] == p.get("invoice")
        ]
        return page(found, p, "/v1/credit_notes")

    @d.route("post", "/v1/credit_notes")
    def create_credit_note(p: dict[str, Any]) -> Any:
        inv = d.get("invoice", p["invoice"])
        amount = _int(p, "amount")
        off = _int(p, "out_of_band_amount", 0)
        refund, credit = _int(p, "refund_amount", 0), _int(p, "credit_amount", 0)
        if inv["status"] not in ("open", "paid"):
            raise Refused(400, f"Invoice {inv['id']} is {inv['status']}")
        if inv["status"] == "paid" and off + refund + credit != amount:
            raise Refused(
                400, "credit_amount + refund_amount + out_of_band_amount must equal amount"
            )
        credited = sum(c["amount"] for c in d.all("credit_note") if c["invoice"] == inv["id"])
        if amount + credited > inv["total"]:
            raise Refused(400, "The credit note total exceeds the invoice total")
        cn = shapes.credit_note(
            d.new_id("cn"),
            inv["id"],
            inv["customer"],
            inv["currency"],
            amount=amount,
            kind="post_payment" if inv["status"] == "paid" else "pre_payment",
            out_of_band=off or None,
            metadata=p.get("metadata") or {},
            created=d.now,
        )
        cn["memo"] = p.get("memo")
        key = (
            "post_payment_credit_notes_amount"
            if inv["status"] == "paid"
            else "pre_payment_credit_notes_amount"
        )
        inv[key] = inv.get(key, 0) + amount
        if inv["status"] == "open":
            inv["amount_due"] -= amount
            inv["amount_remaining"] = max(inv["amount_remaining"] - amount, 0)
        if credit:
            d.get("customer", inv["customer"])["balance"] -= credit
        return d.put("credit_note", cn)


def _expand_discount(d: StripeDouble, ref: Any) -> Any:
    disc = copy.deepcopy(d.get("discount", ref) if isinstance(ref, str) else ref)
    coupon = disc["source"].get("coupon")
    if isinstance(coupon, str):
        disc["source"]["coupon"] = d.get("coupon", coupon)
    return disc


def _percent(d: StripeDouble, disc: Any, base: int) -> int:
    """What a (percent or amount) coupon takes off ``base``; a used-up ``once`` takes nothing."""
    disc = _expand_discount(d, disc)
    coupon = disc["source"]["coupon"]
    if coupon["duration"] == "once":
        return 0
    if coupon.get("percent_off") is not None:
        return int(base * coupon["percent_off"] / 100 + 0.5)
    return min(coupon.get("amount_off") or 0, base)


def _period_end(start: int, price: dict[str, Any], trial_days: int) -> int:
    if trial_days:
        return start + trial_days * shapes.DAY
    rec = price["recurring"]
    days = {"day": 1, "week": 7, "month": 30, "year": 365}[rec["interval"]]
    return start + days * rec["interval_count"] * shapes.DAY


def _off_stripe(d: StripeDouble, iid: str) -> int:
    return sum(
        ip["amount_paid"] or 0
        for ip in d.all("invoice_payment")
        if ip["invoice"] == iid
        and ip["payment"].get("type") == "payment_record"
        and ip["status"] == "paid"
    )


def _credit(inv: dict[str, Any], value: int, now: int) -> None:
    inv["amount_paid"] += value
    inv["amount_remaining"] = max(inv["amount_due"] - inv["amount_paid"], 0)
    if inv["amount_remaining"] == 0:
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now
        inv["auto_advance"] = False


def _bill(
    d: StripeDouble,
    cus: dict[str, Any],
    sub: dict[str, Any],
    lines: list[tuple[str, int, dict[str, Any], bool]],
    reason: str,
) -> dict[str, Any]:
    """A finalised invoice for these lines, paid by card at once (the customer balance first)."""
    iid = d.new_id("in")
    cur = sub["currency"]
    built = [
        shapes.line(
            f"il_{iid}_{n}",
            iid,
            amt,
            cur,
            price_id=it["price"]["id"],
            sub_id=sub["id"],
            start=it["current_period_start"],
            end=it["current_period_end"],
            description=desc,
            proration=pror,
        )
        for n, (desc, amt, it, pror) in enumerate(lines)
    ]
    total = sum(amt for _, amt, _, _ in lines)
    start_bal = cus["balance"]
    inv = shapes.invoice(
        iid,
        cus["id"],
        currency=cur,
        lines=built,
        subtotal=total,
        total=total,
        status="open",
        sub_id=sub["id"],
        created=d.now,
        starting_balance=start_bal,
        paid=0,
        billing_reason=reason,
    )
    inv["billing_reason"] = reason
    if total < 0:  # a net credit goes to the customer balance, nothing to collect
        cus["balance"] += total
        inv.update(amount_due=0, amount_remaining=0, ending_balance=cus["balance"])
        _credit(inv, 0, d.now)
    else:
        cus["balance"] = min(start_bal + total, 0)
        d.put("invoice", inv)
        due = inv["amount_due"]
        if due:
            pi, chid = d.new_id("pi"), d.new_id("ch")
            d.put("charge", shapes.charge(chid, cus["id"], due, cur, pi=pi, created=d.now))
            d.put(
                "invoice_payment",
                shapes.invoice_payment(
                    d.new_id("inpay"),
                    iid,
                    due,
                    cur,
                    payment={"type": "payment_intent", "payment_intent": pi},
                    created=d.now,
                ),
            )
        _credit(inv, due, d.now)
    d.now += 1
    return d.put("invoice", inv)
