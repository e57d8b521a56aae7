"""The legacy account read in bulk: account-wide list endpoints, grouped per customer.

``twinbill users sync`` needs every customer's billing shape, not one set of lists
per customer (7+ requests each). Stripe lists customers, subscriptions
(``status=all``), invoices, charges and pending invoice items account-wide, 100 per
page, so the whole account costs about (objects / 100) requests. Each customer's
objects are grouped into the same ``objects`` dict the per-user snapshot builds
(``StripeCalls.fetch_snapshot``) and mapped by the same ``map_snapshot``: both
dialects are read by the existing mapping, never re-parsed here.

Embedded lists that a page truncates (more than 10 invoice lines or subscription
items, more than 10 refunds of a charge) are paged for that object only, as the
per-user snapshot does. Customer balance transactions have no account-wide list:
the bulk read leaves them out (offline money recorded by twinbill shows in the
customer's balance, which is read).

Only ``LegacyFeatures`` are read from raw JSON here: the few things the canonical
model has no field for (payment-method type, automatic tax, pending items).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.canonical import BillingHistory
from core.errors import TransformError
from multiplexer.backends.base import InventoryEntry, RawSnapshot
from multiplexer.backends.stripe.dialect import DialectName
from multiplexer.backends.stripe.fields import META_USER, metadata, ref_id
from multiplexer.backends.stripe.mapping import map_customer
from multiplexer.backends.stripe.transport import StripeCalls
from multiplexer.facets import LegacyFeatures

#: ``(list name, objects read so far)`` after every page
OnPage = Callable[[str, int], None]


@dataclass
class AccountLists:
    """Every account-wide list, read once; ``entries`` maps them per customer."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    by_customer: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    @property
    def total(self) -> int:
        return len(self.customers)


def _pages(
    calls: StripeCalls, name: str, fn: Any, params: dict[str, Any], on_page: OnPage | None
) -> Iterator[dict[str, Any]]:
    n = 0
    size = calls.page_size
    size = min(size, dict(calls.wire.page_caps).get(name, size))
    for obj in calls.pages(f"list {name}", fn, params=params, page_size=size):
        n += 1
        yield obj
        if on_page is not None and n % size == 0:
            on_page(name, n)
    if on_page is not None:
        on_page(name, n)


def read_account(calls: StripeCalls, *, on_page: OnPage | None = None) -> AccountLists:
    v1 = calls.client.v1
    current = calls.wire.list_expansions
    out = AccountLists()
    out.customers = list(
        _pages(
            calls,
            "customers",
            v1.customers.list,
            {"expand": ["data.invoice_settings.default_payment_method"]},
            on_page,
        )
    )
    known = {c["id"] for c in out.customers}
    lists: list[tuple[str, Any, dict[str, Any]]] = [
        (
            "subscriptions",
            v1.subscriptions.list,
            {"status": "all", **({"expand": ["data.discounts.source.coupon"]} if current else {})},
        ),
        ("invoices", v1.invoices.list, {"expand": ["data.payments"]} if current else {}),
        ("charges", v1.charges.list, {"expand": ["data.refunds"]} if current else {}),
        ("invoice items", v1.invoice_items.list, {}),
    ]
    charge_owner: dict[str, str] = {}
    for name, fn, params in lists:
        for obj in _pages(calls, name, fn, params, on_page):
            cid = ref_id(obj.get("customer"))
            if cid not in known:
                continue  # a deleted customer's leftovers
            if name == "invoice items" and obj.get("invoice"):
                continue  # already on an invoice (localstripe has no `pending` filter)
            key = "pending_invoice_items" if name == "invoice items" else name
            out.by_customer[cid][key].append(obj)
            if name == "charges":
                charge_owner[obj["id"]] = cid
    _complete_embedded(calls, out, charge_owner)
    return out


def _full(calls: StripeCalls, what: str, fn: Any, *args: Any, **params: Any) -> dict[str, Any]:
    data = list(calls.pages(what, fn, *args, params=params or None))
    return {"object": "list", "has_more": False, "data": data}


