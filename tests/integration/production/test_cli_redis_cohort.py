"""`twinbill cohort run` from a CLI process with Redis configured, picked up by a separate
`twinbill worker` process: the production shape the README documents.

Regression: the CLI's Redis branch published to Celery's default broker
(amqp://guest@localhost:5672) — the CLI printed "enqueued 3 migrations", the worker on
Redis idled, and the cohort sat `queued` until the reaper, an hour later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from migration_world import PLAIN_CONFIGS, cli_worker, open_world, process_env, run_cli, wait_until

from migration import cohort_progress
from migration.models import MigrationStep
from sandbox.stack import Stack

pytestmark = [
    pytest.mark.localstripe,
    pytest.mark.newbilling,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]


def test_cohort_run_from_the_cli_reaches_a_separate_worker_over_redis(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, database_url=postgres_url, redis_url=redis_url)
        users = world.seed(3, configs=PLAIN_CONFIGS)
        assert world.sync() == 3
        env = process_env(world.env)
        with cli_worker(env, tmp_path / "worker.log", concurrency=2):
            run_cli(env, "cohort", "create", "pilot", "--users", ",".join(users))
            run = run_cli(env, "cohort", "run", "pilot", "--yes")
            assert "enqueued 3" in run.stdout + run.stderr, (run.stdout, run.stderr)

            def done() -> bool:
                with world.ctx.sessions() as session:
                    return cohort_progress.progress(session, "pilot").status == "done"

            wait_until(done, 90, "the separate worker to finish the cohort")
        sides = world.check_exactly_one_system(users)
        assert set(sides.values()) == {"new"}, sides
        # the cohort's snapshots were read in bulk by the worker (the twinbill.prefetch task:
        # 3 users cost fewer pages than 3 per-user reads), and no preflight read a user again
        with world.ctx.sessions() as session:
            details = [
                s.detail or {}
                for s in session.query(MigrationStep).filter(
                    MigrationStep.step == "preflight", MigrationStep.outcome == "ok"
                )
            ]
        assert len(details) == 3 and all(d.get("prefetched") for d in details), details
