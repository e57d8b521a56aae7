"""Sign in and sign out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from admin.web import LOGIN_CSRF_COOKIE, AdminWeb, form_fields, page
from admin.web.access import guard
from admin.web.auth import LoginFailed, LoginThrottled, Principal
from admin.web.filters import safe_next
from admin.web.security import client_ip, is_tls

router = APIRouter(dependencies=[Depends(guard)])
#: The cookie outlives the server-side session by this much, so an expired session
#: is recognised (and "Your session expired" shown) instead of silently vanishing.
COOKIE_GRACE = 7 * 24 * 3600

__all__ = ["client_ip", "login_page", "router"]


def login_page(
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_url: str = "",
    notice: str | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "login.html",
        status=status,
        error=error,
        notice=notice,
        next_url=safe_next(next_url),
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/admin",
        secure=is_tls(request),
    )
    return response


@router.get("/admin/login")
def login_form(request: Request, next: str = "", expired: int = 0) -> Response:  # noqa: A002
    notice = "Your session expired. Sign in again." if expired else None
    response = login_page(request, next_url=next, notice=notice)
    if expired:
        response.delete_cookie(request.app.state.admin.cookie_name, path="/admin")
    return response


@router.post("/admin/login")
def login(request: Request, form: dict[str, str] = Depends(form_fields)) -> Response:
    """A plain ``def``: argon2 runs in the thread pool, not on the event loop."""
    web: AdminWeb = request.app.state.admin
    next_url = str(form.get("next") or "")
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    submitted = str(form.get("csrf_token") or "")
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        return login_page(
            request,
            status=403,
            next_url=next_url,
            error="The sign-in form's security token is missing or stale. "
            "The form was reloaded: please sign in again.",
        )
    try:
        token, principal = web.auth.login(
            str(form.get("email") or ""), str(form.get("password") or ""), client_ip(request)
        )
    except LoginThrottled as exc:
        response = login_page(request, error=exc.message, status=429, next_url=next_url)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except LoginFailed as exc:
        return login_page(request, error=str(exc), status=401, next_url=next_url)
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        web.cookie_name,
        token,
        max_age=web.auth.max_age + COOKIE_GRACE,
        httponly=True,
        samesite="lax",
        path="/admin",
        secure=is_tls(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    del principal
    return response


@router.post("/admin/logout")
def logout(request: Request, me: Principal = Depends(guard)) -> Response:
    web: AdminWeb = request.app.state.admin
    web.auth.logout(me)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(web.cookie_name, path="/admin")
    return response


@router.get("/admin")
def home(request: Request) -> Response:
    return RedirectResponse("/admin/search", status_code=303)
