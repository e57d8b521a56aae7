"""Composition root of the migration engine (on top of the multiplexer's)."""

from __future__ import annotations

from datetime import timedelta

from core.settings import Settings
from migration.saga import SagaDeps, Verifier
from multiplexer.bootstrap import MuxContext
from multiplexer.bootstrap import build as build_mux


def saga_deps(
    ctx: MuxContext, *, verifier: Verifier | None = None, **overrides: object
) -> SagaDeps:
    deps = SagaDeps(
        sessions=ctx.sessions,
        cache=ctx.cache,
        legacy=ctx.legacy,
        new=ctx.new,
        limiters=ctx.limiters,
        verifier=verifier,
        renewal_guard=timedelta(seconds=ctx.settings.renewal_guard_seconds),
        post_pivot_backoff_max=ctx.settings.post_pivot_backoff_max,
    )
    for key, value in overrides.items():
        setattr(deps, key, value)
    return deps


def build(settings: Settings) -> tuple[MuxContext, SagaDeps]:
    ctx = build_mux(settings)
    return ctx, saga_deps(ctx)
