"""Developers: webhook deliveries to the application that gave up (dead letters), and
retrying one. A dead message blocks its user's later events (delivery is in order per
user), so the page shows how many wait behind each."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, form_fields, page, redirect
from admin.web.access import guard
from admin.web.auth import Principal
from core.db import transaction
from core.errors import TwinbillError
from multiplexer.webhooks import outbox

router = APIRouter(dependencies=[Depends(guard)])


@router.get("/admin/webhooks/dead")
def dead_page(request: Request) -> Response:
    web: AdminWeb = request.app.state.admin
    with web.ctx.sessions() as session:
        rows = [(m, outbox.blocked_behind(session, m)) for m in outbox.dead_letters(session)]
    return page(request, "webhooks.html", rows=rows)


@router.post("/admin/webhooks/{message_id}/retry")
def retry(
    request: Request,
    message_id: int,
    form: dict[str, str] = Depends(form_fields),
    me: Principal = Depends(guard),
) -> Response:
    web: AdminWeb = request.app.state.admin
    reason = form.get("reason", "").strip() or "retry dead webhook delivery (admin)"
    try:
        with transaction(web.ctx.sessions) as session:
            msg = outbox.retry_dead(session, message_id, actor=me.actor, reason=reason[:300])
            event = msg.event_id
    except TwinbillError as exc:
        return redirect(
            request, "/admin/webhooks/dead", error=f"Refused: {exc}. Nothing was changed."
        )
    return redirect(
        request,
        "/admin/webhooks/dead",
        notice=f"Event {event} is queued again; the next delivery sweep sends it.",
    )
