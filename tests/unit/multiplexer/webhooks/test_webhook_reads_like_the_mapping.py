"""The webhook normaliser and the Stripe mapping read one Stripe object the same way.

Both call ``multiplexer.backends.stripe.shapes``: an event about a current-API object
must tell the app what the migration's snapshot of that object says (next billing,
currency, items, the invoice's subscription), never a second reading of its own.
"""

from __future__ import annotations

import pytest

from multiplexer.backends.stripe import mapping as sm
from multiplexer.webhooks import normalise as nz
from tests.stripe_current import shapes

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")

DAY = 86400


def ev(etype: str, obj: dict) -> dict:
    return {"id": "evt_1", "type": etype, "created": shapes.T0, "data": {"object": obj}}


def _two_item_subscription() -> dict:
    """Current API: items with their own periods; the yearly one ends *later*."""
    monthly = shapes.price("price_m", 1500, "eur", product_id="prod_m")
    yearly = shapes.price("price_y", 9900, "eur", product_id="prod_y", interval="year")
    start = shapes.T0 - 10 * DAY
    return shapes.subscription(
        "sub_2",
        "cus_2",
        [
            shapes.item("si_y", "sub_2", yearly, start=start, end=start + 365 * DAY),
            shapes.item("si_m", "sub_2", monthly, start=start, end=start + 30 * DAY, quantity=3),
        ],
    )


def test_a_current_subscription_event_says_what_the_mapping_reads():
    sub = _two_item_subscription()
    mapped = sm.map_subscription(sub)
    data = nz.normalise_legacy(ev("customer.subscription.updated", sub)).data

    assert data["current_period_end"] == mapped.current_period_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert mapped.current_period_end.timestamp() == shapes.T0 + 20 * DAY  # the first to end
    assert data["currency"] == mapped.currency
    assert [(i["plan"], i["quantity"], i["unit_amount"]) for i in data["items"]] == [
        (i.plan_code, i.quantity, i.unit_amount) for i in mapped.items
    ]


def test_a_current_invoice_event_names_the_subscription_the_mapping_names():
    line = shapes.line(
        "il_1", "in_1", 1500, "eur", price_id="price_m", sub_id="sub_2", start=0, end=DAY
    )
    inv = shapes.invoice(
        "in_1", "cus_2", currency="eur", lines=[line], subtotal=1500, total=1500, sub_id="sub_2"
    )
    assert "subscription" not in inv or inv["subscription"] is None  # current API: parent
    mapped = sm.map_invoice(inv)
    event = ev("invoice.paid", inv)

    assert mapped.subscription_id == "sub_2"
    assert nz.legacy_subscription_id(event) == mapped.subscription_id
    # the app is told the invoice's subscription (it read ``invoice.subscription`` only,
    # which the current API no longer sends: every current invoice event said None)
    assert nz.normalise_legacy(event).data["subscription_id"] == mapped.subscription_id
