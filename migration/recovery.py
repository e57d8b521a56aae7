"""Forward recovery after the pivot: a transient cause never ends a migration.

Once the legacy subscriptions are canceled (the pivot), giving up on a 500 or a 429
would leave the user billed by nobody. So after a step has used its in-process
attempts, a *transient* failure (``BackendUnavailable``, ``RateLimited``) puts the
migration in status ``retrying`` ("retrying after the pivot") with a next try at
``defer_until``: the reaper hands it back to a worker then, and it resumes after its
last finished step. The wait doubles each round, from ``post_pivot_backoff_base`` up
to the configured ceiling ``post_pivot_backoff_max`` (``TWINBILL_POST_PIVOT_BACKOFF_MAX``
seconds), for as long as the cause lasts. Every round logs ``post_pivot_retrying``,
counts ``twinbill_post_pivot_retries_total{step}`` and the first one pages.
Only a permanent cause (data the new system refuses, a bug) ends it ``failed``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import Counter

from core.db import utcnow
from core.errors import BackendUnavailable, RateLimited
from migration import records
from migration.models import Migration, MigrationStep

if TYPE_CHECKING:
    from migration.deps import SagaDeps

log = logging.getLogger("twinbill.saga")

STATUS = "retrying"
LABEL = "retrying after the pivot"
POST_PIVOT_RETRIES = Counter(
    "twinbill_post_pivot_retries_total",
    "Rounds of forward recovery after the pivot because of a transient failure",
    ["step"],
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (BackendUnavailable, RateLimited))


def next_delay(deps: SagaDeps, round_: int) -> float:
    """Seconds before round ``round_`` (1-based): base, 2x base, 4x base ... ceiling."""
    base = max(1.0, deps.post_pivot_backoff_base)
    return float(min(deps.post_pivot_backoff_max, base * 2 ** max(0, round_ - 1)))


def rounds_so_far(deps: SagaDeps, mig: Migration, step: str) -> int:
    """Completed rounds of this step: its failed attempts over the per-round attempts."""
    with deps.sessions() as session:
        failed = session.scalar(
            sa.select(sa.func.count())
            .select_from(MigrationStep)
            .where(
                MigrationStep.migration_id == mig.id,
                MigrationStep.step == step,
                MigrationStep.outcome == "error",
            )
        )
    return max(1, int(failed or 0) // max(1, deps.max_attempts))


def retry_later(deps: SagaDeps, mig: Migration, step: str, exc: BaseException) -> Migration:
    """Park the migration as "retrying after the pivot" until its next try (see module)."""
    round_ = rounds_so_far(deps, mig, step)
    delay = next_delay(deps, round_)
    until = utcnow() + timedelta(seconds=delay)
    reason = (
        f"{LABEL}: {step} failed transiently ({type(exc).__name__}: {exc}); "
        f"round {round_}, next try at {until:%Y-%m-%d %H:%M:%S} UTC"
    )[:500]
    POST_PIVOT_RETRIES.labels(step).inc()
    log.warning(
        "post_pivot_retrying migration=%s user=%s step=%s round=%d delay=%.0fs error=%s",
        mig.id, mig.user_id, step, round_, delay, type(exc).__name__,
    )  # fmt: skip
    if round_ == 1:
        deps.page(
            f"migration {mig.id} (user {mig.user_id}) is {LABEL}: {step} keeps failing "
            f"transiently ({exc}). Forward recovery goes on by itself with growing backoff "
            f"(at most {deps.post_pivot_backoff_max:.0f}s); the user is read-only meanwhile. "
            "Runbook: a user failed after the pivot."
        )
    records.finish(
        deps.sessions,
        mig.id,
        STATUS,
        error=exc,
        member_status=STATUS,
        reason=reason,
        defer_until=until,
    )
    return records.load(deps.sessions, mig.id)
