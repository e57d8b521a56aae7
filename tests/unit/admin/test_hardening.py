"""Issue 11, admin items: each test here failed on the code before the fix.

Security headers, X-Forwarded-For believed only from trusted proxies, audited throttled
sign-ins / refused money actions / CSV exports, CSV formula escaping, banners kept in the
session (never from the URL), "session expired" after a purge, and nothing slow on the
event loop.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import io
import re
import threading
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from admin.models import AdminSession
from admin.web import auth
from admin.web.auth import MAX_FAILURES_PER_EMAIL
from admin.web.security import forwarded_client, parse_proxies
from admin.web.views_finance import cell
from core.audit import AuditEntry
from core.db import transaction, utcnow
from core.errors import ConfigurationError
from tests.unit.admin.conftest import PASSWORD
from tests.unit.admin.test_access import admin_routes


def _entries(admin, action):
    with admin.ctx.sessions() as s:
        return list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def _login_form(client):
    page = client.get("/admin/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


# -- headers -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/admin/login", "/healthz", "/admin/static/admin.css"])
def test_security_headers_on_every_answer(admin, path):
    resp = admin.client.get(path)
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "same-origin"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in resp.headers  # plain HTTP: no HSTS


def test_hsts_only_over_tls(admin):
    with TestClient(admin.client.app, base_url="https://testserver") as tls:
        assert "max-age=" in tls.get("/admin/login").headers["strict-transport-security"]
    # a forged X-Forwarded-Proto from an untrusted peer does not turn HSTS on
    resp = admin.client.get("/admin/login", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in resp.headers


def test_security_headers_on_the_csv_stream(admin):
    c = admin.login("finance")
    resp = c.get("/admin/finance/offline.csv")
    assert resp.status_code == 200 and resp.headers["x-frame-options"] == "DENY"


# -- X-Forwarded-For ---------------------------------------------------------------------
def test_forwarded_for_is_ignored_without_trusted_proxies():
    assert forwarded_client("203.0.113.9", "1.2.3.4", ()) == "203.0.113.9"
    proxies = parse_proxies("10.0.0.0/8, 127.0.0.1")
    # from an untrusted peer the header is the attacker's word
    assert forwarded_client("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"
    # from a trusted proxy: the first address from the right that is not a proxy
    assert forwarded_client("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.0.0.2", proxies) == (
        "198.51.100.7"
    )
    assert forwarded_client("127.0.0.1", "garbage, 10.1.1.1", proxies) == "10.1.1.1"
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
        parse_proxies("10.0.0.0/8, not-an-ip")


def test_sign_in_audit_and_throttle_ignore_a_forged_forwarded_for(admin):
    c = admin.client
    for i in range(3):
        token = _login_form(c)
        c.post(
            "/admin/login",
            data={"email": "support@example.test", "password": "wrong", "csrf_token": token},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
    ips = {e.after["ip"] for e in _entries(admin, "admin.login_failed")}
    assert ips == {"testclient"}  # the peer, not what the client claimed


def test_serve_does_not_let_uvicorn_rewrite_the_peer_from_forwarded_for():
    """uvicorn's proxy_headers=True believes X-Forwarded-For from any local peer (its
    default forwarded_allow_ips is 127.0.0.1): every ``uvicorn.run``/``Config`` call of
    the CLI must turn it off, the admin reads the header itself from trusted proxies only."""
    import ast
    from pathlib import Path

    cli = Path(__file__).resolve().parents[3] / "admin" / "cli"
    calls = [
        node
        for path in cli.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "uvicorn"
        and node.func.attr in ("run", "Config")
    ]
    assert calls, "twinbill serve no longer calls uvicorn.run/Config: update this test"
    for call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        assert "proxy_headers" in kw, ast.unparse(call)
        assert isinstance(kw["proxy_headers"], ast.Constant) and kw["proxy_headers"].value is False


# -- audit of throttled sign-ins, refused money, exports ---------------------------------
def test_throttled_sign_in_is_audited(admin):
    c = admin.client
    for _ in range(MAX_FAILURES_PER_EMAIL):
        token = _login_form(c)
        c.post(
            "/admin/login",
            data={"email": "support@example.test", "password": "nope", "csrf_token": token},
        )
    token = _login_form(c)
    resp = c.post(
        "/admin/login",
        data={"email": "support@example.test", "password": PASSWORD, "csrf_token": token},
    )
    assert resp.status_code == 429
    (entry,) = _entries(admin, "admin.login_throttled")
    assert entry.resource_id == "s***@example.test" and entry.after["ip"] == "testclient"


def test_refused_money_action_is_audited_and_nothing_written(admin):
    c = admin.login("support")
    token = admin.csrf()
    resp = c.post(
        "/admin/users/u_3/offline/payment",  # u_3 is being migrated
        data={"csrf_token": token, "amount": "5", "currency": "EUR", "reference": "R-MIG"},
    )
    assert resp.status_code == 409 and "being migrated" in resp.text
    (entry,) = _entries(admin, "support.money_refused")
    assert entry.actor == "user:support@example.test" and entry.resource_id == "u_3"
    assert entry.after["kind"] == "payment" and entry.after["refused"] == "UserMigrating"
    assert admin.legacy.payments == {}


def _record(admin, c, reference, reason):
    token = admin.csrf()
    resp = c.post(
        "/admin/users/u_1/offline/payment",
        data={"csrf_token": token, "amount": "7.00", "reference": reference, "reason": reason},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text


def test_csv_export_escapes_formulas_and_is_audited(admin):
    c = admin.login("support")
    _record(admin, c, '=HYPERLINK("http://evil.test","x")', "@SUM(A1:A9)")
    _record(admin, c, "+1-555", "-2+3")
    _record(admin, c, "BANK-OK", "paid 12.50")
    c = admin.login("finance")
    resp = c.get("/admin/finance/offline.csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    cells = {(r["reference"], r["reason"]) for r in rows}
    assert cells == {
        ('\'=HYPERLINK("http://evil.test","x")', "'@SUM(A1:A9)"),
        ("'+1-555", "'-2+3"),
        ("BANK-OK", "paid 12.50"),
    }
    assert [cell("\tx"), cell("\rx"), cell("a=b"), cell(None)] == ["'\tx", "'\rx", "a=b", ""]
    assert all(not r["actor"].startswith(("=", "+", "-", "@")) for r in rows)
    (entry,) = _entries(admin, "finance.offline_export")
    assert entry.actor == "user:finance@example.test" and entry.after["rows"] == 3


# -- banners -----------------------------------------------------------------------------
def test_banner_from_a_crafted_link_is_not_shown(admin):
    c = admin.login("support")
    crafted = "Refund of €10,000.00 approved by finance"
    for path in ("/admin/users/u_1", "/admin/search"):
        page = c.get(path, params={"notice": crafted, "error": "Your account is locked"}).text
        assert crafted not in page and "account is locked" not in page


def test_banner_after_an_action_comes_from_the_session_once(admin):
    c = admin.login("support")
    token = admin.csrf()
    resp = c.post(
        "/admin/users/u_1/offline/payment",
        data={"csrf_token": token, "amount": "12.50", "reference": "BANK-FLASH"},
        follow_redirects=False,
    )
    assert resp.status_code == 303 and "?" not in resp.headers["location"]
    first = c.get(resp.headers["location"]).text
    assert "Recorded: €12.50 offline payment" in first
    assert "Recorded: €12.50" not in c.get(resp.headers["location"]).text  # shown once


# -- session expired ---------------------------------------------------------------------
def test_session_expired_is_shown_even_after_the_purge(admin):
    c = admin.login("support")
    cookie = next(x for x in c.cookies.jar if x.name == "tb_admin")
    assert cookie.expires is None or cookie.expires - utcnow().timestamp() > (
        admin.ctx.settings.session_max_age
    )  # the browser keeps it past the session, so the server can say "expired"
    with transaction(admin.ctx.sessions) as s:
        s.execute(sa.update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert admin.client.app.state.admin.auth.purge_expired() == 1
    resp = c.get("/admin/users/u_1", follow_redirects=False)
    assert resp.status_code == 303 and "expired=1" in resp.headers["location"]
    assert "Your session expired" in c.get(resp.headers["location"]).text


# -- nothing slow on the event loop ------------------------------------------------------
BLOCKING_OK: set[str] = set()  # async admin handlers allowed (none: they all touch the DB)


def test_no_admin_handler_runs_on_the_event_loop(admin):
    on_loop = {
        f"{sorted(r.methods)[0]} {r.path}"
        for r in admin_routes(admin.client.app)
        if inspect.iscoroutinefunction(r.endpoint)
    }
    assert on_loop <= BLOCKING_OK, on_loop


def test_a_slow_sign_in_does_not_stall_the_gateway(admin, monkeypatch):
    """argon2 (or any slow admin work) must run in the thread pool: while a sign-in is
    being verified, /healthz on the same event loop still answers."""
    gate, entered, verified = threading.Event(), threading.Event(), threading.Event()
    real = auth._hasher

    class SlowHasher:
        def verify(self, hashed, password):
            entered.set()
            gate.wait(8)  # released by the test, or by this timeout on a blocked loop
            verified.set()
            return real.verify(hashed, password)

        def check_needs_rehash(self, hashed):
            return False

        def hash(self, password):
            return real.hash(password)

    monkeypatch.setattr(auth, "_hasher", SlowHasher())

    async def scenario() -> bool:
        transport = httpx.ASGITransport(app=admin.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            token = re.search(
                r'name="csrf_token" value="([^"]+)"', (await c.get("/admin/login")).text
            ).group(1)
            data = {"email": "support@example.test", "password": PASSWORD, "csrf_token": token}
            login = asyncio.create_task(c.post("/admin/login", data=data))
            while not entered.is_set() and not login.done():
                await asyncio.sleep(0.01)
            health = await c.get("/healthz")
            answered_while_verifying = not verified.is_set()
            gate.set()
            assert health.status_code == 200
            assert (await login).status_code == 303
            return answered_while_verifying

    assert asyncio.run(scenario()), "the event loop was blocked by the sign-in"
