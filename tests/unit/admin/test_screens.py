"""Issue 14, admin screens: money as people read it, refunds on the billing panel, only
legal route actions, activity filters, cohort charts and members, typeahead, accounts,
dead-letter retry, the environment banner."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from admin.models import AdminSession, AdminUser
from admin.web.filters import money, version_diff
from core.audit import AuditEntry
from core.db import transaction, utcnow
from migration import cohorts
from migration.models import Migration
from multiplexer import routing
from multiplexer.models import OutboxMessage, Route
from tests.unit.admin.conftest import PASSWORD, add_user


def _entries(admin, action):
    with admin.ctx.sessions() as s:
        return list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def _post(admin, c, path, **data):
    token = admin.csrf()
    return c.post(path, data={"csrf_token": token, **data}, follow_redirects=False)


# -- money -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        (1200000, "JPY", "en_US", "¥1,200,000"),
        (1250, "EUR", "en_US", "€12.50"),
        (123456789, "USD", "en_US", "$1,234,567.89"),
        (12345, "KWD", "en_US", "KWD12.345"),
        (1250, "EUR", "de_DE", "12,50\xa0€"),
        (None, "EUR", "en_US", "—"),
    ],
)
def test_money_is_formatted_by_currency_and_locale(amount, currency, locale, shown):
    assert money(amount, currency, locale) == shown


def test_activity_diffs_show_money_not_minor_units():
    lines = version_diff(None, {"amount": 500, "currency": "EUR", "reference": "R"})
    assert ("+", "amount: €5.00") in lines and not any("500" in t for _, t in lines)


def test_user_page_shows_amounts_formatted_and_recorded_refunds(admin):
    c = admin.login("support")
    resp = _post(admin, c, "/admin/users/u_4/offline/payment", amount="9500", reference="JP-1")
    assert resp.status_code == 303
    resp = _post(admin, c, "/admin/users/u_2/offline/refund", amount="3.00", reference="RF-7")
    assert resp.status_code == 303
    jp = c.get("/admin/users/u_4").text
    assert "¥9,500" in jp and "9500 JPY" not in jp and "amount: 9500" not in jp
    page = c.get("/admin/users/u_2").text
    refunds = page[page.index('id="refunds"') :]
    assert "RF-7" in refunds and "€3.00" in refunds


# -- route actions -----------------------------------------------------------------------
def _fail_after_pivot(admin, user_id="u_2"):
    with transaction(admin.ctx.sessions) as s:
        routing.transition(s, user_id, "migrating", actor="t", reason="t", cache=admin.ctx.cache)
        routing.transition(s, user_id, "failed", actor="t", reason="t", cache=admin.ctx.cache)
        s.get(Route, user_id).pivoted_at = utcnow()  # the saga stamps it at the legacy cancel
        s.add(
            Migration(
                id="mig_piv", user_id=user_id, status="failed", pivoted=True, step="cancel_legacy"
            )
        )


def test_failed_after_the_pivot_offers_resume_never_route_back(admin):
    _fail_after_pivot(admin)
    c = admin.login("developer")
    page = c.get("/admin/users/u_2").text
    assert "Route back to legacy" not in page and "/admin/migrations/mig_piv" in page
    assert "failed <b>after the pivot</b>" in page
    resp = _post(admin, c, "/admin/users/u_2/route/legacy", reason="forged form")
    assert resp.status_code == 303
    assert "Refused" in c.get(resp.headers["location"]).text
    with admin.ctx.sessions() as s:
        assert s.get(Route, "u_2").state == "failed"  # nothing changed
    (entry,) = _entries(admin, "admin.route_action_refused")
    assert entry.after["action"] == "legacy"


def test_a_legacy_user_is_offered_hold_only(admin):
    page = admin.login("developer").get("/admin/users/u_2").text
    assert "Hold (read-only)" in page
    assert "Route back to legacy" not in page and ">Release<" not in page


# -- activity log ------------------------------------------------------------------------
def test_activity_log_is_in_the_navigation_and_filters(admin):
    c = admin.login("support")
    assert 'href="/admin/activity"' in c.get("/admin/search").text
    _post(admin, c, "/admin/users/u_1/offline/payment", amount="1", reference="A-1")
    page = c.get("/admin/activity", params={"action": "support.offline_payment"}).text
    entries = page[page.index('id="entries"') :]
    assert "A-1" in entries and "<code>admin.login</code>" not in entries
    page = c.get("/admin/activity", params={"actor": "finance@"}).text
    assert "A-1" not in page
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert "No entry matches" in c.get("/admin/activity", params={"start": tomorrow}).text
    assert "Dates must look like" in c.get("/admin/activity", params={"end": "soon"}).text


def test_activity_log_paginates_without_losing_filters(admin):
    with transaction(admin.ctx.sessions) as s:
        for i in range(60):
            s.add(
                AuditEntry(
                    actor="system:test",
                    action="test.bulk",
                    resource_type="x",
                    resource_id=f"r{i:02d}",
                    at=utcnow(),
                )
            )
    c = admin.login("support")
    first = c.get("/admin/activity", params={"action": "test."}).text
    older = re.search(r'href="([^"]+)" id="older"', first).group(1).replace("&amp;", "&")
    assert "action=test." in older
    second = c.get("/admin/activity" + older).text
    seen = set(re.findall(r"x:(r\d\d)", first)) | set(re.findall(r"x:(r\d\d)", second))
    assert len(seen) == 60 and 'id="older"' not in second


# -- search ------------------------------------------------------------------------------
def test_search_hint_and_typeahead(admin):
    c = admin.login("support")
    page = c.get("/admin/search").text
    assert "4 characters or more" in page and "Three characters" not in page
    hits = c.get("/admin/search/suggest", params={"q": "ali"}).json()["hits"]
    assert [h["user_id"] for h in hits] == ["u_1"] and hits[0]["url"] == "/admin/users/u_1"
    assert c.get("/admin/search/suggest", params={"q": "a"}).json()["hits"] == []


# -- cohort dashboard --------------------------------------------------------------------
def test_cohort_page_has_charts_and_lists_members(admin):
    add_user(admin.ctx, admin.legacy, "u_5", system="legacy", email="e@x.test", name="Eve")
    cohorts.create(admin.ctx.sessions, "c1", ["u_5", "u_2"], actor="test")
    now = utcnow()
    with transaction(admin.ctx.sessions) as s:
        for i, (user, status) in enumerate([("u_5", "succeeded"), ("u_2", "failed")]):
            s.add(
                Migration(
                    id=f"mig_{i}",
                    user_id=user,
                    cohort="c1",
                    status=status,
                    started_at=now - timedelta(seconds=60),
                    finished_at=now - timedelta(seconds=30 - 20 * i),
                )
            )
    page = admin.login("developer").get("/admin/cohorts/c1").text
    for chart in ("chart-progress", "chart-rate", "chart-rates", "chart-budget"):
        assert f'id="{chart}"' in page
    assert "<polyline" in page and "https://" not in page.split("<main", 1)[1]
    assert 'id="dry-run"' not in page
    members = page[page.index('id="member-table"') :]
    assert 'href="/admin/users/u_5"' in members and 'href="/admin/users/u_2"' in members


# -- accounts ----------------------------------------------------------------------------
def _user_id(admin, email):
    with admin.ctx.sessions() as s:
        return s.scalars(sa.select(AdminUser.id).where(AdminUser.email == email)).one()


def test_admin_disables_an_account_and_its_sessions_end(admin):
    from fastapi.testclient import TestClient

    support = admin.login("support", TestClient(admin.client.app))
    assert support.get("/admin/search").status_code == 200
    c = admin.login("admin")
    sid = _user_id(admin, "support@example.test")
    resp = _post(admin, c, f"/admin/accounts/{sid}/disable")
    assert "disabled" in c.get(resp.headers["location"]).text
    assert support.get("/admin/search", follow_redirects=False).status_code == 303
    (entry,) = _entries(admin, "admin.user_disabled")
    assert entry.actor == "user:admin@example.test" and entry.after["sessions_ended"] == 1
    with admin.ctx.sessions() as s:
        assert not list(s.scalars(sa.select(AdminSession).where(AdminSession.user_id == sid)))
    me = _user_id(admin, "admin@example.test")
    resp = _post(admin, c, f"/admin/accounts/{me}/disable")
    assert "cannot disable your own account" in c.get(resp.headers["location"]).text


def test_admin_resets_a_password_shown_once(admin):
    c = admin.login("admin")
    sid = _user_id(admin, "finance@example.test")
    page = _post(admin, c, f"/admin/accounts/{sid}/reset").text
    new = re.search(r'id="new-password">.*?<code>([^<]+)</code>', page, re.S).group(1)
    assert len(new) >= 12 and new not in c.get("/admin/accounts").text
    assert _entries(admin, "admin.user_password_reset")
    with admin.ctx.sessions() as s:
        assert new not in str([e.after for e in s.scalars(sa.select(AuditEntry))])
    from fastapi.testclient import TestClient

    from tests.unit.admin.test_auth import _login

    fresh = TestClient(admin.client.app)
    assert _login(fresh, "finance@example.test", PASSWORD).status_code == 401
    assert _login(fresh, "finance@example.test", new).status_code == 303


def test_accounts_page_is_for_admins_only(admin):
    assert admin.login("developer").get("/admin/accounts").status_code == 403


# -- dead letters ------------------------------------------------------------------------
def test_dead_webhook_is_listed_and_retried_from_the_admin(admin):
    with transaction(admin.ctx.sessions) as s:
        s.add(
            OutboxMessage(
                event_id="evt_dead",
                user_id="u_1",
                type="subscription.updated",
                body={},
                status="dead",
                attempts=12,
                last_error="HTTP 500",
            )
        )
        s.add(OutboxMessage(event_id="evt_after", user_id="u_1", type="x", body={}))
    c = admin.login("developer")
    page = c.get("/admin/webhooks/dead").text
    assert "evt_dead" in page and "HTTP 500" in page and 'href="/admin/webhooks/dead"' in page
    with admin.ctx.sessions() as s:
        mid = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.event_id == "evt_dead"))
        mid = mid.one()
    resp = _post(admin, c, f"/admin/webhooks/{mid}/retry", reason="app fixed")
    assert "queued again" in c.get(resp.headers["location"]).text
    with admin.ctx.sessions() as s:
        assert s.get(OutboxMessage, mid).status == "pending"
    (entry,) = _entries(admin, "webhook.retry")
    assert entry.actor == "user:developer@example.test" and entry.reason == "app fixed"
    resp = _post(admin, c, f"/admin/webhooks/{mid}/retry")  # not dead any more
    assert "Nothing was changed" in c.get(resp.headers["location"]).text


# -- environment banner ------------------------------------------------------------------
def test_header_names_the_legacy_key_mode_and_database(admin):
    page = admin.login("support").get("/admin/search").text
    banner = re.search(r'id="env"[^>]*>([^<]+)<', page).group(1)
    assert "legacy: unset key" in banner and "database: sqlite admin.db" in banner


def test_environment_says_live_for_a_live_key():
    from admin.web.environment import describe
    from core.settings import load_settings

    env = describe(
        load_settings(
            legacy_api_key="sk_live_abc", database_url="postgresql://u:secret@db:5432/billing"
        )
    )
    assert env.live and "secret" not in env.text and "abc" not in env.text
    assert env.text == "legacy: live key · database: postgresql billing@db:5432"


def test_a_dry_run_cohort_is_marked_as_such(admin):
    cohorts.create(admin.ctx.sessions, "dry", ["u_2"], actor="test", dry_run=True)
    c = admin.login("developer")
    assert 'id="dry-run"' in c.get("/admin/cohorts/dry").text
    assert "dry run" in c.get("/admin/cohorts").text
