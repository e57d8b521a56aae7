"""The activity log (every audited action): filters by actor, action, resource and date,
keyset pagination (newest first, ``before`` an entry id; no OFFSET, no COUNT)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, page
from admin.web.access import guard
from core import audit

router = APIRouter(dependencies=[Depends(guard)])
PAGE = 50
E = audit.AuditEntry


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


@router.get("/admin/activity")
def activity_page(
    request: Request,
    actor: str = "",
    action: str = "",
    resource: str = "",
    start: str = "",
    end: str = "",
    before: int | None = None,
) -> Response:
    web: AdminWeb = request.app.state.admin
    warnings = []
    lo, hi = _day(start), _day(end)
    if (start and lo is None) or (end and hi is None):
        warnings.append("Dates must look like 2026-11-20; the bad one was ignored.")
    stmt = sa.select(E).order_by(E.id.desc()).limit(PAGE + 1)
    if actor.strip():
        stmt = stmt.where(E.actor.like(f"%{actor.strip()[:120]}%"))
    if action.strip():
        stmt = stmt.where(E.action.like(f"{action.strip()[:80]}%"))
    kind, _, rid = resource.strip().partition(":")
    if kind and rid:
        stmt = stmt.where(E.resource_type == kind, E.resource_id == rid)
    elif kind:
        stmt = stmt.where(E.resource_type == kind)
    if lo is not None:
        stmt = stmt.where(E.at >= datetime.combine(lo, time.min, tzinfo=UTC))
    if hi is not None:
        stmt = stmt.where(E.at < datetime.combine(hi + timedelta(days=1), time.min, tzinfo=UTC))
    if before is not None:
        stmt = stmt.where(E.id < before)
    with web.ctx.sessions() as session:
        entries = list(session.scalars(stmt))
        actions = list(session.scalars(sa.select(E.action).distinct().order_by(E.action)))
    more = len(entries) > PAGE
    entries = entries[:PAGE]
    filters = {"actor": actor, "action": action, "resource": resource, "start": start, "end": end}
    query = urlencode({k: v for k, v in filters.items() if v})
    return page(
        request,
        "activity.html",
        entries=entries,
        actions=actions,
        warning=" ".join(warnings) or None,
        more_url=f"?{query}&before={entries[-1].id}" if more else None,
        first_url=f"?{query}" if before is not None else None,
        **filters,
    )
