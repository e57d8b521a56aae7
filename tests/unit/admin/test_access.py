"""Every admin route is in the access table and refuses the wrong role, audited."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute

from admin.web.access import PUBLIC, ROUTE_ROLES
from core.audit import AuditEntry
from tests.unit.admin.conftest import ROLES

SAMPLE = {
    "user_id": "u_1",
    "kind": "payment",
    "action": "hold",
    "name": "c1",
    "migration_id": "mig_x",
    "report_id": "1",
    "message_id": "1",
}


def _walk(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)


def admin_routes(app):
    return [r for r in _walk(app.routes) if r.path.startswith("/admin")]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def test_every_admin_route_is_in_the_table(admin):
    keys = {f"{m} {r.path}" for r in admin_routes(admin.client.app) for m in r.methods}
    assert keys, "no admin routes found"
    assert keys == set(ROUTE_ROLES), keys ^ set(ROUTE_ROLES)


def test_every_protected_route_refuses_anonymous(admin):
    c = admin.client
    c.cookies.clear()
    for route in admin_routes(c.app):
        for method in route.methods:
            if ROUTE_ROLES[f"{method} {route.path}"] == PUBLIC:
                continue
            resp = c.request(method, _url(route.path), follow_redirects=False)
            assert resp.status_code in (303, 401), (method, route.path, resp.status_code)
            if method == "GET":
                assert resp.headers["location"].startswith("/admin/login")


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(admin, role):
    c = admin.login(role)
    token = admin.csrf()
    for route in admin_routes(c.app):
        for method in route.methods:
            roles = ROUTE_ROLES[f"{method} {route.path}"]
            if roles == PUBLIC or route.path == "/admin/logout":
                continue
            data = {"csrf_token": token} if method == "POST" else None
            resp = c.request(method, _url(route.path), data=data, follow_redirects=False)
            if role in roles:
                assert resp.status_code != 403, (role, method, route.path)
            else:
                assert resp.status_code == 403, (role, method, route.path, resp.status_code)
                assert f"Your role ({role})" in resp.text


def test_permission_failure_is_audited(admin):
    c = admin.login("support")
    resp = c.get("/admin/cohorts")
    assert resp.status_code == 403
    assert "needs one of: admin, developer" in resp.text
    with admin.ctx.sessions() as s:
        entry = s.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "admin.permission_denied")
        ).one()
    assert entry.actor == "user:support@example.test"
    assert entry.resource_id == "GET /admin/cohorts"


def test_nav_shows_only_allowed_pages(admin):
    page = admin.login("support").get("/admin/search").text
    assert 'href="/admin/search"' in page and 'href="/admin/cohorts"' not in page
    page = admin.login("developer").get("/admin/search").text
    assert 'href="/admin/cohorts"' in page and 'href="/admin/finance/offline"' not in page
