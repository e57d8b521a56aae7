"""``list_changes`` on the Stripe double (current dialect): who changed, paged, and gaps."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from multiplexer.backends.stripe.backend import StripeLegacyBackend
from tests.stripe_current import shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")


def test_a_write_is_an_event_naming_its_customer():
    double = StripeDouble()
    backend = StripeLegacyBackend(client_for(double), dialect="current")
    since = datetime.now(UTC) - timedelta(seconds=1)
    cus = backend.create_customer("u1", email=None, name=None, currency="EUR", idempotency_key="k1")
    got = backend.list_changes(since)
    assert got.gap is None and got.complete_from is not None and got.complete_from <= since
    assert [(c.event_type, c.keys) for c in got.changes] == [("customer.created", (cus.id,))]
    assert double.reads.count("GET /v1/events") == 1 and got.requests == 1


def test_every_page_is_read_and_only_events_since_the_time():
    double = StripeDouble()
    now = int(time.time())
    old = shapes.event(
        "evt_old", "customer.updated", {"id": "cus_old", "object": "customer"}, created=now - 600
    )
    double.put("event", old)
    for n in range(150):
        obj = {"id": f"sub_{n}", "object": "subscription", "customer": f"cus_{n}"}
        double.put(
            "event", shapes.event(f"evt_{n:03d}", "customer.subscription.updated", obj, created=now)
        )
    got = StripeLegacyBackend(client_for(double)).list_changes(
        datetime.now(UTC) - timedelta(seconds=5)
    )
    assert len(got.changes) == 150 and double.reads.count("GET /v1/events") == 2
    assert "cus_old" not in {k for c in got.changes for k in c.keys}


def test_a_window_past_the_retention_is_a_gap():
    double = StripeDouble()
    since = datetime.now(UTC) - timedelta(days=31)
    got = StripeLegacyBackend(client_for(double)).list_changes(since)
    assert got.gap and "retention" in got.gap
    assert got.complete_from is not None and got.complete_from > since + timedelta(days=1)


def test_localstripe_dialect_asks_nothing_and_says_why():
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": "http://127.0.0.1:9"})
    backend = StripeLegacyBackend(client, dialect="localstripe")
    got = backend.list_changes(datetime.now(UTC))  # no server: a request would fail
    assert got.complete_from is None and "localstripe sends no event" in (got.gap or "")
    assert backend.events_gap == got.gap
