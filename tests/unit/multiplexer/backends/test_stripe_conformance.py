"""The request-conformance check itself (tests/stripe_current/conformance.py)."""

from __future__ import annotations

import pytest

from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe_legacy import StripeLegacyBackend
from tests.stripe_current import configurations, conformance, plugin, shapes
from tests.stripe_current.double import StripeDouble, client_for


def test_route_table_comes_from_the_sdk() -> None:
    pay = conformance.match("post", "/v1/invoices/in_1/pay")
    assert pay is not None and pay.params == "InvoicePayParams"
    preview = conformance.match("post", "/v1/invoices/create_preview")
    assert preview is not None and preview.params == "InvoiceCreatePreviewParams"
    assert conformance.match("get", "/v1/nothing/here") is None


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("post", "/v1/invoices/in_1/pay", "paid_out_of_band=true&amount=5", "amount: unknown"),
        (
            "post",
            "/v1/subscriptions/sub_1",
            "proration_behavior=sometimes",
            "'sometimes' is not one of",
        ),
        (
            "post",
            "/v1/payment_records/report_payment",
            "amount_requested[currency]=eur&initiated_at=1&payment_method_details[type]=custom",
            "amount_requested.value: required parameter is missing",
        ),
        ("post", "/v1/credit_notes", "amount=5", "invoice: required parameter is missing"),
        ("post", "/v1/refunds", "charge=ch_1&amount=ten", "'ten' is not an integer"),
        ("get", "/v1/invoices/upcoming?customer=cus_1", "", "customer: unknown"),
    ],
)
def test_violations_are_named(method: str, path: str, body: str, expected: str) -> None:
    found = conformance.violations(method, "https://api.stripe.com" + path, body, "current")
    assert any(expected in v for v in found), found


def test_localstripe_allow_list_is_explicit() -> None:
    url = "http://127.0.0.1:1/v1/invoices/upcoming?customer=cus_1"
    assert conformance.violations("get", url, "", "localstripe") == []
    assert conformance.violations("get", url, "", "current") != []


@pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")
def test_a_bad_backend_request_is_caught_at_the_transport(stripe_conformance: list[str]) -> None:
    double = StripeDouble()
    cid = configurations.seed_plain(double)
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    before = len(plugin.SEEN)
    backend.snapshot(UserRef("u-plain", legacy_customer_id=cid))
    assert stripe_conformance == []
    assert {d for d, _, _ in plugin.SEEN[before:]} == {"current"}
    backend._t.call(  # a request no Stripe version accepts, sent the backend's way
        "bad", backend.client.v1.refunds.create, {"charge": "ch_plain", "speed": "fast"}
    )
    assert stripe_conformance == ["POST /v1/refunds: speed: unknown parameter"]
    stripe_conformance.clear()  # caught: don't fail this test at teardown
