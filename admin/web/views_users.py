"""Search, the user page and route actions (hold/release/back); offline money forms are
``views_offline``.

Handlers are plain ``def`` (FastAPI runs them in its thread pool): they call the
billing systems and the database, which must never block the event loop that also
serves the gateway and the webhooks. Form fields come from the async ``form_fields``
dependency, so nothing here awaits.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from admin.web import AdminWeb, form_fields, page, redirect
from admin.web.access import guard
from admin.web.auth import Principal
from admin.web.offline import (
    refusal,
)
from admin.web.search import MIN_SUBSTRING, search
from core import audit
from core.db import transaction
from core.errors import IllegalTransition, TwinbillError, UnknownUser
from migration import records
from migration.models import Migration
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.models import Route
from multiplexer.search_index import index_invoice_numbers

log = logging.getLogger("twinbill.admin")
router = APIRouter(dependencies=[Depends(guard)])
SUGGEST = 8


def _web(request: Request) -> AdminWeb:
    return request.app.state.admin  # type: ignore[no-any-return]


def user_url(user_id: str) -> str:
    return f"/admin/users/{quote(user_id)}"


@router.get("/admin/search")
def search_page(request: Request, q: str = "", after: str | None = None) -> Response:
    result = None
    if q.strip():
        with _web(request).ctx.sessions() as session:
            result = search(session, q, after=after)
        if len(result.hits) == 1 and after is None and result.next_after is None:
            exact = result.hits[0]
            if q.strip() in (exact.user_id, exact.legacy_customer_id, exact.new_customer_id):
                return RedirectResponse(user_url(exact.user_id), status_code=303)
    return page(
        request, "search.html", q=q, result=result, after=after, min_substring=MIN_SUBSTRING
    )


@router.get("/admin/search/suggest")
def search_suggest(request: Request, q: str = "") -> Response:
    """Typeahead: the first few matches of the same search, as JSON for the search box."""
    hits: list[dict[str, str]] = []
    if len(q.strip()) >= 2:
        with _web(request).ctx.sessions() as session:
            result = search(session, q, limit=SUGGEST)
        hits = [
            {
                "user_id": h.user_id,
                "label": " · ".join(x for x in (h.user_id, h.name, h.email) if x),
                "state": h.state,
                "url": user_url(h.user_id),
            }
            for h in result.hits[:SUGGEST]
        ]
    return JSONResponse({"query": q, "hits": hits}, headers={"Cache-Control": "no-store"})


def _billing(web: AdminWeb, route: Route) -> dict[str, Any]:
    """The user's records from the system of record (its own answer, one history read)."""
    data: dict[str, Any] = {
        "error": None,
        "subscriptions": [],
        "invoices": [],
        "payments": [],
        "refunds": [],
    }
    try:
        backend = web.ctx.backends[route.system]
        ref = UserRef(route.user_id, route.legacy_customer_id, route.new_customer_id)
        history = backend.get_history(ref)
    except (TwinbillError, KeyError) as exc:
        data["error"] = f"Could not read the {route.system.upper()} system: {exc}"
        return data
    data["subscriptions"] = list(history.subscriptions)
    data["invoices"] = sorted(history.invoices, key=lambda i: i.created_at, reverse=True)
    data["payments"] = sorted(history.payments, key=lambda p: p.paid_at, reverse=True)
    data["refunds"] = sorted(history.refunds, key=lambda r: r.created_at, reverse=True)
    try:
        with transaction(web.ctx.sessions) as session:
            index_invoice_numbers(
                session, route.user_id, route.system, (i.number for i in data["invoices"])
            )
    except sa.exc.SQLAlchemyError:  # the search index is a cache; never fail the page for it
        log.exception("could not index invoice numbers of %s", route.user_id)
    return data


ROUTE_ACTIONS = {"hold": "Hold (read-only)", "release": "Release", "legacy": "Route back to legacy"}


def legal_actions(route: Route) -> list[str]:
    """The route buttons to offer: exactly what the route state machine allows now
    (``routing.allowed_actions``; never back to legacy after the pivot). "resume" is not
    a route button: the page links the failed migration's own Resume instead."""
    return [a for a in routing.allowed_actions(route) if a in ROUTE_ACTIONS]


@router.get("/admin/users/{user_id}")
def user_page(request: Request, user_id: str) -> Response:
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
    latest = migrations[0] if migrations else None
    return page(
        request,
        "user.html",
        route=route,
        billing=_billing(web, route),
        history=list(reversed(history)),
        activity=list(reversed(activity)),
        migrations=migrations,
        timeline=timeline,
        actions=[(a, ROUTE_ACTIONS[a]) for a in legal_actions(route)],
        resume=latest
        if "resume" in routing.allowed_actions(route)
        or (latest and latest.status == "failed" and latest.pivoted)
        else None,
    )


@router.post("/admin/users/{user_id}/route/{action}")
def route_action(
    request: Request,
    user_id: str,
    action: str,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    web = _web(request)
    reason = form.get("reason", "").strip()
    if action not in ROUTE_ACTIONS:
        return page(
            request,
            "error.html",
            status=404,
            title="Not found",
            message=f"Unknown route action {action!r}.",
        )
    label = ROUTE_ACTIONS[action]
    if not reason:
        return redirect(
            request, user_url(user_id), error=f"Give a reason for '{label}'; nothing was changed."
        )
    try:
        with transaction(web.ctx.sessions) as session:
            route = session.get(Route, user_id)
            if route is None:
                raise UnknownUser(user_id)
            if action not in legal_actions(route):
                after_pivot = route.state == routing.FAILED and route.pivoted_at is not None
                raise IllegalTransition(
                    f"'{label}' is not allowed for user {user_id!r} ({route.state}"
                    + (
                        ", failed after the pivot: resume the migration instead"
                        if after_pivot
                        else ""
                    )
                    + ")"
                )
            if action == "hold":
                target, system = routing.HELD, None
            elif action == "release":
                target, system = str(route.held_from), None
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
                expected_version=int(form.get("version") or route.version),
            )
    except (TwinbillError, ValueError) as exc:
        with transaction(web.ctx.sessions) as session:
            audit.record(
                session,
                actor=me.actor,
                action="admin.route_action_refused",
                resource_type="route",
                resource_id=user_id,
                after={"action": action, "why": str(exc)[:300]},
                reason=reason,
            )
        return redirect(request, user_url(user_id), error=f"Refused: {exc}. Nothing was changed.")
    return redirect(request, user_url(user_id), notice=f"{label}: done ({reason}).")
