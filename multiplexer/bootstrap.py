"""The multiplexer's part of the composition root: ``MuxContext`` and ``build``.

``admin.bootstrap.bootstrap(settings)`` is the one root every entry point calls;
its ``App`` *is a* ``MuxContext`` (plus the migration engine's parts), so the
gateway, the webhook router and the webhook tasks — which live in this layer and
must not import the layers above — take a ``MuxContext`` and get the ``App``.
Every dependency is a typed field; nothing is created at import time and nothing
lives in a module global.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker, utcnow
from core.queue import TwinbillCelery
from core.ratelimit import RateLimiter
from core.settings import Settings
from multiplexer.backends.base import BillingBackend
from multiplexer.cache import RouteCache, build_cache
from multiplexer.facade import BillingMux
from multiplexer.scientist import Scientist, ShadowReads
from multiplexer.webhooks.outbox import MAX_COUNTDOWN, DeliveryPolicy

log = logging.getLogger(__name__)

#: user id, countdown (seconds) -> a delivery task for that user's webhook stream
EnqueueDelivery = Callable[[str, float], None]
DELIVER_OUTBOX = "twinbill.deliver_outbox"


@dataclass(kw_only=True)
class MuxContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cache: RouteCache
    limiters: dict[str, RateLimiter]
    backends: dict[str, BillingBackend]
    mux: BillingMux
    #: the process's Celery app (``None`` in unit tests that never enqueue)
    celery: TwinbillCelery | None = None
    webhook_policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    #: replaces the Celery enqueue of webhook deliveries (tests; the sweep still delivers)
    enqueue_webhook: EnqueueDelivery | None = None
    clock: Callable[[], datetime] = utcnow

    @property
    def legacy(self) -> Any:
        return self.backends["legacy"]

    @property
    def new(self) -> Any:
        return self.backends["new"]

    def schedule_delivery(self, user_id: str, countdown: float = 0.0) -> None:
        """Enqueue a delivery of one user's stream (countdown capped far below visibility)."""
        countdown = max(0.0, min(countdown, MAX_COUNTDOWN))
        if self.enqueue_webhook is not None:
            self.enqueue_webhook(user_id, countdown)
        elif self.celery is not None:
            self.celery.send_task(DELIVER_OUTBOX, args=(user_id,), countdown=countdown or None)
        else:  # the outbox row is durable: beat's sweep delivers it
            log.warning("no Celery app here; the sweep delivers %s's webhook", user_id)

    def on_legacy_event(self, user_id: str) -> None:
        """A legacy webhook about this user was stored. Nothing here; the root overrides it
        (the shadow rehearsal re-syncs and re-compares a shadowed user)."""

    def close(self) -> None:
        self.mux.close()
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if close:
                close()
        self.engine.dispose()


def build_limiters(settings: Settings) -> dict[str, RateLimiter]:
    """One budget per system, shared by every thread of the process (and, with Redis, by
    every process): built once here, handed to the backends and the saga."""
    return {
        "legacy": RateLimiter("legacy", settings.legacy_rate_limit, settings.redis_url or None),
        "new": RateLimiter("new", settings.new_rate_limit, settings.redis_url or None),
    }


def build(
    settings: Settings,
    *,
    backends: dict[str, BillingBackend] | None = None,
    engine: Engine | None = None,
    celery: TwinbillCelery | None = None,
) -> MuxContext:
    """The multiplexer's parts alone (tests and benches that need no migration engine)."""
    return MuxContext(**mux_parts(settings, backends=backends, engine=engine), celery=celery)


def mux_parts(
    settings: Settings,
    *,
    backends: dict[str, BillingBackend] | None = None,
    engine: Engine | None = None,
    shadow_reads: Callable[[sessionmaker[Session]], ShadowReads] | None = None,
) -> dict[str, Any]:
    """``shadow_reads`` builds the hooks of the facade's background comparison of shadowed
    users' reads (the migration engine's, given by the root; None: no comparison)."""
    from multiplexer.backends import registry

    engine = engine or make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    cache = build_cache(settings.redis_url)
    limiters = build_limiters(settings)
    if backends is None:
        backends = {
            "legacy": registry.build_legacy(settings, limiters["legacy"].acquire),
            "new": registry.build_new(settings, limiters["new"].acquire),
        }
    scientist = (
        Scientist(
            shadow_reads(sessions),
            timeout=settings.shadow_read_timeout,
            max_in_flight=settings.shadow_read_concurrency,
        )
        if shadow_reads is not None
        else None
    )
    mux = BillingMux(
        sessions,
        cache,
        backends,
        max_amount_major=settings.max_amount_major,
        scientist=scientist,
    )
    return dict(
        settings=settings,
        engine=engine,
        sessions=sessions,
        cache=cache,
        limiters=limiters,
        backends=backends,
        mux=mux,
    )
