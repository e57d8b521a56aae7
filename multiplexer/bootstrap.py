"""Composition root of the multiplexer: build everything once from ``Settings``.

Nothing is created at import time; tests build their own context with their
own settings (or hand-made backends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.ratelimit import RateLimiter, build_limiter
from core.settings import Settings
from multiplexer.backends.base import BillingBackend
from multiplexer.cache import RouteCache, build_cache
from multiplexer.facade import BillingMux


@dataclass
class MuxContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cache: RouteCache
    limiters: dict[str, RateLimiter]
    backends: dict[str, BillingBackend]
    mux: BillingMux
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def legacy(self) -> Any:
        return self.backends["legacy"]

    @property
    def new(self) -> Any:
        return self.backends["new"]

    def close(self) -> None:
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if close:
                close()
        self.engine.dispose()


def build(
    settings: Settings,
    *,
    backends: dict[str, BillingBackend] | None = None,
    engine: Engine | None = None,
) -> MuxContext:
    from multiplexer.backends import registry

    engine = engine or make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    cache = build_cache(settings.redis_url)
    limiters = {
        "legacy": build_limiter("legacy", settings.legacy_rate_limit, settings.redis_url),
        "new": build_limiter("new", settings.new_rate_limit, settings.redis_url),
    }
    if backends is None:
        backends = {
            "legacy": registry.build_legacy(settings, limiters["legacy"].acquire),
            "new": registry.build_new(settings, limiters["new"].acquire),
        }
    mux = BillingMux(sessions, cache, backends, max_amount_major=settings.max_amount_major)
    return MuxContext(settings, engine, sessions, cache, limiters, backends, mux)
