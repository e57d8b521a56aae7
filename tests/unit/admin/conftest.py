from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from admin.app import create_app
from admin.bootstrap import App, bootstrap
from admin.web.auth import create_user
from core import dbschema
from core.canonical import System
from core.db import transaction
from core.settings import load_settings
from multiplexer import routing
from tests.fakes.billing import FakeBillingBackend

PASSWORD = "correct horse battery"
ROLES = ("support", "finance", "developer", "admin")


@dataclass
class Admin:
    ctx: App
    client: TestClient
    legacy: FakeBillingBackend
    new: FakeBillingBackend

    def login(self, role: str, client: TestClient | None = None) -> TestClient:
        client = client or self.client
        client.cookies.clear()
        form = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        resp = client.post(
            "/admin/login",
            data={"email": f"{role}@example.test", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text
        return client

    def csrf(self, path: str = "/admin/search") -> str:
        page = self.client.get(path)
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def add_user(
    ctx: App,
    backend: FakeBillingBackend,
    user_id: str,
    *,
    system: str,
    email: str,
    name: str,
    currency: str = "EUR",
    state: str | None = None,
) -> None:
    cus = backend.create_customer(
        user_id, email=email, name=name, currency=currency, idempotency_key=f"k-{user_id}"
    )
    ids = {"legacy_customer_id": cus.id} if system == "legacy" else {"new_customer_id": cus.id}
    with transaction(ctx.sessions) as session:
        routing.create_route(
            session,
            user_id,
            system=system,
            actor="test",
            reason="test",
            email=email,
            name=name,
            currency=currency,
            cache=ctx.cache,
            **ids,
        )
        if state == "migrating":
            routing.transition(
                session, user_id, "migrating", actor="test", reason="test", cache=ctx.cache
            )


@pytest.fixture
def admin(tmp_path) -> Admin:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    dbschema.upgrade(url)
    settings = load_settings(
        database_url=url, secret_key="test-secret-key-0123456789", max_amount_major=10_000
    )
    legacy = FakeBillingBackend("legacy", System.LEGACY)
    new = FakeBillingBackend("new", System.NEW)
    ctx = bootstrap(settings, backends={"legacy": legacy, "new": new})
    for role in ROLES:
        create_user(ctx.sessions, f"{role}@example.test", role, PASSWORD, actor="test")
    add_user(ctx, new, "u_1", system="new", email="alice@example.test", name="Alice Martin")
    add_user(ctx, legacy, "u_2", system="legacy", email="bob@example.test", name="Bob Stone")
    add_user(
        ctx,
        legacy,
        "u_3",
        system="legacy",
        email="carol@example.test",
        name="Carol Jones",
        state="migrating",
    )
    add_user(
        ctx, new, "u_4", system="new", email="dan@example.test", name="Dan Yen", currency="JPY"
    )
    client = TestClient(create_app(ctx))
    yield Admin(ctx, client, legacy, new)
    client.close()
    ctx.close()
