"""The cohort page's shadow report: verdict, counts, mismatches by field, chart over time."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core.db import transaction, utcnow
from migration import cohorts, shadow
from migration.models import ShadowCheck, ShadowImport


def test_the_cohort_page_shows_the_shadow_report_with_its_chart(admin):  # type: ignore[no-untyped-def]
    cohorts.create(admin.ctx.sessions, "rehearsal", ["u_2"], actor="test")
    run_id, (row_id,) = shadow.start(admin.ctx.sessions, "rehearsal", days=3, actor="test")
    now = utcnow()
    with transaction(admin.ctx.sessions) as s:
        row = s.get(ShadowImport, row_id)
        row.status, row.import_id, row.last_checked_at = "active", "imp_1", now
        for i, (outcome, fields) in enumerate([("clean", []), ("mismatch", ["balance"])]):
            s.add(
                ShadowCheck(
                    run_id=run_id,
                    user_id="u_2",
                    kind="next_charge",
                    trigger="daily",
                    outcome=outcome,
                    fields=fields,
                    checked_at=now - timedelta(hours=2 - i),
                )
            )
    page = admin.login("developer").get("/admin/cohorts/rehearsal").text
    section = page[page.index('id="shadow"') :]
    assert 'id="chart-shadow"' in section and "<polyline" in section
    assert "1 users with mismatches" in section
    fields = section[section.index('id="shadow-fields"') :]
    assert "<td>balance</td>" in fields.split("</table>", 1)[0]
    assert 'href="/admin/users/u_2"' in section[section.index('id="shadow-examples"') :]


def test_a_cohort_never_shadowed_shows_no_shadow_section(admin):  # type: ignore[no-untyped-def]
    cohorts.create(admin.ctx.sessions, "plain", ["u_2"], actor="test")
    page = admin.login("developer").get("/admin/cohorts/plain").text
    assert 'id="shadow"' not in page
    with admin.ctx.sessions() as s:
        assert s.scalars(sa.select(ShadowImport)).all() == []
