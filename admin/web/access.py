"""Who may do what: the one table of admin route -> roles, and the guard that enforces it.

Every admin route runs ``guard`` (a router-wide dependency). A route missing
from ``ROUTE_ROLES`` is refused for everyone (fail closed), and a test walks
every registered admin route to check it is listed and protected. POSTs must
carry the session's CSRF token. Permission and CSRF refusals are audited.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Request

from admin.web.auth import Principal
from core import audit
from core.db import transaction

if TYPE_CHECKING:
    from admin.web import AdminWeb

log = logging.getLogger("twinbill.admin")

SUPPORT, FINANCE, DEVELOPER, ADMIN = "support", "finance", "developer", "admin"
PUBLIC: frozenset[str] = frozenset()  # no sign-in needed (only the login page)
EVERYONE = frozenset({SUPPORT, FINANCE, DEVELOPER, ADMIN})
MONEY_WRITERS = frozenset({SUPPORT, ADMIN})
FINANCE_READERS = frozenset({FINANCE, ADMIN})
OPERATORS = frozenset({DEVELOPER, ADMIN})
ADMINS = frozenset({ADMIN})

ROUTE_ROLES: dict[str, frozenset[str]] = {
    "GET /admin/login": PUBLIC,
    "POST /admin/login": PUBLIC,
    "POST /admin/logout": EVERYONE,
    "GET /admin": EVERYONE,
    "GET /admin/search": EVERYONE,
    "GET /admin/search/suggest": EVERYONE,
    "GET /admin/users/{user_id}": EVERYONE,
    "GET /admin/activity": EVERYONE,
    "GET /admin/users/{user_id}/offline/{kind}": MONEY_WRITERS,
    "POST /admin/users/{user_id}/offline/{kind}/confirm": MONEY_WRITERS,
    "POST /admin/users/{user_id}/offline/{kind}": MONEY_WRITERS,
    "GET /admin/finance/offline": FINANCE_READERS,
    "GET /admin/finance/offline.csv": FINANCE_READERS,
    "POST /admin/users/{user_id}/route/{action}": OPERATORS,
    "GET /admin/cohorts": OPERATORS,
    "GET /admin/cohorts/{name}": OPERATORS,
    "POST /admin/cohorts/{name}/{action}": OPERATORS,
    "GET /admin/migrations/{migration_id}": OPERATORS,
    "POST /admin/migrations/{migration_id}/resume": OPERATORS,
    "GET /admin/reports": OPERATORS,
    "GET /admin/reports/{report_id}": OPERATORS,
    "GET /admin/webhooks/dead": OPERATORS,
    "POST /admin/webhooks/{message_id}/retry": OPERATORS,
    "GET /admin/accounts": ADMINS,
    "POST /admin/accounts/{user_id}/{action}": ADMINS,
}

NAV = (
    ("Search", "/admin/search", "GET /admin/search"),
    ("Offline payments", "/admin/finance/offline", "GET /admin/finance/offline"),
    ("Cohorts", "/admin/cohorts", "GET /admin/cohorts"),
    ("Reconciliation", "/admin/reports", "GET /admin/reports"),
    ("Webhooks", "/admin/webhooks/dead", "GET /admin/webhooks/dead"),
    ("Activity", "/admin/activity", "GET /admin/activity"),
    ("Accounts", "/admin/accounts", "GET /admin/accounts"),
)


class NeedLogin(Exception):
    def __init__(self, *, expired: bool, next_url: str, method: str) -> None:
        super().__init__("sign-in required")
        self.expired, self.next_url, self.method = expired, next_url, method


class Denied(Exception):
    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def allowed(principal: Principal | None, key: str) -> bool:
    roles = ROUTE_ROLES.get(key)
    if roles is None:
        return False
    return roles == PUBLIC or (principal is not None and principal.role in roles)


def route_key(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    method = "GET" if request.method == "HEAD" else request.method
    return f"{method} {path}"


def _audit_refusal(web: AdminWeb, principal: Principal, action: str, key: str, why: str) -> None:
    with transaction(web.ctx.sessions) as session:
        audit.record(
            session,
            actor=principal.actor,
            action=action,
            resource_type="admin_route",
            resource_id=key,
            after={"role": principal.role, "path": why},
        )


async def guard(request: Request) -> Principal | None:
    web: AdminWeb = request.app.state.admin
    key = route_key(request)
    roles = ROUTE_ROLES.get(key)
    if roles is None:
        log.error("admin route %s is not in ROUTE_ROLES: refused", key)
        raise Denied("This page is not in the access table; nobody may open it.")
    if roles == PUBLIC:
        return None
    principal, expired = web.auth.resolve(request.cookies.get(web.cookie_name))
    if principal is None:
        raise NeedLogin(expired=expired, next_url=str(request.url.path), method=request.method)
    request.state.principal = principal
    if principal.role not in roles:
        _audit_refusal(web, principal, "admin.permission_denied", key, request.url.path)
        need = ", ".join(sorted(roles))
        raise Denied(
            f"Your role ({principal.role}) cannot open this page or do this action. "
            f"It needs one of: {need}. Ask an admin if you need access."
        )
    if request.method == "POST":
        form = await request.form()
        submitted = form.get("csrf_token")
        if not web.auth.csrf_ok(principal, submitted if isinstance(submitted, str) else None):
            _audit_refusal(web, principal, "admin.csrf_rejected", key, request.url.path)
            state = "missing" if not submitted else "stale"
            raise Denied(
                f"The form's security token is {state} (the page was open too long, or "
                "you signed in again elsewhere). Nothing was changed: go back, reload the "
                "page and submit again."
            )
    return principal