def _complete_embedded(
    calls: StripeCalls, out: AccountLists, charge_owner: Mapping[str, str]
) -> None:
    """Page what a list page truncated, for the objects that need it only."""
    v1 = calls.client.v1
    need_refund_list = False
    for groups in out.by_customer.values():
        for sub in groups.get("subscriptions", []):
            if (sub.get("items") or {}).get("has_more"):
                sub["items"] = _full(
                    calls, "list subscription items", v1.subscription_items.list,
                    subscription=sub["id"],
                )  # fmt: skip
        for inv in groups.get("invoices", []):
            if (inv.get("lines") or {}).get("has_more"):
                inv["lines"] = _full(
                    calls, "list invoice lines", v1.invoices.line_items.list, inv["id"]
                )
        for ch in groups.get("charges", []):
            if "refunds" not in ch or (ch.get("refunds") or {}).get("has_more"):
                need_refund_list = True
    if need_refund_list:  # one account-wide pass instead of one list per charge
        for rf in calls.pages("list refunds", v1.refunds.list):
            cid = charge_owner.get(ref_id(rf.get("charge")) or "")
            if cid:
                out.by_customer[cid]["refunds"].append(rf)


def features(objects: Mapping[str, Any]) -> LegacyFeatures:
    """Raw-only features of one customer's objects (see ``LegacyFeatures``)."""
    cus = objects["customer"]
    pm = (cus.get("invoice_settings") or {}).get("default_payment_method")
    pm_type = pm.get("type") if isinstance(pm, Mapping) else None  # expanded by the list
    source = ref_id(cus.get("default_source"))
    if pm_type is None and source:
        pm_type = "card" if source.startswith("card_") else "source"
    if pm_type is None:
        charges = sorted(objects.get("charges") or [], key=lambda c: c.get("created") or 0)
        for ch in reversed(charges):
            details = ch.get("payment_method_details") or {}
            if details.get("type"):
                pm_type = str(details["type"])
                break
    if pm_type is None and pm is not None:
        pm_type = "unknown"  # an id the read did not expand
    subs = objects.get("subscriptions") or []
    automatic = any((s.get("automatic_tax") or {}).get("enabled") for s in subs)
    return LegacyFeatures(
        payment_method=pm_type,
        automatic_tax=automatic,
        pending_items=len(objects.get("pending_invoice_items") or []),
    )


def snapshot_objects(cus: dict[str, Any], groups: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The per-user snapshot's ``objects`` shape, from the grouped account lists."""
    subs = list(groups.get("subscriptions", []))
    return {
        "customer": cus,
        "pending_invoice_items": list(groups.get("pending_invoice_items", [])),
        "subscriptions": subs,
        "invoices": list(groups.get("invoices", [])),
        "charges": list(groups.get("charges", [])),
        "refunds": list(groups.get("refunds", [])),
        "plans": {
            it["plan"]["id"]: it["plan"]
            for s in subs
            for it in (s.get("items") or {}).get("data", [])
            if it.get("plan")
        },
    }


def entries(
    lists: AccountLists,
    map_snapshot: Callable[[RawSnapshot], BillingHistory],
    *,
    dialect: DialectName = "current",
) -> Iterator[InventoryEntry]:
    """One entry per customer, mapped by the backend's own ``map_snapshot``; a customer
    the mapping cannot read is an entry with a ``problem``, never an aborted sync."""
    for cus in lists.customers:
        cid = cus["id"]
        user_id = metadata(cus).get(META_USER, "")
        objects = snapshot_objects(cus, lists.by_customer.get(cid, {}))
        snap = RawSnapshot(user_id=user_id, customer_id=cid, objects=objects)
        history: BillingHistory | None = None
        problem = None
        try:
            history = map_snapshot(snap)
            customer = history.customer
        except TransformError as exc:
            problem = str(exc)
            try:
                customer = map_customer(
                    cus, objects["subscriptions"], objects["invoices"], dialect=dialect
                )
            except TransformError:
                customer = None
        yield InventoryEntry(
            customer_id=cid,
            user_id=user_id,
            customer=customer,
            history=history,
            features=features(objects),
            snapshot=snap,
            problem=problem,
        )
