"""Every response matches its documented model exactly (extra="forbid"), so the OpenAPI
document cannot drift from what the service really sends."""

from __future__ import annotations

from nb_helpers import AUTH, post_import

from sandbox.newbilling import schemas_out as so
from sandbox.newbilling.samples import sample_import


def test_responses_match_documented_models(client):
    created = post_import(client, sample_import("u_1"))
    so.ImportOut.model_validate(created.json())
    imp_id = created.json()["id"]
    so.ImportDetailOut.model_validate(client.get(f"/v1/imports/{imp_id}", headers=AUTH).json())
    so.ImportDetailOut.model_validate(
        client.post(f"/v1/imports/{imp_id}/activate", headers=AUTH).json()
    )
    so.BundleOut.model_validate(client.get("/v1/users/u_1/bundle", headers=AUTH).json())

    so.CustomerOut.model_validate(
        client.post("/v1/users/n_1/customer", json={"currency": "EUR"}, headers=AUTH).json()
    )
    sub = client.post(
        "/v1/users/n_1/subscriptions",
        json={"plan_code": "p", "unit_amount": 900, "currency": "EUR", "interval": "week"},
        headers=AUTH,
    ).json()
    so.SubscriptionOut.model_validate(sub)
    change = client.post(
        f"/v1/subscriptions/{sub['id']}/change-plan",
        json={"plan_code": "q", "unit_amount": 1900, "currency": "EUR", "interval": "month"},
        headers=AUTH,
    ).json()
    so.ChangePlanOut.model_validate(change)
    payment_id = client.get("/v1/users/n_1/payments", headers=AUTH).json()["data"][0]["id"]
    so.RefundOut.model_validate(
        client.post(f"/v1/payments/{payment_id}/refunds", json={"amount": 1}, headers=AUTH).json()
    )
    so.CancelOut.model_validate(
        client.post(
            f"/v1/subscriptions/{sub['id']}/cancel", json={"refund": "prorated"}, headers=AUTH
        ).json()
    )
    for kind, model in (
        ("subscriptions", so.SubscriptionList),
        ("invoices", so.InvoiceList),
        ("payments", so.PaymentList),
    ):
        model.model_validate(client.get(f"/v1/users/n_1/{kind}", headers=AUTH).json())
    so.PaymentOut.model_validate(
        client.post(
            "/v1/users/n_1/offline-payments",
            json={"amount": 5, "currency": "EUR", "reference": "r"},
            headers=AUTH,
        ).json()
    )
    so.RefundOut.model_validate(
        client.post(
            "/v1/users/n_1/offline-refunds",
            json={"amount": 5, "currency": "EUR", "reference": "r"},
            headers=AUTH,
        ).json()
    )
    for response in (
        client.get("/v1/users/nobody/bundle", headers=AUTH),
        client.get("/v1/users/nobody/bundle"),
        post_import(client, {"user_id": 5}),
    ):
        assert response.status_code >= 400
        so.ErrorOut.model_validate(response.json())
