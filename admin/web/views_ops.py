"""Developers: cohort dashboard and actions, a migration's timeline step by step."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from admin.web import AdminWeb, page
from admin.web.access import guard
from admin.web.auth import Principal
from core import audit
from core.errors import TwinbillError
from migration import cohorts, records, services
from migration.models import Cohort, Migration

router = APIRouter(dependencies=[Depends(guard)])
SORTS = {"name": Cohort.name, "status": Cohort.status, "created": Cohort.created_at}


def _web(request: Request) -> AdminWeb:
    return request.app.state.admin  # type: ignore[no-any-return]


def _limits(web: AdminWeb) -> list[dict[str, Any]]:
    out = []
    for name, limiter in sorted(web.ctx.limiters.items()):
        try:
            stats = limiter.stats()
        except Exception as exc:  # noqa: BLE001 - a dashboard must render without Redis
            stats = {"name": name, "error": str(exc)}
        out.append(stats)
    return out


@router.get("/admin/cohorts")
def cohorts_page(
    request: Request, sort: str = "created", order: str = "desc", status: str = ""
) -> Response:
    web = _web(request)
    column = SORTS.get(sort, Cohort.created_at)
    with web.ctx.sessions() as session:
        stmt = sa.select(Cohort).order_by(column.desc() if order == "desc" else column.asc())
        if status:
            stmt = stmt.where(Cohort.status == status)
        rows = list(session.scalars(stmt.limit(200)))
        counts = cohorts.stats_by_cohort(session)
    return page(
        request,
        "cohorts.html",
        cohorts=rows,
        counts=counts,
        sort=sort,
        order=order,
        status_filter=status,
        limits=_limits(web),
    )


@router.get("/admin/cohorts/{name}")
def cohort_page(
    request: Request, name: str, notice: str | None = None, error: str | None = None
) -> Response:
    web = _web(request)
    with web.ctx.sessions() as session:
        try:
            progress = cohorts.progress(session, name)
        except TwinbillError as exc:
            return page(request, "error.html", status=404, title="Unknown cohort", message=str(exc))
        history = list(reversed(audit.history(session, "cohort", name)))
    return page(
        request,
        "cohort.html",
        p=progress,
        limits=_limits(web),
        history=history,
        notice=notice,
        error=error,
    )


def _enqueue(web: AdminWeb) -> Any:
    enqueue = web.ctx.extras.get("enqueue")
    if enqueue is None:
        from migration.runtime import enqueue
    return enqueue


@router.post("/admin/cohorts/{name}/{action}")
async def cohort_action(
    request: Request, name: str, action: str, me: Principal = Depends(guard)
) -> Response:
    from migration.bootstrap import saga_deps

    web = _web(request)
    form = await request.form()
    reason = str(form.get("reason") or "").strip() or None
    result: dict[str, str] = {}
    try:
        if action == "pause":
            cohorts.set_status(web.ctx.sessions, name, "paused", actor=me.actor, reason=reason)
            result["notice"] = f"Cohort {name} paused: no new user starts."
        elif action in ("resume", "retry-failed"):
            started = services.start_cohort(
                saga_deps(web.ctx),
                name,
                _enqueue(web),
                actor=me.actor,
                retry_failed=action == "retry-failed",
            )
            result["notice"] = f"Cohort {name} running: {started} migrations queued."
        else:
            result["error"] = f"Unknown cohort action {action!r}."
    except TwinbillError as exc:
        result["error"] = f"Refused: {exc}. Nothing was changed."
    return RedirectResponse(f"/admin/cohorts/{quote(name)}?{urlencode(result)}", status_code=303)


@router.get("/admin/migrations/{migration_id}")
def migration_page(request: Request, migration_id: str) -> Response:
    web = _web(request)
    with web.ctx.sessions() as session:
        mig = session.get(Migration, migration_id)
        if mig is None:
            return page(
                request,
                "error.html",
                status=404,
                title="Unknown migration",
                message=f"No migration {migration_id!r}.",
            )
        steps = records.steps_of(session, migration_id)
        others = list(
            session.scalars(
                sa.select(Migration)
                .where(Migration.user_id == mig.user_id)
                .order_by(Migration.created_at.desc())
                .limit(10)
            )
        )
    return page(request, "migration.html", mig=mig, steps=steps, others=others)
