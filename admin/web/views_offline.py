"""Offline payment and refund forms: the form, its confirmation, the submit.

Both steps read and check the fields the same way (``admin.web.offline.build_draft``,
shared with ``twinbill payments|refunds record-offline``); a refusal shows the form
again with what to fix, and is written to the activity log. Handlers are plain
``def`` (FastAPI runs them in its thread pool), like the user page's.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, form_fields, page, redirect
from admin.web.access import guard
from admin.web.auth import Principal
from admin.web.filters import money
from admin.web.offline import LABEL, DraftErrors, build_draft, record, refusal, writable_route
from admin.web.views_users import user_url
from core import audit
from core.db import transaction
from core.errors import InvalidInput, TwinbillError, UnknownUser
from multiplexer.models import Route

log = logging.getLogger("twinbill.admin")
router = APIRouter(dependencies=[Depends(guard)])


def _web(request: Request) -> AdminWeb:
    return request.app.state.admin  # type: ignore[no-any-return]


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


def _values(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(k, "") for k in ("amount", "currency", "reference", "date", "reason")}


def audit_refusal(
    web: AdminWeb, me: Principal, kind: str, user_id: str, values: dict[str, str], why: Exception
) -> None:
    """A refused money action is written to the activity log (who tried what, and why)."""
    with transaction(web.ctx.sessions) as session:
        audit.record(
            session,
            actor=me.actor,
            action="support.money_refused",
            resource_type="user",
            resource_id=user_id,
            after={
                "kind": kind,
                "amount_entered": values.get("amount", "")[:40],
                "currency": values.get("currency", "")[:8],
                "reference": values.get("reference", "")[:120],
                "refused": type(why).__name__,
                "why": str(why)[:300],
            },
        )


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


def _refused_page(
    request: Request,
    me: Principal,
    kind: str,
    user_id: str,
    values: dict[str, str],
    exc: Exception,
    *,
    submitted: bool,
) -> Response:
    if submitted or not isinstance(exc, DraftErrors):  # a typo on the form is not a refusal
        audit_refusal(_web(request), me, kind, user_id, values, exc)
    if isinstance(exc, DraftErrors):
        return _form_page(request, kind, user_id, values=values, errors=exc.errors, status=422)
    status = 404 if isinstance(exc, UnknownUser) else 422 if isinstance(exc, InvalidInput) else 409
    return _form_page(request, kind, user_id, values=values, refused=refusal(exc), status=status)


def _offline(
    request: Request, me: Principal, kind: str, user_id: str, form: dict[str, str], *, submit: bool
) -> Response:
    """Both steps of the offline form read and check the fields the same way
    (``build_draft``); the confirm step shows the sentence, the submit step records.
    A refusal shows the form again (and is audited unless it is a typo on the confirm)."""
    web = _web(request)
    values = _values(form)
    try:
        draft = build_draft(
            web.ctx,
            kind,
            user_id,
            amount=values["amount"],
            currency=values["currency"] or None,
            reference=values["reference"],
            on=values["date"] or None,
            reason=values["reason"],
        )
        done = record(web.ctx, draft, actor=me.actor) if submit else None
    except TwinbillError as exc:
        if submit:
            log.warning("offline %s for %s refused: %s", kind, user_id, type(exc).__name__)
        return _refused_page(request, me, kind, user_id, values, exc, submitted=submit)
    amount = money(draft.amount.amount, draft.amount.currency)
    if done is None:
        return page(
            request,
            "offline_confirm.html",
            draft=draft,
            values=values,
            sentence=draft.sentence(amount),
        )
    what = "Already recorded earlier" if done.duplicate else "Recorded"
    notice = (
        f"{what}: {amount} {LABEL[kind][3:]} {done.record_id} in the "
        f"{done.system.upper()} system, reference {draft.reference}."
    )
    return redirect(request, user_url(user_id), notice=notice)


@router.post("/admin/users/{user_id}/offline/{kind}/confirm")
def offline_confirm(
    request: Request,
    user_id: str,
    kind: str,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    return _offline(request, me, kind, user_id, form, submit=False)


@router.post("/admin/users/{user_id}/offline/{kind}")
def offline_submit(
    request: Request,
    user_id: str,
    kind: str,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    return _offline(request, me, kind, user_id, form, submit=True)
