"""``GET /v1/imports/{id}/preview``: what a pending import will charge at its first renewal."""

from __future__ import annotations

import copy

from nb_helpers import AUTH, post_import

from sandbox.newbilling.samples import sample_import

VAT = {"external_id": "txr_vat", "display_name": "VAT", "percentage": "19", "inclusive": False}


def _preview(client, payload):
    created = post_import(client, payload, key=payload["user_id"])
    assert created.status_code == 201, created.text
    response = client.get(f"/v1/imports/{created.json()['id']}/preview", headers=AUTH)
    assert response.status_code == 200, response.text
    return created.json()["id"], response.json()


def test_preview_taxes_the_renewal_with_the_carried_rate_and_applies_the_credit(client):
    payload = sample_import("u_tax", amount=990)
    payload["subscriptions"][0]["tax_rates"] = [VAT]
    payload["customer"]["balance"] = -500  # a credit of 5.00
    payload["discounts"] = []
    _, body = _preview(client, payload)
    (charge,) = body["subscriptions"]
    sub = payload["subscriptions"][0]
    assert charge["state"] == "renewing"
    assert charge["charge_at"] == sub["current_period_end"]
    assert (charge["subtotal"], charge["tax"], charge["total"]) == (990, 188, 1178)
    assert charge["tax_breakdown"] == [
        {"tax_rate_external_id": "txr_vat", "percentage": "19", "inclusive": False, "amount": 188}
    ]
    assert (charge["balance_applied"], charge["amount_due"]) == (500, 678)
    assert body["balance"] == -500 and body["status"] == "pending"
    # the bundle carries the rate too: the renewal has something to tax with
    bundle = client.get("/v1/users/u_tax/bundle", headers=AUTH).json()
    assert bundle["subscriptions"][0]["tax_rates"][0]["percentage"] == "19"


def test_preview_of_a_debt_adds_it_to_the_next_charge(client):
    payload = sample_import("u_debt", amount=990)
    payload["customer"]["balance"] = 500
    payload["discounts"] = []
    _, body = _preview(client, payload)
    assert body["subscriptions"][0]["balance_applied"] == -500
    assert body["subscriptions"][0]["amount_due"] == 1490


def test_preview_states_trial_cancel_and_incomplete(client):
    trial = sample_import("u_trial", status="trialing")
    _, body = _preview(client, trial)
    assert body["subscriptions"][0]["state"] == "trialing"
    assert body["subscriptions"][0]["charge_at"] == trial["subscriptions"][0]["trial_end"]
    assert body["subscriptions"][0]["until"] == trial["subscriptions"][0]["trial_end"]

    canceling = sample_import("u_cancel")
    canceling["subscriptions"][0]["cancel_at_period_end"] = True
    _, body = _preview(client, canceling)
    charge = body["subscriptions"][0]
    assert (charge["state"], charge["charge_at"], charge["amount_due"]) == ("canceling", None, 0)

    incomplete = sample_import("u_inc", status="incomplete")
    _, body = _preview(client, incomplete)
    assert body["subscriptions"][0]["state"] == "none"
    assert body["subscriptions"][0]["charge_at"] is None


def test_inclusive_rate_is_contained_not_added(client):
    payload = sample_import("u_incl", amount=1190)
    payload["discounts"] = []
    payload["subscriptions"][0]["tax_rates"] = [dict(VAT, inclusive=True)]
    _, body = _preview(client, payload)
    charge = body["subscriptions"][0]
    assert (charge["tax"], charge["total"]) == (190, 1190)


def test_a_float_percentage_is_refused_and_nothing_is_written(client):
    payload = sample_import("u_float")
    payload["subscriptions"][0]["tax_rates"] = [dict(VAT, percentage=19.0)]
    response = post_import(client, copy.deepcopy(payload))
    assert response.status_code == 422
    assert "tax_rates" in response.text
    assert client.get("/v1/users/u_float/bundle", headers=AUTH).status_code == 404


def test_preview_of_a_discarded_import_is_409(client):
    import_id, _ = _preview(client, sample_import("u_gone"))
    assert (
        client.delete(f"/v1/imports/{import_id}", headers={**AUTH, "Idempotency-Key": "d"})
    ).status_code == 200
    response = client.get(f"/v1/imports/{import_id}/preview", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "import_discarded"
    assert client.get("/v1/imports/imp_nope/preview", headers=AUTH).status_code == 404
