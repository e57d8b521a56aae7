"""Import / activate / discard through the real app (TestClient on SQLite)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from nb_helpers import AUTH, post_import, row_counts

from sandbox.newbilling.samples import sample_import

IMPORT_KEYS = ("subscriptions", "discounts", "invoices", "payments", "refunds")


def strip_service_fields(record: Any) -> Any:
    """Drop the fields the service adds, leaving what the client sent."""
    added = {
        "id",
        "user_id",
        "next_renewal_at",
        "subscription_id",
        "invoice_id",
        "payment_id",
        "note",
        "created_at_service",
    }
    if isinstance(record, list):
        return [strip_service_fields(r) for r in record]
    if isinstance(record, dict):
        return {k: strip_service_fields(v) for k, v in record.items() if k not in added}
    return record


def test_import_happy_path_bundle_matches_payload(client):
    payload = sample_import("u_1", n_invoices=3)
    response = post_import(client, payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("imp_") and body["status"] == "pending"
    assert body["counts"] == {
        "subscriptions": 1,
        "invoices": 3,
        "lines": 3,
        "payments": 3,
        "refunds": 1,
        "discounts": 1,
    }

    bundle = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    assert bundle["import"] == {"id": body["id"], "status": "pending"}
    customer = dict(bundle["customer"])
    assert customer.pop("id").startswith("cus_nb_")
    customer.pop("created_at"), customer.pop("user_id")
    assert customer == payload["customer"]
    for key in IMPORT_KEYS:
        assert strip_service_fields(bundle[key]) == payload[key], key
    assert bundle["subscriptions"][0]["next_renewal_at"] is None  # pending: not billing


def test_pending_import_is_not_billing_and_blocks_operations(client):
    post_import(client, sample_import("u_1"))
    response = client.post(
        "/v1/users/u_1/offline-payments",
        json={"amount": 100, "currency": "EUR", "reference": "bank-1"},
        headers=AUTH,
    )
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "import_pending"


def test_idempotent_replay_returns_same_status_and_body(client):
    payload = sample_import("u_1")
    first = post_import(client, payload, key="same")
    again = post_import(client, copy.deepcopy(payload), key="same")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert row_counts(client)["nb_imports"] == 1


def test_idempotency_key_reused_with_different_body_is_409(client):
    post_import(client, sample_import("u_1"), key="same")
    other = sample_import("u_2")
    response = post_import(client, other, key="same")
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_key_reused"
    assert client.get("/v1/users/u_2/bundle", headers=AUTH).status_code == 404


def test_idempotency_keys_are_per_token(client):
    post_import(client, sample_import("u_1"), key="same")
    response = client.post(
        "/v1/imports",
        json=sample_import("u_2"),
        headers={"Authorization": "Bearer other-token", "Idempotency-Key": "same"},
    )
    assert response.status_code == 201


def test_missing_idempotency_key_is_400_and_writes_nothing(client):
    response = client.post("/v1/imports", json=sample_import("u_1"), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "idempotency_key_required"
    assert row_counts(client)["nb_customers"] == 0


def _mutate(path: str, value: Any) -> Any:
    def apply(p: dict[str, Any]) -> None:
        target: Any = p
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        target[parts[-1]] = value

    return apply


def _dup_payment(p: dict[str, Any]) -> None:
    p["payments"][1]["external_id"] = p["payments"][0]["external_id"]


def _overpay(p: dict[str, Any]) -> None:
    extra = dict(p["payments"][0], external_id="ch_extra", amount=1)
    p["payments"].append(extra)


def _float_amount(p: dict[str, Any]) -> None:
    p["invoices"][0]["lines"][0]["amount"] = 1999.0


BAD_PAYLOADS = [
    ("unknown currency", _mutate("customer.currency", "XYZ"), "customer.currency"),
    ("lowercase currency", _mutate("customer.currency", "eur"), "customer.currency"),
    ("currency mismatch", _mutate("invoices.0.currency", "USD"), "invoices[0].currency"),
    ("negative total without credit", _mutate("invoices.1.total", -1), "invoices[1].total"),
    ("negative tax", _mutate("invoices.1.tax", -1), "invoices[1].tax"),
    ("lines do not add up", _mutate("invoices.1.lines.0.amount", 1), "invoices[1].subtotal"),
    ("total formula", _mutate("invoices.0.tax", 10), "invoices[0].total"),
    ("paid+due", _mutate("invoices.0.amount_due", 5), "invoices[0].amount_due"),
    ("payment exceeds invoice", _overpay, "payments[2].amount"),
    ("refund exceeds payment", _mutate("refunds.0.amount", 5000), "refunds[0].amount"),
    (
        "unknown invoice ref",
        _mutate("payments.0.invoice_external_id", "in_x"),
        "payments[0].invoice_external_id",
    ),
    (
        "unknown payment ref",
        _mutate("refunds.0.payment_external_id", "ch_x"),
        "refunds[0].payment_external_id",
    ),
    (
        "unknown subscription ref",
        _mutate("invoices.0.subscription_external_id", "sub_x"),
        "invoices[0].subscription_external_id",
    ),
    ("duplicate external id", _dup_payment, "payments[1].external_id"),
    ("both percent and amount", _mutate("discounts.0.amount_off", 100), "discounts[0]"),
    (
        "percent out of range",
        _mutate("discounts.0.percent_off_bp", 10001),
        "discounts[0].percent_off_bp",
    ),
    (
        "naive timestamp",
        _mutate("subscriptions.0.current_period_end", "2024-04-15T09:30:00"),
        "subscriptions[0].current_period_end",
    ),
    ("float money", _float_amount, "invoices[0].lines[0].amount"),
    ("zero payment", _mutate("payments.0.amount", 0), "payments[0].amount"),
    ("unknown field", _mutate("customer.emial", "x@example.com"), "customer.emial"),
]


@pytest.mark.parametrize(("case", "mutate", "loc"), BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_invalid_import_is_422_naming_the_field_and_writes_nothing(client, case, mutate, loc):
    payload = sample_import("u_1")
    mutate(payload)
    response = post_import(client, payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert loc in [f["loc"] for f in error["fields"]], error
    assert error["message"]
    assert client.get("/v1/users/u_1/bundle", headers=AUTH).status_code == 404
    assert set(row_counts(client).values()) == {0}


def test_credit_lines_settle_an_invoice_paid_outside_billing(client):
    """A paid-out-of-band invoice: the credit line zeroes it (localstripe's closest shape)."""
    payload = sample_import("u_1", n_invoices=1)
    inv = payload["invoices"][0]
    credit = dict(inv["lines"][0], external_id="il_oob", amount=-inv["subtotal"], proration=False)
    inv["lines"].append(credit)
    inv.update(subtotal=0, total=0, amount_paid=0, amount_due=0)
    payload["payments"], payload["refunds"] = [], []
    assert post_import(client, payload).status_code == 201


def test_customer_credit_counts_towards_settling_an_invoice(client):
    payload = sample_import("u_1", n_invoices=1)
    inv = payload["invoices"][0]
    inv.update(amount_paid=inv["total"] - 500, balance_applied=500)
    payload["payments"][0]["amount"] = inv["total"] - 500
    payload["refunds"] = []
    assert post_import(client, payload).status_code == 201, post_import(client, payload).text


def test_proration_lines_may_be_negative(client):
    payload = sample_import("u_1", n_invoices=1)
    inv = payload["invoices"][0]
    credit = dict(inv["lines"][0], external_id="il_credit", amount=-2500, proration=True)
    inv["lines"].append(credit)
    inv.update(subtotal=-501, total=-501, amount_paid=0, amount_due=0)
    payload["payments"], payload["refunds"] = [], []
    assert post_import(client, payload).status_code == 201


def test_a_negative_invoice_without_a_proration_line_is_refused(client):
    """issue 11: a credit line that is no proration cannot make a whole invoice negative."""
    payload = sample_import("u_1", n_invoices=1)
    inv = payload["invoices"][0]
    credit = dict(inv["lines"][0], external_id="il_credit", amount=-2500, proration=False)
    inv["lines"].append(credit)
    inv.update(subtotal=-501, total=-501, amount_paid=0, amount_due=0)
    payload["payments"], payload["refunds"] = [], []
    response = post_import(client, payload)
    assert response.status_code == 422, response.text
    locs = {f["loc"]: f["message"] for f in response.json()["error"]["fields"]}
    assert "proration" in locs["invoices[0].total"]
    assert row_counts(client)["nb_customers"] == 0


def test_external_id_held_by_another_user_is_409(client):
    assert post_import(client, sample_import("u_1"), key="a").status_code == 201
    clash = sample_import("u_2")
    clash["invoices"][0]["external_id"] = "in_u_1_0"
    clash["payments"][0]["invoice_external_id"] = "in_u_1_0"
    response = post_import(client, clash, key="b")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["type"] == "external_id_conflict"
    assert error["fields"][0]["loc"] == "invoices[0].external_id"
    assert client.get("/v1/users/u_2/bundle", headers=AUTH).status_code == 404


def test_second_import_for_same_user_is_409(client):
    assert post_import(client, sample_import("u_1"), key="a").status_code == 201
    again = sample_import("u_1")
    for key in ("customer",):
        again[key]["external_id"] = "cus_other"
    response = post_import(client, again, key="b")
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "user_already_imported"


def test_activate_sets_next_renewal_exactly(client):
    payload = sample_import("u_1")
    trial = sample_import("u_1", status="trialing")["subscriptions"][0]
    trial.update(external_id="sub_trial", trial_end="2024-05-01T12:00:00+02:00")
    trial["items"][0]["external_id"] = "si_trial"
    canceled = copy.deepcopy(trial)
    canceled.update(external_id="sub_gone", status="canceled")
    canceled["items"][0]["external_id"] = "si_gone"
    payload["subscriptions"] += [trial, canceled]
    imp = post_import(client, payload).json()

    response = client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active" and body["activated_at"].endswith("Z")
    renewals = {s["external_id"]: s["next_renewal_at"] for s in body["subscriptions"]}
    assert renewals == {
        "sub_u_1": payload["subscriptions"][0]["current_period_end"],
        "sub_trial": "2024-05-01T10:00:00Z",  # offset normalised to UTC
        "sub_gone": None,
    }
    again = client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    assert (again.status_code, again.json()) == (200, body)
    bundle = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    assert bundle["import"]["status"] == "active"
    assert client.get(f"/v1/imports/{imp['id']}", headers=AUTH).json() == body


def test_discard_removes_everything_and_reimport_works(client):
    imp = post_import(client, sample_import("u_1"), key="a").json()
    response = client.delete(f"/v1/imports/{imp['id']}", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["status"] == "discarded"
    counts = row_counts(client)
    assert counts["nb_imports"] == 1  # tombstone
    assert all(counts[t] == 0 for t in counts if t not in ("nb_imports", "nb_idempotency_keys"))
    assert client.get("/v1/users/u_1/bundle", headers=AUTH).status_code == 404
    twice = client.delete(f"/v1/imports/{imp['id']}", headers=AUTH)
    assert (twice.status_code, twice.json()) == (200, response.json())

    activate = client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    assert activate.status_code == 409
    assert activate.json()["error"]["type"] == "import_discarded"

    second = post_import(client, sample_import("u_1"), key="b")
    assert second.status_code == 201
    assert second.json()["id"] != imp["id"]


def test_discard_after_activate_is_409(client):
    imp = post_import(client, sample_import("u_1")).json()
    client.post(f"/v1/imports/{imp['id']}/activate", headers=AUTH)
    response = client.delete(f"/v1/imports/{imp['id']}", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "import_active"
    assert client.get("/v1/users/u_1/bundle", headers=AUTH).json()["import"]["status"] == "active"


def test_unknown_import_is_404(client):
    for method, path in (("POST", "/activate"), ("DELETE", ""), ("GET", "")):
        response = client.request(method, f"/v1/imports/imp_nope{path}", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(("currency", "amount"), [("JPY", 1234567), ("BHD", 12345), ("KWD", 1)])
def test_zero_and_three_decimal_currencies_round_trip_exactly(client, currency, amount):
    payload = sample_import("u_1", currency=currency, amount=amount)
    assert post_import(client, payload).status_code == 201
    bundle = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    assert bundle["customer"]["currency"] == currency
    assert [i["total"] for i in bundle["invoices"]] == [amount, amount]
    assert bundle["subscriptions"][0]["items"][0]["unit_amount"] == amount
    assert bundle["refunds"][0]["amount"] == max(1, amount // 4)
