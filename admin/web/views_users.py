"""Search, the user page, offline payment/refund forms, and route actions (hold/release/back)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from admin.web import AdminWeb, page
from admin.web.access import guard
from admin.web.auth import Principal
from admin.web.offline import LABEL, DraftErrors, build_draft, record, refusal, writable_route
from admin.web.search import search
from core import audit
from core.db import transaction
from core.errors import IllegalTransition, InvalidInput, TwinbillError, UnknownUser
from migration import records
from migration.models import Migration
from multiplexer import routing
from multiplexer.models import Route
from multiplexer.search_index import index_invoice_numbers

log = logging.getLogger("twinbill.admin")
router = APIRouter(dependencies=[Depends(guard)])


def back(user_id: str, *, notice: str | None = None, error: str | None = None) -> Response:
    query = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
    return RedirectResponse(f"/admin/users/{quote(user_id)}?{query}", status_code=303)


def _web(request: Request) -> AdminWeb:
    return request.app.state.admin  # type: ignore[no-any-return]


@router.get("/admin/search")
def search_page(request: Request, q: str = "", after: str | None = None) -> Response:
    result = None
    if q.strip():
        with _web(request).ctx.sessions() as session:
            result = search(session, q, after=after)
        if len(result.hits) == 1 and after is None and result.next_after is None:
            exact = result.hits[0]
            if q.strip() in (exact.user_id, exact.legacy_customer_id, exact.new_customer_id):
                return RedirectResponse(f"/admin/users/{quote(exact.user_id)}", status_code=303)
    return page(request, "search.html", q=q, result=result, after=after)


def _billing(web: AdminWeb, route: Route) -> dict[str, Any]:
    """The user's records from the system of record, via the multiplexer."""
    mux = web.ctx.mux
    data: dict[str, Any] = {"error": None, "subscriptions": [], "invoices": [], "payments": []}
    try:
        data["subscriptions"] = mux.list_subscriptions(route.user_id)
        data["invoices"] = sorted(
            mux.list_invoices(route.user_id), key=lambda i: i.created_at, reverse=True
        )
        data["payments"] = sorted(
            mux.list_payments(route.user_id), key=lambda p: p.paid_at, reverse=True
        )
    except TwinbillError as exc:
        data["error"] = f"Could not read the {route.system.upper()} system: {exc}"
        return data
    try:
        with transaction(web.ctx.sessions) as session:
            index_invoice_numbers(
                session, route.user_id, route.system, (i.number for i in data["invoices"])
            )
    except sa.exc.SQLAlchemyError:  # the search index is a cache; never fail the page for it
        log.exception("could not index invoice numbers of %s", route.user_id)
    return data


@router.get("/admin/users/{user_id}")
def user_page(
    request: Request, user_id: str, notice: str | None = None, error: str | None = None
) -> Response:
    web = _web(request)
    with web.ctx.sessions() as session:
        route = session.get(Route, user_id)
        if route is None:
            return page(
                request,
                "error.html",
                status=404,
                title="Unknown user",
                message=refusal(UnknownUser(user_id)),
            )
        history = audit.history(session, "route", user_id)
        activity = audit.history(session, "user", user_id)
        migrations = list(
            session.scalars(
                sa.select(Migration)
                .where(Migration.user_id == user_id)
                .order_by(Migration.created_at.desc())
                .limit(5)
            )
        )
        timeline = {m.id: records.steps_of(session, m.id) for m in migrations}
    return page(
        request,
        "user.html",
        route=route,
        billing=_billing(web, route),
        history=list(reversed(history)),
        activity=list(reversed(activity)),
        migrations=migrations,
        timeline=timeline,
        notice=notice,
        error=error,
    )


@router.get("/admin/activity")
def activity_page(request: Request, resource: str = "", after: int | None = None) -> Response:
    kind, _, rid = resource.partition(":")
    entries: list[audit.AuditEntry] = []
    with _web(request).ctx.sessions() as session:
        stmt = sa.select(audit.AuditEntry).order_by(audit.AuditEntry.id.desc()).limit(51)
        if kind and rid:
            stmt = stmt.where(
                audit.AuditEntry.resource_type == kind, audit.AuditEntry.resource_id == rid
            )
        if after is not None:
            stmt = stmt.where(audit.AuditEntry.id < after)
        entries = list(session.scalars(stmt))
    more = len(entries) > 50
    entries = entries[:50]
    return page(
        request,
        "activity.html",
        resource=resource,
        entries=entries,
        next_after=entries[-1].id if more else None,
    )


