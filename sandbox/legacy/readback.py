"""Read a seeded customer's whole legacy state back through the stripe SDK (tests, benches).

Independent of twinbill's legacy adapter on purpose: tests check the adapter's
view against this plain read.
"""

from __future__ import annotations

from typing import Any

import stripe

PAGE_SIZE = 100  # localstripe pages


def _all(page: Any) -> list[dict[str, Any]]:
    return [obj.to_dict() for obj in page.auto_paging_iter()]


def read_back(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    """The customer's whole legacy state as plain dicts, every list paged.

    Keys: customer, payment_methods, subscriptions (every status), invoices
    (each with its complete ``lines``), pending_invoice_items, charges, refunds.
    """
    v1 = client.v1
    customer = v1.customers.retrieve(customer_id).to_dict()
    params = {"customer": customer_id, "limit": PAGE_SIZE}
    invoices = _all(v1.invoices.list(params))  # type: ignore[arg-type]
    for invoice in invoices:
        lines = invoice.get("lines") or {}
        if lines.get("has_more") or not lines:
            # localstripe's lines endpoint takes ``limit`` but rejects
            # ``starting_after``: one big page is the only way to get them all.
            invoice["lines"] = {
                "object": "list",
                "data": _all(v1.invoices.line_items.list(invoice["id"], {"limit": PAGE_SIZE})),
            }
    charges = _all(v1.charges.list(params))  # type: ignore[arg-type]
    refunds = []
    for charge in charges:
        refunds.extend(_all(v1.refunds.list({"charge": charge["id"], "limit": PAGE_SIZE})))
    return {
        "customer": customer,
        "payment_methods": _all(
            v1.payment_methods.list({"customer": customer_id, "type": "card", "limit": PAGE_SIZE})
        ),
        "subscriptions": _all(
            v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": PAGE_SIZE})
        ),
        "invoices": invoices,
        "pending_invoice_items": _all(v1.invoice_items.list(params)),  # type: ignore[arg-type]
        "charges": charges,
        "refunds": refunds,
    }
