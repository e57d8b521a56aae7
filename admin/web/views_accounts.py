"""Admins only: the operator accounts, with disable / enable and password reset.

Plain ``def`` handlers: a reset hashes with argon2, which must not run on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from admin.web import AdminWeb, page, redirect
from admin.web.access import guard
from admin.web.accounts import list_users, reset_password, set_disabled
from admin.web.auth import Principal
from core.errors import InvalidInput

router = APIRouter(dependencies=[Depends(guard)])
ACTIONS = ("disable", "enable", "reset")


@router.get("/admin/accounts")
def accounts_page(request: Request) -> Response:
    web: AdminWeb = request.app.state.admin
    with web.ctx.sessions() as session:
        users = list_users(session)
    return page(request, "accounts.html", users=users)


@router.post("/admin/accounts/{user_id}/{action}")
def account_action(
    request: Request, user_id: int, action: str, me: Principal = Depends(guard)
) -> Response:
    web: AdminWeb = request.app.state.admin
    if action not in ACTIONS:
        return page(request, "error.html", status=404, title="Not found", message="Unknown action.")
    try:
        if action == "reset":
            user, password = reset_password(web.ctx.sessions, user_id, actor=me.actor)
            # shown once, on this page only (not a flash: it would sit in the session row)
            with web.ctx.sessions() as session:
                users = list_users(session)
            return page(request, "accounts.html", users=users, new_password=(user.email, password))
        user = set_disabled(
            web.ctx.sessions, user_id, action == "disable", actor_id=me.user_id, actor=me.actor
        )
    except InvalidInput as exc:
        return redirect(request, "/admin/accounts", error=f"Refused: {exc}. Nothing was changed.")
    done = "disabled (signed out everywhere)" if action == "disable" else "enabled"
    return redirect(request, "/admin/accounts", notice=f"{user.email}: {done}.")