def _form_page(
    request: Request,
    kind: str,
    user_id: str,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    refused: str | None = None,
    status: int = 200,
) -> Response:
    web = _web(request)
    with web.ctx.sessions() as session:
        route = session.get(Route, user_id)
    return page(
        request,
        "offline_form.html",
        kind=kind,
        label=LABEL.get(kind, kind),
        user_id=user_id,
        route=route,
        values=values,
        errors=errors or {},
        refused=refused,
        status=status,
    )


async def _fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {
        k: str(form.get(k) or "") for k in ("amount", "currency", "reference", "date", "reason")
    }


@router.get("/admin/users/{user_id}/offline/{kind}")
def offline_form(request: Request, user_id: str, kind: str) -> Response:
    if kind not in LABEL:
        return page(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="Only offline payments and refunds can be recorded here.",
        )
    web = _web(request)
    try:
        with web.ctx.sessions() as session:
            route = writable_route(session, user_id)
    except TwinbillError as exc:
        return _form_page(
            request,
            kind,
            user_id,
            values={},
            refused=refusal(exc),
            status=409 if not isinstance(exc, UnknownUser) else 404,
        )
    return _form_page(request, kind, user_id, values={"currency": route.currency or ""})


def _draft_or_page(request: Request, kind: str, user_id: str, values: dict[str, str]) -> Any:
    try:
        return build_draft(
            _web(request).ctx,
            kind,
            user_id,
            amount=values["amount"],
            currency=values["currency"] or None,
            reference=values["reference"],
            on=values["date"] or None,
            reason=values["reason"],
        )
    except DraftErrors as exc:
        return _form_page(request, kind, user_id, values=values, errors=exc.errors, status=422)
    except UnknownUser as exc:
        return _form_page(request, kind, user_id, values=values, refused=refusal(exc), status=404)
    except TwinbillError as exc:
        return _form_page(request, kind, user_id, values=values, refused=refusal(exc), status=409)


@router.post("/admin/users/{user_id}/offline/{kind}/confirm")
async def offline_confirm(request: Request, user_id: str, kind: str) -> Response:
    values = await _fields(request)
    draft = _draft_or_page(request, kind, user_id, values)
    if isinstance(draft, Response):
        return draft
    return page(
        request, "offline_confirm.html", draft=draft, values=values, sentence=draft.sentence()
    )


@router.post("/admin/users/{user_id}/offline/{kind}")
async def offline_submit(
    request: Request, user_id: str, kind: str, me: Principal = Depends(guard)
) -> Response:
    values = await _fields(request)
    draft = _draft_or_page(request, kind, user_id, values)
    if isinstance(draft, Response):
        return draft
    try:
        done = record(_web(request).ctx, draft, actor=me.actor)
    except TwinbillError as exc:
        log.warning("offline %s for %s refused: %s", kind, user_id, type(exc).__name__)
        return _form_page(
            request,
            kind,
            user_id,
            values=values,
            refused=refusal(exc),
            status=409 if not isinstance(exc, InvalidInput) else 422,
        )
    what = "Already recorded earlier" if done.duplicate else "Recorded"
    notice = (
        f"{what}: {draft.amount.format()} {LABEL[kind][3:]} {done.record_id} in the "
        f"{done.system.upper()} system, reference {draft.reference}."
    )
    return back(user_id, notice=notice)


ROUTE_ACTIONS = {"hold": "Hold", "release": "Release", "legacy": "Route back to legacy"}


@router.post("/admin/users/{user_id}/route/{action}")
async def route_action(
    request: Request, user_id: str, action: str, me: Principal = Depends(guard)
) -> Response:
    web = _web(request)
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    if action not in ROUTE_ACTIONS:
        return page(
            request,
            "error.html",
            status=404,
            title="Not found",
            message=f"Unknown route action {action!r}.",
        )
    if not reason:
        return back(
            user_id, error=f"Give a reason for '{ROUTE_ACTIONS[action]}'; nothing was changed."
        )
    try:
        with transaction(web.ctx.sessions) as session:
            route = session.get(Route, user_id)
            if route is None:
                raise UnknownUser(user_id)
            if action == "hold":
                target, system = routing.HELD, None
            elif action == "release":
                if route.state != routing.HELD or not route.held_from:
                    raise IllegalTransition(f"user {user_id!r} is {route.state}, not held")
                target, system = route.held_from, None
            else:
                target, system = routing.LEGACY, "legacy"
            routing.transition(
                session,
                user_id,
                target,
                actor=me.actor,
                reason=reason,
                cache=web.ctx.cache,
                system=system,
                expected_version=int(str(form.get("version") or route.version)),
            )
    except TwinbillError as exc:
        return back(user_id, error=f"Refused: {exc}. Nothing was changed.")
    return back(user_id, notice=f"{ROUTE_ACTIONS[action]}: done ({reason}).")
