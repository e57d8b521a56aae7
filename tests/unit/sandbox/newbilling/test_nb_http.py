"""Cross-cutting HTTP behaviour: auth, limits, errors, export, the committed OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

from nb_helpers import AUTH, post_import, row_counts

from sandbox.newbilling.samples import sample_import

OPENAPI = Path(__file__).resolve().parents[4] / "docs" / "contract" / "newbilling.openapi.json"


def test_healthz_is_unauthenticated(client):
    assert client.get("/healthz").json() == {"ok": True}


def test_unauthenticated_requests_are_401_json(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dTpw"}):
        response = client.post(
            "/v1/imports", json=sample_import("u_1"), headers={**headers, "Idempotency-Key": "k"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthenticated"
        assert client.get("/v1/users/u_1/bundle", headers=headers).status_code == 401
    assert row_counts(client)["nb_customers"] == 0


def test_body_over_one_megabyte_is_413_and_writes_nothing(client):
    payload = sample_import("u_1")
    payload["customer"]["metadata"] = {f"k{i}": "x" * 1000 for i in range(1100)}
    response = post_import(client, payload)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"
    assert row_counts(client)["nb_customers"] == 0


def test_malformed_json_is_422_with_clear_message(client):
    response = client.post(
        "/v1/imports",
        content=b'{"user_id": "u_1",',
        headers={**AUTH, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "malformed_json" and "not valid JSON" in error["message"]
    assert row_counts(client)["nb_imports"] == 0


def test_unknown_route_uses_error_shape(client):
    response = client.get("/v1/nope", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"


def test_rate_limit_answers_429_with_retry_after(make_client):
    client = make_client(rate_limit=3)
    codes = [client.get("/v1/users/x/bundle", headers=AUTH).status_code for _ in range(5)]
    assert codes[:3] == [404, 404, 404] and codes[3:] == [429, 429]
    limited = client.get("/v1/users/x/bundle", headers=AUTH)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limited"
    # the budget is per token: another token is not affected
    other = client.get("/v1/users/x/bundle", headers={"Authorization": "Bearer other-token"})
    assert other.status_code == 404


def test_export_streams_ndjson_of_all_users_with_status_filter(client, monkeypatch):
    from sandbox.newbilling import routes_imports

    monkeypatch.setattr(routes_imports, "EXPORT_BATCH", 2)  # force several keyset pages
    ids = {}
    for n in range(5):
        ids[f"u_{n}"] = post_import(client, sample_import(f"u_{n}"), key=f"k{n}").json()["id"]
    for n in (0, 2, 4):
        client.post(f"/v1/imports/{ids[f'u_{n}']}/activate", headers=AUTH)
    client.post("/v1/users/native/customer", json={"currency": "EUR"}, headers=AUTH)

    with client.stream("GET", "/v1/export", headers=AUTH) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [b["user_id"] for b in lines] == ["native", "u_0", "u_1", "u_2", "u_3", "u_4"]
    assert lines[1]["invoices"][0]["total"] == 1999

    def users(status: str) -> list[str]:
        text = client.get(f"/v1/export?status={status}", headers=AUTH).text
        return [json.loads(line)["user_id"] for line in text.splitlines()]

    assert users("active") == ["native", "u_0", "u_2", "u_4"]
    assert users("pending") == ["u_1", "u_3"]


def test_committed_openapi_matches_the_app(client):
    committed = json.loads(OPENAPI.read_text())
    generated = json.loads(json.dumps(client.app.openapi(), sort_keys=True))
    assert committed == generated, (
        "docs/contract/newbilling.openapi.json is stale: regenerate with "
        "`python -m sandbox.newbilling openapi > docs/contract/newbilling.openapi.json`"
    )
