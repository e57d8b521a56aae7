"""The migration page's "Resume migration" button; the hourly admin-session purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from admin.models import AdminSession
from admin.tasks import purge_admin_sessions, purge_sessions
from admin.web import views_ops
from core.audit import AuditEntry
from core.db import transaction, utcnow
from core.settings import load_settings
from migration import services
from migration.models import Migration


def _migration(admin, mig_id: str, *, status: str, pivoted: bool, user: str = "u_2") -> str:
    with transaction(admin.ctx.sessions) as s:
        s.add(
            Migration(
                id=mig_id,
                user_id=user,
                status=status,
                pivoted=pivoted,
                step="cancel_legacy" if pivoted else "import",
                error_kind="transient",
                error_message="new system down",
            )
        )
    return mig_id


@pytest.fixture
def resumed(admin, monkeypatch):
    """What the admin queued for a worker; the saga itself must never run in the request."""
    queued: list[str] = []
    monkeypatch.setattr(admin.ctx, "enqueue_migration", queued.append)  # no broker here

    def saga_in_request(*_a, **_k):
        raise AssertionError("the admin ran the saga inside the web request")

    monkeypatch.setattr(views_ops.services, "resume_user", saga_in_request)
    monkeypatch.setattr(services.saga, "run", saga_in_request)
    return queued


def _post(admin, role: str, mig_id: str):
    c = admin.login(role)
    token = admin.csrf(f"/admin/migrations/{mig_id}")
    return c.post(
        f"/admin/migrations/{mig_id}/resume",
        data={"csrf_token": token, "reason": "new system fixed"},
        follow_redirects=True,
    )


@pytest.mark.parametrize("role", ["developer", "admin"])
def test_resume_after_the_pivot_is_queued_for_a_worker_and_audited(admin, resumed, role):
    mig_id = _migration(admin, "mig_pivoted", status="failed", pivoted=True)
    page = admin.login(role).get(f"/admin/migrations/{mig_id}").text
    assert "Resume migration" in page
    resp = _post(admin, role, mig_id)
    assert resp.status_code == 200 and "Resume queued" in resp.text and "mig_pivoted" in resp.text
    assert resumed == ["mig_pivoted"]  # a worker's twinbill.migrate task runs the saga
    with admin.ctx.sessions() as s:
        assert s.get(Migration, mig_id).status == "running"
        entry = s.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "admin.migration_resume")
        ).one()
    assert entry.actor == f"user:{role}@example.test" and entry.reason == "new system fixed"
    assert entry.before["status"] == "failed" and entry.after["queued"] is True
    assert "Resume migration" not in admin.client.get(f"/admin/migrations/{mig_id}").text


@pytest.mark.parametrize(
    ("status", "pivoted", "message"),
    [
        ("failed", False, "start a new migration instead"),
        ("succeeded", True, "Only a failed migration can be resumed"),
        ("running", True, "Only a failed migration can be resumed"),
    ],
)
def test_resume_is_refused_with_a_reason(admin, resumed, status, pivoted, message):
    mig_id = _migration(admin, "mig_other", status=status, pivoted=pivoted)
    assert (
        "Resume migration" not in admin.login("developer").get(f"/admin/migrations/{mig_id}").text
    )
    resp = _post(admin, "developer", mig_id)
    assert message in resp.text and "Nothing was changed" in resp.text
    assert resumed == []
    with admin.ctx.sessions() as s:
        assert s.get(Migration, mig_id).status == status


def test_resume_of_an_older_attempt_points_to_the_newer_one(admin, resumed):
    old = _migration(admin, "mig_old", status="failed", pivoted=True)
    with transaction(admin.ctx.sessions) as s:
        s.get(Migration, old).created_at = utcnow() - timedelta(hours=1)
    _migration(admin, "mig_new", status="failed", pivoted=True)
    resp = _post(admin, "developer", old)
    assert "A newer migration (mig_new) exists" in resp.text and resumed == []


def test_resume_is_refused_for_support_and_without_csrf(admin, resumed):
    mig_id = _migration(admin, "mig_pivoted", status="failed", pivoted=True)
    c = admin.login("support")
    resp = c.post(f"/admin/migrations/{mig_id}/resume", data={"csrf_token": admin.csrf()})
    assert resp.status_code == 403
    c = admin.login("developer")
    resp = c.post(f"/admin/migrations/{mig_id}/resume", data={"csrf_token": "stale"})
    assert resp.status_code == 403 and resumed == []


def test_purge_deletes_only_expired_sessions(admin):
    admin.login("support")
    admin.login("finance")
    with transaction(admin.ctx.sessions) as s:
        rows = list(s.scalars(sa.select(AdminSession)))
        assert len(rows) == 2
        rows[0].expires_at = utcnow() - timedelta(seconds=1)
        keep = rows[1].id
    assert purge_sessions(admin.ctx.sessions, 3600) == 1
    assert purge_sessions(admin.ctx.sessions, 3600) == 0
    with admin.ctx.sessions() as s:
        assert [r.id for r in s.scalars(sa.select(AdminSession))] == [keep]


def test_purge_is_on_the_beat_schedule():
    from admin.bootstrap import TASK_MODULES, beat_schedule

    assert "admin.tasks" in TASK_MODULES
    assert purge_admin_sessions.name == "twinbill.purge_admin_sessions"
    schedule = beat_schedule(load_settings())
    entry = next(e for e in schedule.values() if e["task"] == "twinbill.purge_admin_sessions")
    assert entry["schedule"] == 3600.0
