"""Pure pieces: proration rounding, currencies, intervals, limiter, signatures, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox.newbilling import currencies
from sandbox.newbilling.clock import add_interval, fmt
from sandbox.newbilling.errors import format_loc
from sandbox.newbilling.ledger import prorate_seconds
from sandbox.newbilling.ratelimit import SlidingWindowLimiter
from sandbox.newbilling.settings import ConfigError, Settings
from sandbox.newbilling.webhooks import sign, verify


@pytest.mark.parametrize(
    ("amount", "left", "period", "expected"),
    [
        (1000, 1, 2, 500),
        (1, 1, 2, 1),
        (3, 1, 2, 2),
        (1000, 2, 3, 667),
        (1000, 1, 3, 333),
        (999, 0, 10, 0),
        (999, 10, 10, 999),
        (999, 20, 10, 999),
        (5, 5, 0, 0),
    ],
)
def test_prorate_rounds_half_up_in_integers(amount, left, period, expected):
    assert prorate_seconds(amount, left, period) == expected


def test_currency_exponents():
    assert (
        currencies.exponent("JPY"),
        currencies.exponent("EUR"),
        currencies.exponent("BHD"),
        currencies.exponent("KWD"),
    ) == (0, 2, 3, 3)
    assert not currencies.is_known("eur") and not currencies.is_known("XYZ")


def test_add_interval_clamps_month_end():
    jan31 = datetime(2024, 1, 31, 12, tzinfo=UTC)
    assert add_interval(jan31, "month", 1) == datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert add_interval(jan31, "year", 1) == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert add_interval(jan31, "week", 2) == datetime(2024, 2, 14, 12, tzinfo=UTC)
    assert fmt(jan31) == "2024-01-31T12:00:00Z"


def test_format_loc_reads_like_the_payload():
    assert (
        format_loc(("body", "invoices", 2, "lines", 0, "amount")) == "invoices[2].lines[0].amount"
    )


def test_sliding_window_limiter_with_fake_clock():
    now = [100.0]
    limiter = SlidingWindowLimiter(2, clock=lambda: now[0])
    assert [limiter.hit("a"), limiter.hit("a"), limiter.hit("b")] == [None, None, None]
    assert limiter.hit("a") == 1
    now[0] += 1.01
    assert limiter.hit("a") is None


def test_signature_round_trip_and_tamper():
    import time

    t = int(time.time())
    header = sign("s3cret", b'{"a":1}', t)
    assert header.startswith(f"t={t},v1=")
    assert verify("s3cret", b'{"a":1}', header)
    assert not verify("s3cret", b'{"a":2}', header)
    assert not verify("other", b'{"a":1}', header)


def test_settings_require_tokens_naming_the_variable():
    with pytest.raises(ConfigError, match="NEWBILLING_API_TOKENS"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="NEWBILLING_WEBHOOK_SECRET"):
        Settings.from_env({"NEWBILLING_API_TOKENS": "a", "NEWBILLING_WEBHOOK_URL": "http://x"})
    s = Settings.from_env(
        {"NEWBILLING_API_TOKENS": "a, b", "NEWBILLING_RATE_LIMIT": "5"}, database_url="sqlite://"
    )
    assert (s.api_tokens, s.rate_limit, s.database_url) == (("a", "b"), 5.0, "sqlite://")
