"""The webhook endpoints as a billing system sees them: HTTP in, rows and deliveries out."""

from __future__ import annotations

import json
import logging
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from webhook_helpers import (
    NEW_SECRET,
    add_route,
    dumps,
    hmac_header,
    legacy_event,
    new_event,
    stripe_header,
    subscription,
)

from multiplexer.models import InboundEvent, OutboxMessage
from multiplexer.webhooks.inbound import unknown_events


def post_legacy(client: TestClient, body: bytes, header: str | None = "sign") -> object:
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        header = stripe_header(body)
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/legacy", content=body, headers=headers)


def post_new(client: TestClient, body: bytes, header: str | None = "sign") -> object:
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        header = hmac_header(NEW_SECRET, body)
    if header is not None:
        headers["Newbilling-Signature"] = header
    return client.post("/webhooks/new", content=body, headers=headers)


def rows(sessions: sessionmaker[Session], model: type) -> list:
    with sessions() as session:
        return list(session.scalars(sa.select(model).order_by(model.id)))


@pytest.fixture
def legacy_user(sessions: sessionmaker[Session]) -> str:
    add_route(sessions, "u1", legacy_customer_id="cus_1")
    return "u1"


def test_good_legacy_signature_is_forwarded_once(client, sessions, enqueued, legacy_user):
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    response = post_legacy(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "forwarded"
    [msg] = rows(sessions, OutboxMessage)
    assert msg.user_id == "u1" and msg.status == "pending"
    assert msg.body["type"] == "subscription.created"
    assert msg.body["system"] == "legacy" and msg.body["source_event_id"] == "evt_1"
    assert msg.body["id"].startswith("evt_tb_")
    assert msg.body["data"]["id"] == "sub_1" and msg.body["data"]["currency"] == "EUR"
    assert enqueued == ["u1"]


@pytest.mark.parametrize(
    "header",
    [None, "", "t=123", "garbage", "t=now,v1=deadbeef"],
    ids=["missing", "empty", "no-v1", "garbage", "bad-ts"],
)
def test_missing_or_malformed_legacy_signature_is_400_and_nothing_stored(
    client, sessions, enqueued, legacy_user, header
):
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    response = post_legacy(client, body, header)
    assert response.status_code == 400
    assert rows(sessions, InboundEvent) == [] and rows(sessions, OutboxMessage) == []
    assert enqueued == []


def test_wrong_secret_or_tampered_body_is_400(client, sessions, legacy_user):
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    assert post_legacy(client, body, stripe_header(body, secret="whsec_other")).status_code == 400
    tampered = body.replace(b"active", b"canceled")
    assert post_legacy(client, tampered, stripe_header(body)).status_code == 400
    assert rows(sessions, InboundEvent) == []


# 30 s past the 300 s window on either side: a loaded machine may take seconds between
# signing and verifying, which must not walk a "just outside" timestamp back inside.
@pytest.mark.parametrize("skew", [-330, +330, -3600])
def test_out_of_window_timestamp_is_400(client, sessions, legacy_user, skew):
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    stale = stripe_header(body, int(time.time()) + skew)
    assert post_legacy(client, body, stale).status_code == 400
    stale_new = hmac_header(NEW_SECRET, body, int(time.time()) + skew)
    assert post_new(client, body, stale_new).status_code == 400
    assert rows(sessions, InboundEvent) == []


def test_bad_new_signature_is_400(client, sessions):
    add_route(sessions, "n1", system="new")
    body = dumps(new_event("subscription.created", "n1", {"id": "sub_nb_1"}))
    assert post_new(client, body, None).status_code == 400
    assert post_new(client, body, hmac_header("wrong", body)).status_code == 400
    assert rows(sessions, InboundEvent) == []
    assert post_new(client, body).status_code == 200


def test_replay_is_acknowledged_as_duplicate_and_dropped(client, sessions, enqueued, legacy_user):
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    assert post_legacy(client, body).json()["status"] == "forwarded"
    again = post_legacy(client, body)  # re-signed later, same event id: a provider retry
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(rows(sessions, InboundEvent)) == 1
    assert len(rows(sessions, OutboxMessage)) == 1
    assert enqueued == ["u1"]


def test_unknown_user_is_kept_and_reported_without_pii(client, sessions, enqueued, caplog):
    obj = subscription(customer="cus_stranger") | {"email": "jane.doe@example.test"}
    body = dumps(legacy_event("customer.subscription.created", obj, "evt_x"))
    with caplog.at_level(logging.INFO):
        response = post_legacy(client, body)
    assert response.status_code == 200 and response.json()["status"] == "unknown_user"
    [row] = rows(sessions, InboundEvent)
    assert row.disposition == "unknown_user" and row.payload["id"] == "evt_x"
    with sessions() as session:
        assert [e.provider_event_id for e in unknown_events(session)] == ["evt_x"]
    assert rows(sessions, OutboxMessage) == [] and enqueued == []
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert "jane.doe" not in caplog.text


def test_migration_caused_legacy_delete_is_suppressed(client, sessions, enqueued, legacy_user):
    details = {"comment": "twinbill_migration:run_7", "reason": "cancellation_requested"}
    obj = subscription(status="canceled") | {"cancellation_details": details}
    body = dumps(legacy_event("customer.subscription.deleted", obj))
    assert post_legacy(client, body).json()["status"] == "suppressed"
    [row] = rows(sessions, InboundEvent)
    assert row.disposition == "suppressed" and "twinbill_migration" in row.reason
    assert row.canonical_type == "subscription.canceled"
    assert rows(sessions, OutboxMessage) == [] and enqueued == []


def test_real_legacy_cancel_is_forwarded(client, sessions, legacy_user):
    body = dumps(legacy_event("customer.subscription.deleted", subscription(status="canceled")))
    assert post_legacy(client, body).json()["status"] == "forwarded"
    [msg] = rows(sessions, OutboxMessage)
    assert msg.type == "subscription.canceled"


def test_invoice_of_subscription_canceled_by_migration_is_suppressed_while_migrating(
    client, sessions, legacy_user
):
    from core.db import transaction
    from multiplexer import routing

    with transaction(sessions) as session:
        routing.transition(session, "u1", "migrating", actor="test", reason="saga")
    flagged = subscription(status="canceled", metadata={"twinbill_migration": "1"})
    post_legacy(client, dumps(legacy_event("customer.subscription.deleted", flagged, "evt_a")))
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "subscription": "sub_1",
        "status": "draft",
        "currency": "eur",
        "total": 0,
    }
    response = post_legacy(client, dumps(legacy_event("invoice.created", invoice, "evt_b")))
    assert response.json()["status"] == "suppressed"
    assert rows(sessions, OutboxMessage) == []


