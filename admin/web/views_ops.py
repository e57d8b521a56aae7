"""Developers: cohort dashboard (charts, members) and actions, a migration's timeline step
by step, and resuming one user's migration that failed after the pivot.

Plain ``def`` handlers (thread pool): a resume or a cohort start touches the database
and the queue; the saga itself runs in a worker (``twinbill.migrate``), never in the
request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, form_fields, page, redirect
from admin.web import cohort_stats as stats
from admin.web.access import guard
from admin.web.auth import Principal
from admin.web.charts import Series, bar_chart, line_chart
from admin.web.filters import number
from core import audit
from core.db import transaction, utcnow
from core.errors import TwinbillError
from migration import cohort_progress, cohorts, records, services, shadow_report
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
        counts = cohort_progress.stats_by_cohort(session)
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


def _charts(series: stats.CohortSeries, limits: list[dict[str, Any]]) -> dict[str, Any]:
    pct = "{:.3g}%".format
    return {
        "progress": line_chart(
            "Users finished over time",
            [
                Series("migrated", "good", series.done),
                Series("failed", "bad", series.failed),
            ],
            y_format=lambda v: number(round(v)),
            start=series.start,
            chart_id="chart-progress",
            integer=True,
        ),
        "rate": line_chart(
            "Throughput (users per second)",
            [Series("users/s", "info", series.rate)],
            y_format="{:.2g}".format,
            start=series.start,
            chart_id="chart-rate",
        ),
        "rates": line_chart(
            "Failure and diff rates (% of finished / of checked users)",
            [
                Series("failure rate", "bad", series.failure_rate),
                Series("diff rate", "warn", series.diff_rate),
            ],
            y_format=lambda v: pct(v),
            y_max=max([5.0] + [y for _, y in series.failure_rate + series.diff_rate]),
            start=series.start,
            chart_id="chart-rates",
        ),
        "budget": bar_chart(
            "Rate budget in use (effective of configured requests/s)",
            stats.budget_bars(limits),
            value_format=lambda used, cap: f"{used:.1f} of {cap:g}/s",
            chart_id="chart-budget",
        ),
    }


@router.get("/admin/cohorts/{name}")
def cohort_page(
    request: Request, name: str, member_status: str = "", after: str | None = None
) -> Response:
    web = _web(request)
    limits = _limits(web)
    with web.ctx.sessions() as session:
        try:
            progress = cohort_progress.progress(session, name)
        except TwinbillError as exc:
            return page(request, "error.html", status=404, title="Unknown cohort", message=str(exc))
        history = list(reversed(audit.history(session, "cohort", name)))
        series = stats.series(session, name, now=stats.now_if_running(progress.status))
        members, next_after = stats.members(session, name, status=member_status, after=after)
        dry_run = bool(getattr(session.get(Cohort, name), "dry_run", False))
        shadow = shadow_report.build(session, name)
        shadow_series = stats.shadow_series(
            session, shadow.run_id, now=utcnow() if shadow.status == "active" else None
        )
    return page(
        request,
        "cohort.html",
        p=progress,
        limits=limits,
        history=history,
        series=series,
        charts=_charts(series, limits),
        members=members,
        member_status=member_status,
        members_next=next_after,
        after=after,
        dry_run=dry_run,
        shadow=shadow,
        shadow_chart=_shadow_chart(shadow_series),
    )


def _shadow_chart(series: stats.ShadowSeries) -> Any:
    return line_chart(
        "Shadow comparisons over time (next charges and app reads)",
        [
            Series("compared", "info", series.compared),
            Series("mismatched", "bad", series.mismatched),
            Series("could not compare", "warn", series.failed),
        ],
        y_format=lambda v: number(round(v)),
        start=series.start,
        chart_id="chart-shadow",
        integer=True,
    )


@router.post("/admin/cohorts/{name}/{action}")
def cohort_action(
    request: Request,
    name: str,
    action: str,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    web = _web(request)
    reason = form.get("reason", "").strip() or None
    notice = error = None
    try:
        if action == "pause":
            cohorts.set_status(web.ctx.sessions, name, "paused", actor=me.actor, reason=reason)
            notice = f"Cohort {name} paused: no new user starts."
        elif action in ("resume", "retry-failed"):
            started = web.ctx.start_cohort(
                name, actor=me.actor, retry_failed=action == "retry-failed"
            )
            notice = f"Cohort {name} running: {started} migrations queued."
        else:
            error = f"Unknown cohort action {action!r}."
    except TwinbillError as exc:
        error = f"Refused: {exc}. Nothing was changed."
    return redirect(request, f"/admin/cohorts/{quote(name)}", notice=notice, error=error)


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
        latest = others[0].id if others else None
    return page(
        request,
        "migration.html",
        mig=mig,
        steps=steps,
        others=others,
        resumable=resume_refusal(mig, latest) is None,
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
def migration_resume(
    request: Request,
    migration_id: str,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    """Resume a migration that failed after the pivot: reopen it and queue it for a worker."""
    web = _web(request)
    reason = form.get("reason", "").strip() or None
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
    url = f"/admin/migrations/{quote(migration_id)}"
    refused = resume_refusal(mig, latest.id if latest else None)
    before = {"status": mig.status, "step": mig.step, "error_kind": mig.error_kind}
    if refused is None:
        try:
            queued = services.reopen_for_resume(web.ctx.sessions, web.ctx.cache, mig.user_id)
            web.ctx.enqueue_migration(queued)
        except TwinbillError as exc:
            refused = f"Refused: {exc}."
        else:
            with transaction(web.ctx.sessions) as session:
                audit.record(
                    session,
                    actor=me.actor,
                    action="admin.migration_resume",
                    resource_type="migration",
                    resource_id=mig.id,
                    before=before,
                    after={"status": "running", "step": mig.step, "queued": True},
                    reason=reason,
                )
            return redirect(
                request,
                url,
                notice=f"Resume queued: a worker continues migration {queued} from step "
                f"{mig.step or '—'}. This page shows its steps as they finish.",
            )
    return redirect(request, url, error=f"{refused} Nothing was changed.")
