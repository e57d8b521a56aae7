"""Signing helpers and event builders for the webhook unit tests.

The signers are written independently of ``multiplexer.webhooks.signatures``
(Stripe's own helper for the legacy side, plain ``hmac`` for the others), so a bug
in our signing code cannot hide itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import stripe
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from multiplexer import routing

LEGACY_SECRET = "whsec_unit_legacy"
NEW_SECRET = "nb_unit_secret"
APP_SECRET = "app_unit_secret"
APP_URL = "http://app.test/billing-events"


def hmac_header(secret: str, body: bytes, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def stripe_header(body: bytes, ts: int | None = None, secret: str = LEGACY_SECRET) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, ts)


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def add_route(
    sessions: sessionmaker[Session],
    user_id: str,
    *,
    system: str = "legacy",
    state: str | None = None,
    legacy_customer_id: str | None = None,
) -> None:
    with transaction(sessions) as session:
        routing.create_route(
            session,
            user_id,
            system=system,
            actor="test",
            reason="fixture",
            legacy_customer_id=legacy_customer_id,
        )
        if state is not None and state != system:
            routing.transition(session, user_id, state, actor="test", reason="fixture")


def legacy_event(
    etype: str, obj: dict[str, Any], event_id: str = "evt_1", created: int | None = None
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": etype,
        "api_version": "2017-08-15",
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
    }


def new_event(
    etype: str, user_id: str, obj: dict[str, Any], event_id: str = "evt_nb_1", cause: str = "api"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": etype,
        "created": "2024-06-11T10:00:00Z",
        "user_id": user_id,
        "cause": cause,
        "data": {"object": obj},
    }


def subscription(
    sub_id: str = "sub_1",
    customer: str = "cus_1",
    status: str = "active",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "currency": "eur",
        "current_period_end": 1718100000,
        "cancel_at_period_end": False,
        "metadata": metadata or {},
        "items": {"data": [{"plan": {"id": "gold", "amount": 1500}, "quantity": 1}]},
    }
