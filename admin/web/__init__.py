"""The admin web UI: server-rendered pages (FastAPI + Jinja2), mounted by ``admin.app``.

``mount(app, ctx)`` refuses to start without ``TWINBILL_SECRET_KEY`` and wires
the routers, the static files (served from the package; nothing is fetched from
the network) and the handlers that turn sign-in/permission refusals into pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from admin.bootstrap import App
from admin.web.access import NAV, Denied, NeedLogin, allowed
from admin.web.auth import Authenticator, Principal
from core.errors import ConfigurationError

HERE = Path(__file__).resolve().parent
COOKIE = "tb_admin"
LOGIN_CSRF_COOKIE = "tb_login_csrf"
MIN_SECRET = 16


@dataclass
class AdminWeb:
    ctx: App
    auth: Authenticator
    templates: Jinja2Templates
    cookie_name: str = COOKIE


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """Render a page with what every page needs: who is signed in, nav, CSRF token."""
    web: AdminWeb = request.app.state.admin
    principal: Principal | None = getattr(request.state, "principal", None)
    nav = [(label, url) for label, url, key in NAV if allowed(principal, key)]
    return web.templates.TemplateResponse(
        request,
        template,
        {
            "me": principal,
            "csrf": principal.csrf_token if principal else "",
            "nav": nav,
            "can": lambda key: allowed(principal, key),
            **context,
        },
        status_code=status,
    )


def mount(app: FastAPI, ctx: App) -> AdminWeb:
    from admin.web import views_auth, views_finance, views_ops, views_reports, views_users
    from admin.web.filters import install

    secret = ctx.settings.secret_key.get_secret_value() if ctx.settings.secret_key else ""
    if len(secret) < MIN_SECRET:
        raise ConfigurationError(
            f"TWINBILL_SECRET_KEY must be set (at least {MIN_SECRET} characters) to serve the "
            "admin: it keys the session cookies and CSRF tokens"
        )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    install(templates.env)
    web = AdminWeb(
        ctx, Authenticator(ctx.sessions, secret, ctx.settings.session_max_age), templates
    )
    app.state.admin = web
    app.mount("/admin/static", StaticFiles(directory=str(HERE / "static")), name="admin-static")
    for module in (views_auth, views_users, views_finance, views_ops, views_reports):
        app.include_router(module.router)

    @app.exception_handler(NeedLogin)
    async def _need_login(request: Request, exc: NeedLogin) -> Response:
        if exc.method == "GET":
            query = f"?next={exc.next_url}" + ("&expired=1" if exc.expired else "")
            return RedirectResponse("/admin/login" + query, status_code=303)
        message = (
            "Your session expired, so nothing was changed. Sign in again and resubmit."
            if exc.expired
            else "You are not signed in, so nothing was changed. Sign in first."
        )
        return views_auth.login_page(request, error=message, status=401, next_url=exc.next_url)

    @app.exception_handler(Denied)
    async def _denied(request: Request, exc: Denied) -> Response:
        return page(
            request, "error.html", status=exc.status, title="Not allowed", message=exc.message
        )

    return web
