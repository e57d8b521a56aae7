"""A migrated user rolled back to legacy, then imported again (TestClient on SQLite)."""

from __future__ import annotations

import copy

from nb_helpers import AUTH, post_import, row_counts

from sandbox.newbilling.samples import sample_import


def _rollback(client, import_id: str, key: str = "rb1", rollback_id: str = "mig_rb1"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/imports/{import_id}/rollback",
        json={"rollback_id": rollback_id},
        headers={**AUTH, "Idempotency-Key": key},
    )


def _active_user(client, user_id: str = "u_1") -> str:  # type: ignore[no-untyped-def]
    imp = post_import(client, sample_import(user_id)).json()["id"]
    activated = client.post(f"/v1/imports/{imp}/activate", headers={**AUTH, "Idempotency-Key": "a"})
    assert activated.status_code == 200, activated.text
    return imp


def test_rollback_cancels_every_subscription_and_keeps_history(client):
    imp = _active_user(client)
    before = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    preview = client.get("/v1/users/u_1/preview", headers=AUTH).json()
    assert [c["state"] for c in preview["subscriptions"]] == ["renewing"]

    answer = _rollback(client, imp)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "rolled_back"
    after = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    assert after["import"]["status"] == "rolled_back"
    (sub,) = after["subscriptions"]
    assert sub["status"] == "canceled" and sub["metadata"]["twinbill_rollback"] == "mig_rb1"
    assert after["invoices"] == before["invoices"]  # history readable, unchanged
    assert after["payments"] == before["payments"]
    assert (
        client.get("/v1/users/u_1/preview", headers=AUTH).json()["subscriptions"][0]["state"]
        == "none"
    )
    # again: the same answer, nothing more written
    assert _rollback(client, imp, key="rb2").json()["status"] == "rolled_back"
    # native operations are refused: the user lives in legacy now
    refused = client.post(
        f"/v1/subscriptions/{sub['id']}/cancel",
        json={},
        headers={**AUTH, "Idempotency-Key": "c"},
    )
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "user_rolled_back"


def test_rollback_of_a_pending_import_or_an_unpaid_user_writes_nothing(client):
    pending = post_import(client, sample_import("u_2")).json()["id"]
    counts = row_counts(client)
    answer = _rollback(client, pending)
    assert answer.status_code == 409 and answer.json()["error"]["type"] == "import_pending"
    payload = sample_import("u_3")
    payload["invoices"][-1].update(status="open", amount_paid=0)
    payload["invoices"][-1]["amount_due"] = payload["invoices"][-1]["total"]
    payload["payments"] = [
        p
        for p in payload["payments"]
        if p["invoice_external_id"] != payload["invoices"][-1]["external_id"]
    ]
    payload["refunds"] = [
        r
        for r in payload["refunds"]
        if r["payment_external_id"] in {p["external_id"] for p in payload["payments"]}
    ]
    created = post_import(client, payload, key="k3")
    assert created.status_code == 201, created.text
    imp = created.json()["id"]
    client.post(f"/v1/imports/{imp}/activate", headers={**AUTH, "Idempotency-Key": "a3"})
    counts = row_counts(client)
    answer = _rollback(client, imp, key="rb3")
    assert answer.status_code == 409 and answer.json()["error"]["type"] == "invoice_open"
    assert row_counts(client) == counts
    bundle = client.get("/v1/users/u_3/bundle", headers=AUTH).json()
    assert bundle["import"]["status"] == "active"


def test_import_again_after_a_rollback_keeps_what_the_user_holds(client):
    imp = _active_user(client)
    _rollback(client, imp)
    first = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    again = copy.deepcopy(sample_import("u_1"))
    recreated = copy.deepcopy(again["subscriptions"][0])
    recreated["external_id"] = "sub_recreated"
    recreated["items"][0]["external_id"] = "si_recreated"
    again["subscriptions"][0].update(status="canceled", canceled_at=recreated["created_at"])
    again["subscriptions"].append(recreated)
    again["customer"]["balance"] = -300
    response = post_import(client, again, key="k2")
    assert response.status_code == 201, response.text
    second = response.json()["id"]
    preview = client.get(f"/v1/imports/{second}/preview", headers=AUTH).json()
    assert preview["balance"] == -300
    assert [c["external_id"] for c in preview["subscriptions"]] == ["sub_recreated"]
    # a discard of the re-import leaves the user as the rollback left it
    client.delete(f"/v1/imports/{second}", headers={**AUTH, "Idempotency-Key": "d"})
    assert client.get("/v1/users/u_1/bundle", headers=AUTH).json() == first
    third = post_import(client, again, key="k3").json()["id"]
    client.post(f"/v1/imports/{third}/activate", headers={**AUTH, "Idempotency-Key": "a3"})
    bundle = client.get("/v1/users/u_1/bundle", headers=AUTH).json()
    assert bundle["import"] == {"id": third, "status": "active"}
    assert bundle["customer"]["id"] == first["customer"]["id"]
    assert bundle["customer"]["balance"] == -300
    assert sorted(s["external_id"] for s in bundle["subscriptions"]) == [
        "sub_recreated",
        "sub_u_1",
    ]
    assert len(bundle["invoices"]) == len(first["invoices"])  # not imported twice
