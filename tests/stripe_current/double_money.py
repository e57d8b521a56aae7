"""The double's money routes: invoices, previews, invoice payments, payment records,
charges, refunds and credit notes (see ``double.StripeDouble`` for what each models)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.stripe_current import shapes
from tests.stripe_current.double import Refused, page
from tests.stripe_current.double_routes import (
    ID,
    _credit,
    _expands,
    _int,
    _off_stripe,
    _owned,
    _percent,
    _period_end,
)

if TYPE_CHECKING:
    from tests.stripe_current.double import StripeDouble


def register(d: StripeDouble) -> None:  # noqa: C901 - one flat table of routes
    # -- invoices -------------------------------------------------------------------
    def inv_view(inv: dict[str, Any], expands: set[str], prefix: str = "") -> dict[str, Any]:
        out = copy.deepcopy(inv)
        ips = d.of("invoice_payment", "invoice", inv["id"])
        if f"{prefix}payments" in expands:
            listed = page(ips, {"limit": 10}, f"/v1/invoice_payments?invoice={inv['id']}")
            out["payments"] = listed
        if f"{prefix}amount_paid_off_stripe" in expands:
            out["amount_paid_off_stripe"] = _off_stripe(d, inv["id"])
        return out

    @d.route("get", "/v1/invoices")
    def list_invoices(p: dict[str, Any]) -> Any:
        found = d.owned("invoice", p)
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
        found = d.of("invoice_payment", "invoice", p.get("invoice"))
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
        found = d.owned("charge", p)
        return page(found, p, "/v1/charges")

    @d.route("get", "/v1/refunds")
    def list_refunds(p: dict[str, Any]) -> Any:
        found = d.owned("refund", p, "charge")
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
        found = [c for c in d.owned("credit_note", p) if _owned(c, p, "invoice")]
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
        credited = sum(c["amount"] for c in d.of("credit_note", "invoice", inv["id"]))
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
