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


def _owned(obj: dict[str, Any], params: dict[str, Any], key: str = "customer") -> bool:
    """A list filtered by ``key`` (e.g. ``customer``), or account-wide without it."""
    return key not in params or obj.get(key) == params[key]


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
                subs = d.of("subscription", "customer", cus["id"])
                cus["subscriptions"] = shapes.listed(subs, f"/v1/customers/{cus['id']}/subs")
        return out

    @d.route("get", f"/v1/customers/{ID}/balance_transactions")
    def list_balance(p: dict[str, Any], cid: str) -> Any:
        txs = d.of("customer_balance_transaction", "customer", cid)
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

    @d.route("get", "/v1/events")
    def list_events(p: dict[str, Any]) -> Any:
        found = d.all("event")
        created = p.get("created")
        if isinstance(created, dict):
            tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
            for op, value in created.items():
                found = [e for e in found if tests[op](e["created"], int(value))]
        elif created is not None:
            found = [e for e in found if e["created"] == int(created)]
        kinds = p.get("types") or ([p["type"]] if p.get("type") else None)
        if kinds:
            found = [e for e in found if any(_matches(k, e["type"]) for k in kinds)]
        return page(found, p, "/v1/events")

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
        subs = d.owned("subscription", p)
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
        trial_end = int(p["trial_end"]) if p.get("trial_end") else None  # a dated trial
        items = []
        for n, raw in enumerate(p.get("items") or []):
            price = d.get("price", raw.get("price") or "")
            end = trial_end or _period_end(start, price, trial)
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
            status="trialing" if trial or trial_end else "active",
            created=start,
            start_date=start,
            metadata=dict(p.get("metadata") or {}),
            default_tax_rates=[d.get("tax_rate", t) for t in p.get("default_tax_rates") or []],
            discounts=[_new_discount(d, sid, x["coupon"]) for x in p.get("discounts") or []],
        )
        trial = trial or bool(trial_end)
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
        if sub["status"] in ("canceled", "incomplete_expired"):
            # as Stripe answers: a canceled subscription counts as deleted (stripe-go#1887)
            raise Refused(404, f"No such subscription: '{sid}'", "resource_missing")
        details = p.get("cancellation_details") or {}
        sub.update(
            status="canceled",
            canceled_at=d.now,
            ended_at=d.now,
            cancellation_details={
                "comment": details.get("comment"),
                "feedback": details.get("feedback"),
                "reason": "cancellation_requested",
            },
        )
        return sub_view(sub, set())  # its customer.subscription.deleted: double.EVENTS

    @d.route("get", "/v1/invoiceitems")
    def list_invoice_items(p: dict[str, Any]) -> Any:
        found = d.owned("invoiceitem", p)
        return page(found, p, "/v1/invoiceitems")

    from tests.stripe_current import double_money

    double_money.register(d)


def _matches(pattern: str, kind: str) -> bool:
    """Stripe's event type filter: an exact name or a ``*`` wildcard (``invoice.*``)."""
    return kind == pattern or (pattern.endswith("*") and kind.startswith(pattern[:-1]))


def _new_discount(d: StripeDouble, sid: str, coupon: str) -> str:
    """A subscription-level discount of an existing coupon (Stripe stores it by id)."""
    did = d.new_id("di")
    d.put("discount", {"id": did, "object": "discount", "subscription": sid,
                       "source": {"coupon": d.get("coupon", coupon)["id"], "type": "coupon"},
                       "start": d.now, "end": None})  # fmt: skip
    return did


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
        for ip in d.of("invoice_payment", "invoice", iid)
        if ip["payment"].get("type") == "payment_record" and ip["status"] == "paid"
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