def test_new_import_caused_events_are_suppressed(client, sessions, enqueued):
    add_route(sessions, "n1", system="new")
    imported = new_event("subscription.created", "n1", {"id": "sub_nb_1"}, "e1", cause="import")
    created = new_event("import.created", "n1", {"id": "imp_1"}, "e2", cause="import")
    real = new_event("subscription.created", "n1", {"id": "sub_nb_2", "status": "active"}, "e3")
    assert post_new(client, dumps(imported)).json()["status"] == "suppressed"
    assert post_new(client, dumps(created)).json()["status"] == "suppressed"
    assert post_new(client, dumps(real)).json()["status"] == "forwarded"
    [msg] = rows(sessions, OutboxMessage)
    assert msg.body["data"]["id"] == "sub_nb_2" and msg.body["system"] == "new"
    assert enqueued == ["n1"]


def test_late_legacy_event_suppressed_but_money_forwarded_after_the_move(client, sessions):
    from core.db import transaction
    from multiplexer import routing

    add_route(sessions, "u2", legacy_customer_id="cus_2")
    with transaction(sessions) as session:
        routing.transition(session, "u2", "migrating", actor="t", reason="saga")
        routing.transition(session, "u2", "new", actor="t", reason="saga", system="new")
    late = legacy_event("customer.subscription.updated", subscription(customer="cus_2"), "e1")
    assert post_legacy(client, dumps(late)).json()["status"] == "suppressed"
    charge = {
        "id": "ch_1",
        "object": "charge",
        "customer": "cus_2",
        "amount": 1500,
        "currency": "eur",
        "status": "succeeded",
        "amount_refunded": 1500,
    }
    refund = legacy_event("charge.refunded", charge, "e2")
    assert post_legacy(client, dumps(refund)).json()["status"] == "forwarded"
    [msg] = rows(sessions, OutboxMessage)
    assert msg.type == "payment.refunded" and msg.body["system"] == "legacy"
    assert msg.body["data"]["amount_refunded"] == 1500


def test_invoice_paid_twice_from_stripe_is_forwarded_once(client, sessions, legacy_user):
    invoice = {
        "id": "in_9",
        "object": "invoice",
        "customer": "cus_1",
        "status": "paid",
        "currency": "usd",
        "total": 900,
        "amount_paid": 900,
        "amount_due": 0,
    }
    assert (
        post_legacy(client, dumps(legacy_event("invoice.paid", invoice, "e1"))).json()["status"]
        == "forwarded"
    )
    second = post_legacy(client, dumps(legacy_event("invoice.payment_succeeded", invoice, "e2")))
    assert second.json()["status"] == "ignored"
    assert len(rows(sessions, OutboxMessage)) == 1


def test_event_without_canonical_meaning_is_ignored_with_reason(client, sessions, legacy_user):
    body = dumps(legacy_event("plan.created", {"id": "gold", "object": "plan"}))
    assert post_legacy(client, body).json()["status"] == "ignored"
    [row] = rows(sessions, InboundEvent)
    assert "plan.created" in row.reason


def test_body_over_one_megabyte_is_413(client, sessions, legacy_user):
    obj = subscription() | {"padding": "x" * 1_000_001}
    body = dumps(legacy_event("customer.subscription.created", obj))
    assert post_legacy(client, body).status_code == 413
    assert post_new(client, body).status_code == 413
    assert rows(sessions, InboundEvent) == []


def test_body_over_limit_without_content_length_is_413(client, sessions, legacy_user):
    def chunks():
        for _ in range(11):
            yield b"x" * 100_000

    response = client.post(
        "/webhooks/legacy", content=chunks(), headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"type": "x"}', b"\xff\xfe"])
def test_malformed_json_is_400_even_when_signed(client, sessions, body):
    assert post_new(client, body).status_code == 400
    assert rows(sessions, InboundEvent) == []


def test_malformed_legacy_json_is_400(client, sessions):
    assert post_legacy(client, b"{not json").status_code == 400


def test_missing_secret_is_503_not_accepted(client, ctx, sessions, legacy_user):
    ctx.settings = ctx.settings.model_copy(update={"legacy_webhook_secret": None})
    body = dumps(legacy_event("customer.subscription.created", subscription()))
    response = post_legacy(client, body)
    assert response.status_code == 503
    assert "whsec" not in response.text
    assert rows(sessions, InboundEvent) == []


def test_response_is_json_with_event_id(client, legacy_user):
    body = dumps(legacy_event("customer.subscription.created", subscription(), "evt_42"))
    payload = json.loads(post_legacy(client, body).text)
    assert payload == {"status": "forwarded", "event_id": "evt_42"}
