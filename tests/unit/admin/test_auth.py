"""Sign-in, sessions that expire, throttling, CSRF, the secret key."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from admin.app import create_app
from admin.bootstrap import bootstrap
from admin.models import AdminSession, AdminUser
from admin.web.auth import MAX_FAILURES_PER_EMAIL, mask_email
from core.audit import AuditEntry
from core.db import transaction, utcnow
from core.errors import ConfigurationError
from core.settings import load_settings
from tests.fakes.billing import FakeBillingBackend
from tests.unit.admin.conftest import PASSWORD


def _login(client, email, password, *, token=None):
    form = client.get("/admin/login")
    token = token or re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def test_password_is_argon2_and_login_sets_session(admin):
    with admin.ctx.sessions() as s:
        user = s.scalars(
            sa.select(AdminUser).where(AdminUser.email == "support@example.test")
        ).one()
    assert user.password_hash.startswith("$argon2id$")
    resp = _login(admin.client, "support@example.test", PASSWORD)
    assert resp.status_code == 303
    cookie = admin.client.cookies.get("tb_admin")
    with admin.ctx.sessions() as s:
        row = s.scalars(sa.select(AdminSession)).one()
    assert row.id != cookie  # only a keyed hash of the token is stored
    assert admin.client.get("/admin/search").status_code == 200


def test_wrong_password_refused_and_audited_with_masked_email(admin):
    resp = _login(admin.client, "support@example.test", "nope nope nope")
    assert resp.status_code == 401 and "Email or password is wrong" in resp.text
    with admin.ctx.sessions() as s:
        entry = s.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "admin.login_failed")
        ).one()
    assert entry.resource_id == "s***@example.test"


def test_login_without_csrf_is_refused(admin):
    admin.client.get("/admin/login")
    resp = admin.client.post(
        "/admin/login",
        data={"email": "support@example.test", "password": PASSWORD},
        follow_redirects=False,
    )
    assert resp.status_code == 403 and "security token" in resp.text


def test_throttle_per_email(admin):
    for _ in range(MAX_FAILURES_PER_EMAIL):
        assert _login(admin.client, "support@example.test", "wrong wrong wrong").status_code == 401
    resp = _login(admin.client, "support@example.test", PASSWORD)  # even the right password
    assert resp.status_code == 429
    assert "Too many failed sign-ins for this account" in resp.text
    assert resp.headers["retry-after"]
    assert _login(admin.client, "finance@example.test", PASSWORD).status_code == 303


def test_throttle_per_ip(admin):
    for i in range(20):
        _login(admin.client, f"nobody{i}@example.test", "wrong wrong wrong")
    resp = _login(admin.client, "finance@example.test", PASSWORD)
    assert resp.status_code == 429 and "from this address" in resp.text


def test_expired_session_redirects_and_refuses_posts(admin):
    c = admin.login("support")
    token = admin.csrf()
    with transaction(admin.ctx.sessions) as s:
        s.execute(sa.update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = c.get("/admin/users/u_1", follow_redirects=False)
    assert resp.status_code == 303 and "expired=1" in resp.headers["location"]
    assert "Your session expired" in c.get(resp.headers["location"]).text
    c = admin.login("support")
    with transaction(admin.ctx.sessions) as s:
        s.execute(sa.update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = c.post(
        "/admin/users/u_1/offline/payment",
        data={"csrf_token": token, "amount": "5", "currency": "EUR", "reference": "R-EXP"},
    )
    assert resp.status_code == 401 and "session expired" in resp.text
    assert admin.new.payments == {}


@pytest.mark.parametrize("token", [None, "stale-token-from-another-session"])
def test_missing_or_stale_csrf_is_403_and_writes_nothing(admin, token):
    c = admin.login("support")
    data = {"amount": "5", "currency": "EUR", "reference": "R-CSRF"}
    if token:
        data["csrf_token"] = token
    resp = c.post("/admin/users/u_1/offline/payment", data=data)
    assert resp.status_code == 403
    assert ("missing" if token is None else "stale") in resp.text
    assert admin.new.payments == {}
    with admin.ctx.sessions() as s:
        assert (
            s.scalar(sa.select(sa.func.count()).where(AuditEntry.action == "admin.csrf_rejected"))
            == 1
        )


def test_token_of_previous_session_is_stale(admin):
    admin.login("support")
    old = admin.csrf()
    c = admin.login("support")
    resp = c.post(
        "/admin/users/u_1/offline/payment",
        data={"csrf_token": old, "amount": "5", "currency": "EUR", "reference": "R-OLD"},
    )
    assert resp.status_code == 403 and "stale" in resp.text


def test_logout_ends_the_session(admin):
    c = admin.login("support")
    c.post("/admin/logout", data={"csrf_token": admin.csrf()})
    assert c.get("/admin/search", follow_redirects=False).status_code == 303


def test_admin_refuses_to_start_without_secret_key(tmp_path):
    ctx = bootstrap(
        load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"),
        backends={"legacy": FakeBillingBackend(), "new": FakeBillingBackend()},
    )
    with pytest.raises(ConfigurationError, match="TWINBILL_SECRET_KEY"):
        create_app(ctx)
    ctx.close()


def test_open_redirect_is_ignored(admin):
    form = admin.client.get("/admin/login?next=https://evil.test/")
    assert 'value="/admin/search"' in form.text


def test_mask_email():
    assert mask_email("alice@example.test") == "a***@example.test"
    assert mask_email(None) == "***"


def test_logs_never_show_full_email(admin, caplog):
    _login(admin.client, "support@example.test", "wrong wrong wrong")
    assert "support@example.test" not in caplog.text
    assert TestClient  # imported for type clarity
