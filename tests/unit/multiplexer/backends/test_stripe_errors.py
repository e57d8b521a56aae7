"""Stripe SDK errors -> twinbill errors at the adapter boundary."""

from __future__ import annotations

import stripe

from core.errors import BackendRejected, BackendUnavailable, NotFound, RateLimited
from multiplexer.backends.stripe.transport import translate


def test_rate_limit_reads_retry_after() -> None:
    err = translate(
        stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "3"}), "list"
    )
    assert isinstance(err, RateLimited) and err.retry_after == 3.0


def test_connection_and_5xx_are_transient() -> None:
    assert isinstance(translate(stripe.APIConnectionError("down"), "x"), BackendUnavailable)
    assert isinstance(translate(stripe.APIError("boom", http_status=500), "x"), BackendUnavailable)


def test_404_is_not_found_and_4xx_rejected() -> None:
    missing = stripe.InvalidRequestError(
        "No such customer", "id", code="resource_missing", http_status=404
    )
    assert isinstance(translate(missing, "x"), NotFound)
    bad = stripe.InvalidRequestError("bad", "amount", http_status=400)
    assert isinstance(translate(bad, "x"), BackendRejected)


def test_should_retry_header_makes_a_conflict_transient() -> None:
    lock = stripe.InvalidRequestError(
        "lock timeout",
        None,
        code="lock_timeout",
        http_status=409,
        headers={"Stripe-Should-Retry": "true"},
    )
    assert isinstance(translate(lock, "x"), BackendUnavailable)
