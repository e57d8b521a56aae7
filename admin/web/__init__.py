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
from admin.web.environment import Environment, describe
from admin.web.security import SecurityHeaders, parse_proxies
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
    environment: Environment
    locale: str = "en_US"
    cookie_name: str = COOKIE


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """Render a page with what every page needs: who is signed in, nav, CSRF token."""
    web: AdminWeb = request.app.state.admin
    principal: Principal | None = getattr(request.state, "principal", None)
    nav = [(label, url) for label, url, key in NAV if allowed(principal, key)]
    flashes = (
        web.auth.take_flash(principal) if principal and principal.has_flash and status < 300 else []
    )
    return web.templates.TemplateResponse(
        request,
        template,
        {
            "me": principal,
            "env": web.environment,
            "locale": web.locale,
            "flashes": flashes,
            "csrf": principal.csrf_token if principal else "",
            "nav": nav,
            "can": lambda key: allowed(principal, key),
            **context,
        },
        status_code=status,
    )


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form as plain strings, for plain ``def`` handlers (which cannot await).

    Handlers that touch the database, a billing system or argon2 are ``def`` so
    FastAPI runs them in its thread pool; this async dependency reads the body on
    the event loop first (the guard has usually read and cached it already).
    """
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def redirect(
    request: Request, url: str, *, notice: str | None = None, error: str | None = None
) -> Response:
    """303 to ``url`` with a one-shot banner kept in the session (never in the URL)."""
    web: AdminWeb = request.app.state.admin
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        if notice:
            web.auth.flash(principal, notice, kind="ok")
        if error:
            web.auth.flash(principal, error, kind="bad")
    return RedirectResponse(url, status_code=303)


def mount(app: FastAPI, ctx: App) -> AdminWeb:
    from admin.web import (
        views_accounts,
        views_activity,
        views_auth,
        views_finance,
        views_offline,
        views_ops,
        views_reports,
        views_users,
        views_webhooks,
    )
    from admin.web.filters import install

    secret = ctx.settings.secret_key.get_secret_value() if ctx.settings.secret_key else ""
    if len(secret) < MIN_SECRET:
        raise ConfigurationError(
            f"TWINBILL_SECRET_KEY must be set (at least {MIN_SECRET} characters) to serve the "
            "admin: it keys the session cookies and CSRF tokens"
        )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    install(templates.env, ctx.settings.admin_locale)
    parse_proxies(ctx.settings.trusted_proxies)  # a bad entry refuses to start
    web = AdminWeb(
        ctx,
        Authenticator(ctx.sessions, secret, ctx.settings.session_max_age),
        templates,
        describe(ctx.settings),
        ctx.settings.admin_locale,
    )
    app.state.admin = web
    # Security headers on every answer of the app (admin, gateway, webhooks): CSP,
    # frame-ancestors/X-Frame-Options, Referrer-Policy, nosniff, HSTS over TLS.
    app.add_middleware(SecurityHeaders, trusted_proxies=ctx.settings.trusted_proxies)
    app.mount("/admin/static", StaticFiles(directory=str(HERE / "static")), name="admin-static")
    for module in (
        views_auth,
        views_users,
        views_offline,
        views_activity,
        views_finance,
        views_ops,
        views_reports,
        views_accounts,
        views_webhooks,
    ):
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
