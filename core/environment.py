"""Where a process is pointed: the legacy key's mode, the legacy backend, the database.

One reading for every place that tells a person where they are (the admin header,
``admin/web/environment.py``; the CLI banner, ``admin/cli/guard.py``; ``twinbill legacy
check``), so a key is never called live in one and test in another. Nothing here holds
or returns a secret: the key is reduced to its mode (``sk_live_`` / ``rk_live_`` → live,
``sk_test_`` / ``rk_test_`` → test), the database URL loses its password.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from core.settings import Settings

STRIPE_API_BASE = "https://api.stripe.com"
#: A legacy API base on one of these hosts is the local sandbox (localstripe).
SANDBOX_HOSTS = ("127.0.0.1", "localhost", "localstripe")


def key_mode(secret: str | None) -> str:
    """``live`` / ``test`` from a Stripe key's prefix; ``unknown`` for any other key,
    ``unset`` without one."""
    if not secret:
        return "unset"
    for mode in ("live", "test"):
        if secret.startswith((f"sk_{mode}_", f"rk_{mode}_")):
            return mode
    return "unknown"


def database_label(url: str) -> str:
    """``postgresql billing@db:5432`` / ``sqlite twinbill.db``: dialect, name and host."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return f"sqlite {(u.database or ':memory:').rsplit('/', 1)[-1]}"
    host = f"{u.host}:{u.port}" if u.port else (u.host or "local")
    return f"{u.get_backend_name()} {u.database or ''}@{host}"


@dataclass(frozen=True, slots=True)
class Pointing:
    key: str  # live | test | unknown | unset (key_mode)
    legacy_backend: str
    legacy_base: str  # the configured API base, or Stripe's
    sandbox: bool  # the legacy API base is local
    database: str  # database_label
    database_url: str  # the whole URL, password hidden

    @property
    def live(self) -> bool:
        return self.key == "live"

    @property
    def legacy_mode(self) -> str:
        """live | test | sandbox | unknown | unset: a live or test key says so whatever the
        base; any other key (or none) against a local base is the sandbox."""
        if self.key in ("live", "test"):
            return self.key
        return "sandbox" if self.sandbox else self.key


def pointing(settings: Settings) -> Pointing:
    secret = settings.legacy_api_key.get_secret_value() if settings.legacy_api_key else None
    base = settings.legacy_api_base or ""
    return Pointing(
        key=key_mode(secret),
        legacy_backend=settings.legacy_backend,
        legacy_base=base or STRIPE_API_BASE,
        sandbox=bool(base) and any(h in base for h in SANDBOX_HOSTS),
        database=database_label(settings.database_url),
        database_url=make_url(settings.database_url).render_as_string(hide_password=True),
    )
