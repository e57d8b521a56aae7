"""Developers: cohort dashboard and actions, a migration's timeline step by step, and
resuming one user's migration that failed after the pivot."""

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
from core.db import transaction
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


@router.post("/admin/cohorts/{name}/{action}")
async def cohort_action(
    request: Request, name: str, action: str, me: Principal = Depends(guard)
) -> Response:
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
                web.ctx.saga,
                name,
                web.ctx.enqueue_migration,
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
def migration_page(
    request: Request, migration_id: str, notice: str | None = None, error: str | None = None
) -> Response:
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
        latest = others[0].id if others else None
    return page(
        request,
        "migration.html",
        mig=mig,
        steps=steps,
        others=others,
        resumable=resume_refusal(mig, latest) is None,
        notice=notice,
        error=error,
    )


def resume_refusal(mig: Migration, latest: str | None) -> str | None:
    """Why this migration cannot be resumed from the admin, or None if it can."""
    if latest is not None and latest != mig.id:
        return f"A newer migration ({latest}) exists for this user: resume that one instead."
    if mig.status != "failed":
        return f"Only a failed migration can be resumed; this one is {mig.status}."
    if not mig.pivoted:
        return (
            "This migration failed before the pivot and was compensated (the user is back "
            "on legacy): start a new migration instead (cohort retry-failed or "
            "`twinbill migrate USER_ID`)."
        )
    return None


@router.post("/admin/migrations/{migration_id}/resume")
async def migration_resume(
    request: Request, migration_id: str, me: Principal = Depends(guard)
) -> Response:
    """Resume a migration that failed after the pivot (forward recovery), synchronously."""
    web = _web(request)
    form = await request.form()
    reason = str(form.get("reason") or "").strip() or None
    with web.ctx.sessions() as session:
        mig = session.get(Migration, migration_id)
        latest = cohorts.latest_migration(session, mig.user_id) if mig else None
    if mig is None:
        return page(
            request,
            "error.html",
            status=404,
            title="Unknown migration",
            message=f"No migration {migration_id!r}.",
        )
    result: dict[str, str] = {}
    refused = resume_refusal(mig, latest.id if latest else None)
    before = {"status": mig.status, "step": mig.step, "error_kind": mig.error_kind}
    if refused is None:
        try:
            done = services.resume_user(web.ctx.saga, mig.user_id)
        except TwinbillError as exc:
            refused = f"Refused: {exc}."
        else:
            after = {"status": done.status, "step": done.step, "error_kind": done.error_kind}
            with transaction(web.ctx.sessions) as session:
                audit.record(
                    session,
                    actor=me.actor,
                    action="admin.migration_resume",
                    resource_type="migration",
                    resource_id=mig.id,
                    before=before,
                    after=after,
                    reason=reason,
                )
            if done.status == "succeeded":
                result["notice"] = f"Resumed: migration {done.id} finished ({done.step})."
            else:
                message = f": {done.error_message}" if done.error_message else ""
                result["error"] = (
                    f"Resumed, but migration {done.id} is {done.status} again at step "
                    f"{done.step or '—'}{message}"
                )
    if refused is not None:
        result["error"] = f"{refused} Nothing was changed."
    return RedirectResponse(
        f"/admin/migrations/{quote(migration_id)}?{urlencode(result)}", status_code=303
    )
