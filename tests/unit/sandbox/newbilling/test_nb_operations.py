"""Native operations (customers, subscriptions, plan changes, refunds, offline money)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from nb_helpers import AUTH, post_import, row_counts

from sandbox.newbilling.samples import sample_import


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def new_user(client, user_id="n_1", currency="EUR"):
    response = client.post(
        f"/v1/users/{user_id}/customer",
        json={
            "email": "a@example.com",
            "name": "A",
            "currency": currency,
            "payment_method_ids": ["pm_1"],
            "metadata": {"k": "v"},
        },
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    return response.json()


def subscribe(client, user_id="n_1", **overrides):
    body = {
        "plan_code": "basic",
        "product_name": "Basic",
        "unit_amount": 1000,
        "currency": "EUR",
        "interval": "month",
        "interval_count": 1,
        "quantity": 1,
        "trial_days": None,
    }
    body.update(overrides)
    response = client.post(f"/v1/users/{user_id}/subscriptions", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def active_import(client, user_id="u_1", **kw):
    imp = post_import(client, sample_import(user_id, **kw), key=f"imp-{user_id}").json()
    assert client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH).status_code == 200
    return imp


def test_create_customer_then_duplicate_is_409(client):
    customer = new_user(client)
    assert customer["id"].startswith("cus_nb_") and customer["external_id"] is None
    again = client.post("/v1/users/n_1/customer", json={"currency": "EUR"}, headers=AUTH)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "user_already_exists"
    bundle = client.get("/v1/users/n_1/bundle", headers=AUTH).json()
    assert bundle["import"] is None and bundle["customer"]["metadata"] == {"k": "v"}


def test_subscription_charges_first_period(client):
    new_user(client)
    sub = subscribe(client, quantity=3)
    assert sub["status"] == "active" and sub["next_renewal_at"] == sub["current_period_end"]
    invoices = client.get("/v1/users/n_1/invoices", headers=AUTH).json()["data"]
    assert [(i["status"], i["total"], i["amount_paid"]) for i in invoices] == [("paid", 3000, 3000)]
    payments = client.get("/v1/users/n_1/payments", headers=AUTH).json()["data"]
    assert [(p["amount"], p["method"], p["payment_method_id"], p["refunds"]) for p in payments] == [
        (3000, "card", "pm_1", [])
    ]


def test_trialing_subscription_is_not_charged(client):
    new_user(client)
    sub = subscribe(client, trial_days=14)
    assert sub["status"] == "trialing"
    assert parse(sub["trial_end"]) - parse(sub["trial_start"]) == timedelta(days=14)
    assert sub["next_renewal_at"] == sub["trial_end"]
    assert client.get("/v1/users/n_1/invoices", headers=AUTH).json()["data"] == []


def test_subscription_currency_must_match_customer(client):
    new_user(client)
    response = client.post(
        "/v1/users/n_1/subscriptions",
        json={"plan_code": "p", "unit_amount": 1, "currency": "USD", "interval": "month"},
        headers=AUTH,
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "currency_mismatch"


def test_change_plan_prorates_in_integer_minor_units(client):
    new_user(client)
    sub = subscribe(client, unit_amount=1000)
    start, end = parse(sub["current_period_start"]), parse(sub["current_period_end"])
    at = start + (end - start) / 3  # two thirds of the period left
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={
            "plan_code": "pro",
            "unit_amount": 3000,
            "currency": "EUR",
            "interval": "month",
            "interval_count": 1,
            "prorate": True,
            "proration_date": at.isoformat(),
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    invoice = response.json()["invoice"]
    # 1000 * 2/3 = 666.67 -> 667 credit; 3000 * 2/3 = 2000 debit
    assert [(li["amount"], li["proration"]) for li in invoice["lines"]] == [
        (-667, True),
        (2000, True),
    ]
    assert invoice["total"] == 1333 and invoice["status"] == "paid"
    assert response.json()["subscription"]["items"][0]["plan_code"] == "pro"
    assert response.json()["subscription"]["current_period_end"] == sub["current_period_end"]


def test_downgrade_credit_goes_to_customer_balance(client):
    new_user(client)
    sub = subscribe(client, unit_amount=3000)
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={
            "plan_code": "mini",
            "unit_amount": 1000,
            "currency": "EUR",
            "interval": "month",
            "proration_date": sub["current_period_start"],
        },
        headers=AUTH,
    )
    assert response.json()["invoice"]["total"] == -2000
    assert client.get("/v1/users/n_1/bundle", headers=AUTH).json()["customer"]["balance"] == -2000


def test_cancel_now_with_full_refund_and_at_period_end(client):
    new_user(client)
    sub = subscribe(client)
    end = client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}, headers=AUTH
    )
    assert end.json()["subscription"]["cancel_at_period_end"] is True
    now = client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"refund": "last_payment"}, headers=AUTH
    )
    assert now.status_code == 200
    body = now.json()
    assert body["subscription"]["status"] == "canceled"
    assert body["subscription"]["canceled_at"] == body["subscription"]["ended_at"]
    assert body["subscription"]["next_renewal_at"] is None
    assert body["refund"]["amount"] == 1000
    again = client.post(f"/v1/subscriptions/{sub['id']}/cancel", json={}, headers=AUTH)
    assert again.status_code == 409


def test_refund_cannot_exceed_remainder(client):
    new_user(client)
    subscribe(client)
    payment = client.get("/v1/users/n_1/payments", headers=AUTH).json()["data"][0]
    ok = client.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 600}, headers=AUTH)
    assert ok.status_code == 201 and ok.json()["amount"] == 600
    too_much = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 401}, headers=AUTH
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["fields"][0]["loc"] == "amount"
    refunds = client.get("/v1/users/n_1/payments", headers=AUTH).json()["data"][0]["refunds"]
    assert [r["amount"] for r in refunds] == [600]


def test_offline_payment_idempotent_by_key_and_by_reference(client):
    active_import(client)
    body = {
        "amount": 5000,
        "currency": "EUR",
        "reference": "SEPA-42",
        "paid_at": "2024-06-01T10:00:00+02:00",
        "note": "wire",
    }
    first = client.post(
        "/v1/users/u_1/offline-payments", json=body, headers={**AUTH, "Idempotency-Key": "op-1"}
    )
    assert first.status_code == 201, first.text
    payment = first.json()
    assert payment["method"] == "offline" and payment["paid_at"] == "2024-06-01T08:00:00Z"
    replay = client.post(
        "/v1/users/u_1/offline-payments", json=body, headers={**AUTH, "Idempotency-Key": "op-1"}
    )
    assert (replay.status_code, replay.json()) == (201, payment)
    same_ref = client.post(
        "/v1/users/u_1/offline-payments",
        json={**body, "note": "again"},
        headers={**AUTH, "Idempotency-Key": "op-2"},
    )
    assert same_ref.status_code == 200 and same_ref.json() == payment
    offline = [
        p
        for p in client.get("/v1/users/u_1/payments", headers=AUTH).json()["data"]
        if p["method"] == "offline"
    ]
    assert len(offline) == 1


@pytest.mark.parametrize(
    ("change", "status", "kind"),
    [
        ({"currency": "USD"}, 422, "currency_mismatch"),
        ({"amount": 100_000_001}, 422, "amount_too_large"),
        ({"amount": 0}, 422, "validation_error"),
        ({"amount": -5}, 422, "validation_error"),
        ({"reference": None}, 422, "validation_error"),
    ],
)
def test_offline_payment_rejections_write_nothing(client, change, status, kind):
    active_import(client)
    before = row_counts(client)
    body = {"amount": 5000, "currency": "EUR", "reference": "SEPA-1", **change}
    response = client.post("/v1/users/u_1/offline-payments", json=body, headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind
    assert row_counts(client) == before


def test_offline_payment_settles_an_open_imported_invoice(client):
    payload = sample_import("u_1")
    inv = payload["invoices"][1]
    inv.update(status="open", paid_at=None, amount_paid=0, amount_due=inv["total"])
    payload["payments"].pop(1)
    imp = post_import(client, payload).json()
    client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    bundle = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    invoice_id = next(i["id"] for i in bundle["invoices"] if i["status"] == "open")
    response = client.post(
        "/v1/users/u_1/offline-payments",
        json={
            "amount": inv["total"],
            "currency": "EUR",
            "reference": "bank-7",
            "invoice_id": invoice_id,
        },
        headers=AUTH,
    )
    assert response.status_code == 201
    invoice = next(
        i
        for i in client.get("/v1/users/u_1/invoices", headers=AUTH).json()["data"]
        if i["id"] == invoice_id
    )
    assert (invoice["status"], invoice["amount_due"], invoice["paid_out_of_band"]) == (
        "paid",
        0,
        True,
    )


def test_offline_refund_rules(client):
    active_import(client, currency="JPY", amount=5000)
    payment = client.get("/v1/users/u_1/payments", headers=AUTH).json()["data"][0]
    refundable = payment["amount"] - sum(r["amount"] for r in payment["refunds"])
    body = {
        "amount": refundable,
        "currency": "JPY",
        "reference": "R-1",
        "payment_id": payment["id"],
        "reason": "goodwill",
    }
    first = client.post("/v1/users/u_1/offline-refunds", json=body, headers=AUTH)
    assert first.status_code == 201 and first.json()["method"] == "offline"
    again = client.post("/v1/users/u_1/offline-refunds", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    over = client.post(
        "/v1/users/u_1/offline-refunds",
        json={**body, "reference": "R-2", "amount": 1},
        headers=AUTH,
    )
    assert over.status_code == 422 and over.json()["error"]["type"] == "amount_exceeds_refundable"
    mismatch = client.post(
        "/v1/users/u_1/offline-refunds",
        json={**body, "reference": "R-3", "currency": "EUR"},
        headers=AUTH,
    )
    assert mismatch.json()["error"]["type"] == "currency_mismatch"


def test_operations_on_unknown_or_discarded_users_are_404(client):
    imp = post_import(client, sample_import("u_1")).json()
    client.delete(f"/v1/imports/{imp['id']}", headers=AUTH)
    for user, hint in (("u_1", "discarded"), ("nobody", "has no customer")):
        response = client.post(
            f"/v1/users/{user}/offline-payments",
            json={"amount": 1, "currency": "EUR", "reference": "x"},
            headers=AUTH,
        )
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["type"] == "user_not_found" and hint in error["message"]
        assert client.get(f"/v1/users/{user}/subscriptions", headers=AUTH).status_code == 404


# -- issue 11: currency on change-plan, control characters ---------------------------------


def test_change_plan_to_a_price_in_another_currency_is_refused(client):
    new_user(client, currency="USD")
    sub = subscribe(client, currency="USD", unit_amount=1000)
    before = client.get("/v1/users/n_1/bundle", headers=AUTH).json()
    for body in (
        {"plan_code": "pro_jpy", "unit_amount": 2400, "currency": "JPY", "interval": "month"},
        {"plan_code": "pro", "unit_amount": 2400, "interval": "month"},  # currency omitted
    ):
        response = client.post(
            f"/v1/subscriptions/{sub['id']}/change-plan", json=body, headers=AUTH
        )
        assert response.status_code == 422, response.text
        assert "currency" in response.text
    assert client.get("/v1/users/n_1/bundle", headers=AUTH).json() == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/users/n_2/customer", {"currency": "EUR", "name": "A\x00B"}),
        ("/v1/users/n_2/customer", {"currency": "EUR", "email": "a\x00@example.com"}),
        ("/v1/users/n_2/customer", {"currency": "EUR", "metadata": {"k\x00": "v"}}),
        ("/v1/users/n_1/offline-payments",
         {"amount": 700, "currency": "EUR", "reference": "SEPA\x00-1"}),
        ("/v1/users/n_1/offline-payments",
         {"amount": 700, "currency": "EUR", "reference": "SEPA-1\n"}),
        ("/v1/users/n_1/offline-payments",
         {"amount": 700, "currency": "EUR", "reference": "S", "note": "a\x1bb"}),
    ],
)  # fmt: skip
def test_control_characters_are_422_and_write_nothing(client, path, body):
    new_user(client)
    before = client.get("/v1/users/n_1/bundle", headers=AUTH).json()
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "control" in response.text
    assert client.get("/v1/users/n_1/bundle", headers=AUTH).json() == before
    assert client.get("/v1/users/n_2/bundle", headers=AUTH).status_code == 404
