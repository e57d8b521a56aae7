"""Webhook signatures: Stripe's (checked by the stripe SDK) and the HMAC scheme we share.

The new billing service and twinbill's own outgoing events use the same
scheme as Stripe: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``.
The timestamp is inside the MAC, so a captured request cannot be replayed
outside the tolerance window; inside it, the inbox's unique event id drops it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE = 300  # seconds, both directions (a clock far ahead is as suspect as one behind)
LEGACY_HEADER = "Stripe-Signature"
NEW_HEADER = "Newbilling-Signature"
OUT_HEADER = "Twinbill-Signature"


class SignatureError(Exception):
    """The request is not provably from the sender (message safe to return: no secrets)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise SignatureError("signature header has no valid timestamp")


def _check_window(timestamp: int, now: float, tolerance: int) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"signature timestamp outside the {tolerance}s tolerance window")


def verify_hmac(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a ``t=...,v1=...`` header in constant time; raise ``SignatureError``."""
    if not header:
        raise SignatureError("missing signature header")
    timestamp = _timestamp(header)
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    candidates = [p.strip()[3:] for p in header.split(",") if p.strip().startswith("v1=")]
    # compare every candidate (no early exit) so timing says nothing about which matched
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise SignatureError("signature does not match")
    _check_window(timestamp, time.time() if now is None else now, tolerance)


def verify_stripe(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> None:
    """Stripe's own verifier, plus a bound on timestamps from the future (the SDK has none)."""
    import stripe

    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise SignatureError(str(exc).split(". ")[0]) from exc
    except UnicodeDecodeError as exc:
        raise SignatureError("body is not UTF-8") from exc
    assert header is not None
    _check_window(_timestamp(header), time.time() if now is None else now, tolerance)
