"""The HTTP gateway in process: ``create_app(ctx)`` under ``TestClient`` over two fakes.

Every bad request gets a clear error and reaches neither system: the fakes'
whole state is compared before and after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from admin.app import create_app
from admin.bootstrap import App, bootstrap
from core import dbschema
from core.canonical import Interval, Plan, System
from core.db import transaction
from core.settings import load_settings
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.models import ApiToken
from multiplexer.placement import set_policy
from multiplexer.tokens import create_token, revoke_token
from tests.fakes.billing import FakeBillingBackend

EUR_BASIC = Plan(
    id="plan_basic_eur", currency="EUR", product_name="Basic", unit_amount=990,
    interval=Interval.MONTH,
)  # fmt: skip
EUR_PRO = EUR_BASIC.model_copy(update={"id": "plan_pro_eur", "unit_amount": 1990})
CEILING_MAJOR = 1000
SECRET_KEY = "unit-secret-key-0123456789"


def state_of(backend: FakeBillingBackend) -> tuple[str, ...]:
    records = (backend.customers, backend.subs, backend.invoices, backend.payments, backend.refunds)
    return tuple(r.model_dump_json() for group in records for r in group.values())


class Gateway:
    def __init__(self, ctx: App, client: TestClient, token: str) -> None:
        self.ctx, self.client, self.token = ctx, client, token
        self.legacy: FakeBillingBackend = ctx.legacy
        self.new: FakeBillingBackend = ctx.new
        self.auth = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **kw):
        return self.client.get(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, body=None, **kw):
        return self.client.post(
            path, json=body, headers={**self.auth, **kw.pop("headers", {})}, **kw
        )

    def backend(self, system: str) -> FakeBillingBackend:
        return self.legacy if system == "legacy" else self.new

    def writes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return state_of(self.legacy), state_of(self.new)

    def user(self, user_id: str, system: str, state: str | None = None) -> str:
        backend = self.backend(system)
        cus = backend.create_customer(
            user_id, email=None, name=user_id, currency="EUR", idempotency_key=f"c-{user_id}"
        )
        ids = {f"{system}_customer_id": cus.id}
        with transaction(self.ctx.sessions) as s:
            routing.create_route(
                s, user_id, system=system, actor="t", reason="t", currency="EUR", **ids
            )
        sub = backend.create_subscription(
            UserRef(user_id, ids.get("legacy_customer_id"), ids.get("new_customer_id")),
            EUR_BASIC,
            quantity=1,
            trial_days=None,
            idempotency_key=f"s-{user_id}",
        )
        for step in {"held": ["held"], "failed": ["migrating", "failed"]}.get(
            state or "", [state] if state else []
        ):
            with transaction(self.ctx.sessions) as s:
                routing.transition(s, user_id, step, actor="t", reason="t", cache=self.ctx.cache)
        return sub.id


@pytest.fixture
def gw(tmp_path) -> Iterator[Gateway]:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    dbschema.upgrade(url)
    legacy = FakeBillingBackend("legacy", System.LEGACY)
    legacy.plans.update({EUR_BASIC.id: EUR_BASIC, EUR_PRO.id: EUR_PRO})
    settings = load_settings(
        database_url=url, secret_key=SECRET_KEY, max_amount_major=CEILING_MAJOR
    )
    ctx = bootstrap(settings, backends={"legacy": legacy, "new": FakeBillingBackend("new")})
    with transaction(ctx.sessions) as s:
        token = create_token(s, "app", actor="test")
    with TestClient(create_app(ctx)) as client:
        g = Gateway(ctx, client, token)
        g.user("u_legacy", "legacy")
        g.user("u_new", "new")
        yield g
    ctx.close()


def _error(resp, status: int, kind: str, text: str = "") -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["type"] == kind, body
    assert text.lower() in json.dumps(body).lower(), body
    return body


# -- routing and shapes -------------------------------------------------------------------


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_reads_are_served_by_the_users_system(gw, system):
    user, other = f"u_{system}", gw.backend("new" if system == "legacy" else "legacy")
    calls = len(other.calls)
    summary = gw.get(f"/api/v1/users/{user}/summary").json()
    assert summary["system"] == system and summary["user_id"] == user
    assert len(gw.get(f"/api/v1/users/{user}/subscriptions").json()) == 1
    assert len(gw.get(f"/api/v1/users/{user}/invoices").json()) == 1
    assert len(gw.get(f"/api/v1/users/{user}/payments").json()) == 1
    assert len(other.calls) == calls


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_writes_are_served_by_the_users_system(gw, system):
    user = f"u_{system}"
    mine, theirs = gw.backend(system), gw.backend("new" if system == "legacy" else "legacy")
    untouched = state_of(theirs)
    resp = gw.post(f"/api/v1/users/{user}/subscriptions", {"plan_code": "plan_basic_eur"})
    assert resp.status_code == 201, resp.text
    sub = resp.json()["id"]
    assert sub in mine.subs
    resp = gw.post(
        f"/api/v1/users/{user}/subscriptions/{sub}/change-plan", {"plan_code": "plan_pro_eur"}
    )
    assert resp.json()["items"][0]["plan_code"] == "plan_pro_eur"
    resp = gw.post(f"/api/v1/users/{user}/subscriptions/{sub}/cancel", {"at_period_end": True})
    assert resp.json()["cancel_at_period_end"] is True
    payment = gw.get(f"/api/v1/users/{user}/payments").json()[0]["id"]
    resp = gw.post(
        f"/api/v1/users/{user}/payments/{payment}/refunds", {"amount": 90, "currency": "EUR"}
    )
    assert resp.status_code == 201 and resp.json()["amount"] == 90
    assert state_of(theirs) == untouched


def test_new_user_is_placed_by_the_rollout_policy(gw):
    with transaction(gw.ctx.sessions) as s:
        set_policy(s, actor="test", new_users_percent="100")
    resp = gw.post("/api/v1/users", {"user_id": "fresh", "currency": "eur"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["currency"] == "EUR" and "fresh" in gw.new.customers
    assert gw.get("/api/v1/users/fresh/summary").json()["system"] == "new"
    _error(gw.post("/api/v1/users", {"user_id": "fresh", "currency": "EUR"}), 422,
           "invalid_input", "already exists")  # fmt: skip


# -- write guards ---------------------------------------------------------------------------


def _writes_for(gw: Gateway, user: str, sub: str) -> list[tuple[str, dict]]:
    owners = {**gw.legacy.owner, **gw.new.owner}
    payment = next((p for p, u in owners.items() if p.startswith("py") and u == user), "py_x")
    base = f"/api/v1/users/{user}"
    return [
        (f"{base}/subscriptions", {"plan_code": "plan_basic_eur"}),
        (f"{base}/subscriptions/{sub}/change-plan", {"plan_code": "plan_pro_eur"}),
        (f"{base}/subscriptions/{sub}/cancel", {"at_period_end": False}),
        (f"{base}/payments/{payment}/refunds", {}),
        (f"{base}/offline-payments", {"amount": 500, "currency": "EUR", "reference": "b1"}),
        (f"{base}/offline-refunds", {"amount": 500, "currency": "EUR", "reference": "b2"}),
    ]


def test_migrating_user_writes_get_409_with_retry_after_and_reads_work(gw):
    sub = gw.user("u_mig", "legacy", state="migrating")
    before = gw.writes()
    for path, body in _writes_for(gw, "u_mig", sub):
        resp = gw.post(path, body)
        _error(resp, 409, "user_migrating", "retry")
        assert int(resp.headers["Retry-After"]) > 0, path
    assert gw.writes() == before
    assert gw.get("/api/v1/users/u_mig/summary").status_code == 200
    assert [s["id"] for s in gw.get("/api/v1/users/u_mig/subscriptions").json()] == [sub]


@pytest.mark.parametrize("state", ["held", "failed"])
def test_held_and_failed_users_are_read_only(gw, state):
    sub = gw.user("u_ro", "legacy", state=state)
    before = gw.writes()
    for path, body in _writes_for(gw, "u_ro", sub):
        resp = gw.post(path, body)
        _error(resp, 409, "user_read_only", f"is {state}")
        assert "Retry-After" not in resp.headers
    assert gw.writes() == before
    for what in ("summary", "subscriptions", "invoices", "payments"):
        assert gw.get(f"/api/v1/users/u_ro/{what}").status_code == 200


def test_unknown_user_is_404_for_reads_and_writes(gw):
    before = gw.writes()
    for what in ("summary", "subscriptions", "invoices", "payments"):
        _error(gw.get(f"/api/v1/users/nobody/{what}"), 404, "unknown_user", "nobody")
    for path, body in _writes_for(gw, "u_legacy", "sub_x"):
        path = path.replace("u_legacy", "nobody")
        _error(gw.post(path, body), 404, "unknown_user", "nobody")
    assert gw.writes() == before


OFFLINE = "/api/v1/users/{user}/offline-payments"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"amount": 0, "currency": "EUR", "reference": "r"}, "greater than zero"),
        ({"amount": -5, "currency": "EUR", "reference": "r"}, "greater than zero"),
        ({"amount": CEILING_MAJOR * 100 + 1, "currency": "EUR", "reference": "r"}, "ceiling"),
        ({"amount": 500, "currency": "USD", "reference": "r"}, "billed in EUR, not USD"),
        ({"amount": 500, "currency": "XYZ", "reference": "r"}, "unknown currency"),
        ({"amount": 500, "currency": "EUR", "reference": "r", "extra": 1}, "extra"),
        ({"amount": "5.00", "currency": "EUR", "reference": "r"}, "amount"),
        ({"amount": 500, "currency": "EUR"}, "reference"),
        ({"amount": 500, "currency": "EUR", "reference": "  "}, "reference"),
        (
            {"amount": 500, "currency": "EUR", "reference": "r", "paid_at": "2025-01-01T00:00"},
            "timezone",
        ),
    ],
)
@pytest.mark.parametrize("system", ["legacy", "new"])
def test_bad_offline_payment_is_422_and_writes_nothing(gw, system, body, text):
    before = gw.writes()
    _error(gw.post(OFFLINE.format(user=f"u_{system}"), body), 422, "invalid_input", text)
    assert gw.writes() == before


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"amount": 0, "currency": "EUR"}, "greater than zero"),
        ({"amount": 10**9, "currency": "EUR"}, "ceiling"),
        ({"amount": 100, "currency": "GBP"}, "billed in EUR"),
        ({"amount": 100}, "currency is required"),
        ({"amount": 100, "currency": "EUR", "everything": True}, "extra"),
    ],
)
def test_bad_refund_is_422_and_writes_nothing(gw, body, text):
    payment = next(p for p, u in gw.new.owner.items() if p.startswith("py") and u == "u_new")
    before = gw.writes()
    resp = gw.post(f"/api/v1/users/u_new/payments/{payment}/refunds", body)
    _error(resp, 422, "invalid_input", text)
    assert gw.writes() == before


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"plan_code": ', b"[]", b'"plan"', b"", b'{"plan_code": null}'],
)
def test_malformed_json_is_422(gw, raw):
    before = gw.writes()
    resp = gw.client.post(
        "/api/v1/users/u_legacy/subscriptions",
        content=raw,
        headers={**gw.auth, "Content-Type": "application/json"},
    )
    _error(resp, 422, "invalid_input", "does not match")
    assert gw.writes() == before


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        ("/api/v1/users/u_legacy/subscriptions", {"plan_code": "plan_basic_eur", "x": 1}, "extra"),
        ("/api/v1/users/u_legacy/subscriptions", {"plan_code": "p", "quantity": 0}, "quantity"),
        ("/api/v1/users", {"user_id": "a b", "currency": "EUR"}, "user_id"),
        ("/api/v1/users", {"user_id": "ok", "currency": "XYZ"}, "unknown currency"),
        ("/api/v1/users", {"user_id": "ok", "currency": "EUR", "admin": True}, "extra"),
    ],
)
def test_extra_and_out_of_range_fields_are_422(gw, path, body, text):
    before = gw.writes()
    _error(gw.post(path, body), 422, "invalid_input", text)
    assert gw.writes() == before


def test_plan_in_another_currency_is_422(gw):
    gw.legacy.plans["plan_basic_jpy"] = EUR_BASIC.model_copy(
        update={"id": "plan_basic_jpy", "currency": "JPY", "unit_amount": 1200}
    )
    before = gw.writes()
    resp = gw.post("/api/v1/users/u_new/subscriptions", {"plan_code": "plan_basic_jpy"})
    _error(resp, 422, "invalid_input", "JPY")
    assert gw.writes() == before


def test_body_over_one_megabyte_is_413(gw):
    before = gw.writes()
    big = {"amount": 500, "currency": "EUR", "reference": "r", "note": "x" * (1024 * 1024)}
    resp = gw.post(OFFLINE.format(user="u_new"), big)
    _error(resp, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the counting receive must catch it
        yield b'{"amount": 500, "currency": "EUR", "reference": "r", "note": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    resp = gw.client.post(
        OFFLINE.format(user="u_new"),
        content=chunks(),
        headers={**gw.auth, "Content-Type": "application/json"},
    )
    _error(resp, 413, "body_too_large")
    assert gw.writes() == before


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer tbk_wrong", "Bearer nope"],
)
def test_missing_or_bad_token_is_401(gw, header):
    before = gw.writes()
    headers = {} if header is None else {"Authorization": header}
    for resp in (
        gw.client.get("/api/v1/users/u_new/summary", headers=headers),
        gw.client.post(
            OFFLINE.format(user="u_new"),
            json={"amount": 500, "currency": "EUR", "reference": "r"},
            headers=headers,
        ),
    ):
        _error(resp, 401, "unauthorized", "token")
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert gw.writes() == before


def test_revoked_token_is_401(gw):
    assert gw.get("/api/v1/users/u_new/summary").status_code == 200
    with transaction(gw.ctx.sessions) as s:
        revoke_token(s, "app", actor="test")
    _error(gw.get("/api/v1/users/u_new/summary"), 401, "unauthorized", "revoked")


def test_tokens_are_stored_hashed(gw, tmp_path):
    with gw.ctx.sessions() as s:
        row = s.scalar(sa.select(ApiToken).where(ApiToken.name == "app"))
        assert row.token_hash != gw.token and gw.token not in row.token_hash
        assert row.last_used_at is None
    assert gw.get("/api/v1/users/u_new/summary").status_code == 200
    gw.ctx.engine.dispose()
    raw = (tmp_path / "gw.db").read_bytes()
    assert gw.token.encode() not in raw, "the database file holds the secret"
    assert gw.token[4:].encode() not in raw
    with gw.ctx.sessions() as s:
        assert s.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.name == "app"))


# -- idempotency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_offline_payment_double_submit_is_one_payment(gw, system):
    backend = gw.backend(system)
    count = len(backend.payments)
    body = {"amount": 1500, "currency": "EUR", "reference": "BANK-7",
            "paid_at": "2025-02-01T10:00:00Z"}  # fmt: skip
    first = gw.post(OFFLINE.format(user=f"u_{system}"), body)
    second = gw.post(OFFLINE.format(user=f"u_{system}"), body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(backend.payments) == count + 1


def test_idempotency_key_header_dedupes_creates(gw):
    headers = {"Idempotency-Key": "app-req-1"}
    one = gw.post("/api/v1/users/u_new/subscriptions", {"plan_code": "plan_basic_eur"},
                  headers=headers)  # fmt: skip
    two = gw.post("/api/v1/users/u_new/subscriptions", {"plan_code": "plan_basic_eur"},
                  headers=headers)  # fmt: skip
    assert one.json()["id"] == two.json()["id"]
    assert sum(1 for s in gw.new.subs if gw.new.owner[s] == "u_new") == 2
