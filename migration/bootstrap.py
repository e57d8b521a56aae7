"""The migration engine's part of the composition root: ``SagaDeps`` from a context."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from migration.deps import SagaDeps, Verifier
from migration.steps import STEPS
from multiplexer.bootstrap import MuxContext
from multiplexer.change_feed import ChangeFeed


def default_verifier() -> Verifier:
    from migration.verify import reconcile_verifier

    return reconcile_verifier


def saga_deps(ctx: MuxContext, *, verifier: Verifier | None = None, **overrides: Any) -> SagaDeps:
    """The saga's dependencies, from the same engine, cache, limiters and backends as the
    rest of the process. ``overrides`` are SagaDeps fields (a typo is a TypeError)."""
    settings = ctx.settings
    feed = None
    if settings.event_recheck == "auto":
        feed = ChangeFeed(
            ctx.sessions,
            ctx.legacy,
            refresh_every=settings.event_refresh_seconds,
            settle=settings.event_settle_seconds,
            margin=settings.event_clock_margin_seconds,
        )
    deps = SagaDeps(
        sessions=ctx.sessions,
        cache=ctx.cache,
        legacy=ctx.legacy,
        new=ctx.new,
        limiters=ctx.limiters,
        verifier=verifier,
        renewal_guard=timedelta(seconds=ctx.settings.renewal_guard_seconds),
        stale_after=float(ctx.settings.lease_seconds),
        steps=STEPS,
        post_pivot_backoff_max=ctx.settings.post_pivot_backoff_max,
        bulk_reads=ctx.settings.bulk_reads,
        snapshot_max_age=ctx.settings.snapshot_max_age,
        bulk_chunk=ctx.settings.bulk_chunk,
        change_feed=feed,
    )
    return dataclasses.replace(deps, **overrides) if overrides else deps
