"""Developers: stored reconciliation reports and their git-style diff view."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, page
from admin.web.access import guard
from reconciler.models import ReconciliationReport
from reconciler.render import Row, side_by_side

router = APIRouter(dependencies=[Depends(guard)])
PAGE = 50


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def diff_rows(user: dict[str, Any]) -> list[Row]:
    """Both sides of every finding as aligned lines (legacy left, new right)."""
    left: list[str] = []
    right: list[str] = []
    for d in user.get("differences", []):
        where = f"{d['record_type']} {d['record_id']}" + (f".{d['field']}" if d["field"] else "")
        if d["legacy_value"] is not None or d["kind"] != "extra":
            left.append(f"{where}: {_cell(d['legacy_value'])}")
        if d["new_value"] is not None or d["kind"] != "missing":
            right.append(f"{where}: {_cell(d['new_value'])}")
    for v in user.get("violations", []):
        left.append(f"{v.get('invariant')} {v.get('subject')}: {_cell(v.get('legacy_value'))}")
        right.append(f"{v.get('invariant')} {v.get('subject')}: {_cell(v.get('new_value'))}")
    return side_by_side(left, right)


@router.get("/admin/reports")
def reports_page(
    request: Request, before: int | None = None, scope: str = "", dirty: int = 0
) -> Response:
    web: AdminWeb = request.app.state.admin
    with web.ctx.sessions() as session:
        stmt = sa.select(ReconciliationReport).order_by(ReconciliationReport.id.desc())
        if before is not None:
            stmt = stmt.where(ReconciliationReport.id < before)
        if scope:
            stmt = stmt.where(ReconciliationReport.scope_kind == scope)
        if dirty:
            stmt = stmt.where(ReconciliationReport.clean.is_(False))
        rows = list(session.scalars(stmt.limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return page(
        request,
        "reports.html",
        reports=rows,
        scope=scope,
        dirty=dirty,
        next_before=rows[-1].id if more else None,
    )


@router.get("/admin/reports/{report_id}")
def report_page(request: Request, report_id: int, user: str = "") -> Response:
    web: AdminWeb = request.app.state.admin
    with web.ctx.sessions() as session:
        row = session.get(ReconciliationReport, report_id)
    if row is None:
        return page(
            request,
            "error.html",
            status=404,
            title="Unknown report",
            message=f"No reconciliation report #{report_id}.",
        )
    body = row.body or {}
    users = [u for u in body.get("users", []) if not user or u.get("user_id") == user]
    users.sort(key=lambda u: (u.get("clean", True), u.get("user_id", "")))
    return page(
        request,
        "report.html",
        report=row,
        body=body,
        user=user,
        users=[{"u": u, "rows": diff_rows(u)} for u in users[:200]],
    )
