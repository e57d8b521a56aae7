"""What the admin header says about where it is pointed: legacy account mode and database.

Shown on every page so nobody records a refund on the live account believing it is a
test one. The key is never shown: only its mode (``sk_live_`` / ``rk_live_`` → live,
``sk_test_`` / ``rk_test_`` → test, a local API base → sandbox). The database is its
dialect, host and name, never its password.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Environment:
    legacy_mode: str  # live | test | sandbox | unset
    database: str

    @property
    def live(self) -> bool:
        return self.legacy_mode == "live"

    @property
    def text(self) -> str:
        return f"legacy: {self.legacy_mode} key · database: {self.database}"


def legacy_mode(settings: Settings) -> str:
    key = settings.legacy_api_key.get_secret_value() if settings.legacy_api_key else ""
    if key.startswith(("sk_live_", "rk_live_")):
        return "live"
    if key.startswith(("sk_test_", "rk_test_")):
        return "test"
    base = settings.legacy_api_base or ""
    if base and any(h in base for h in ("127.0.0.1", "localhost", "localstripe")):
        return "sandbox"
    return "unknown" if key else "unset"


def database_label(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return f"sqlite {(u.database or ':memory:').rsplit('/', 1)[-1]}"
    host = f"{u.host}:{u.port}" if u.port else (u.host or "local")
    return f"{u.get_backend_name()} {u.database or ''}@{host}"


def describe(settings: Settings) -> Environment:
    return Environment(legacy_mode(settings), database_label(settings.database_url))
