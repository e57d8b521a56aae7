"""A `twinbill worker` SIGKILLed while its prefetch task reads a cohort's snapshots.

Regression (the production-shape test, once in CI): the prefetch task enqueues each
member as its snapshot is stored and the rest after the read; killed midway, it left the
members it had not reached `pending` with no task — Redis redelivers the unacked prefetch
only after its visibility timeout (6 h), the reaper's "lost" sweep waits an hour — and
the cohort stalled. The task now holds a lease on its cohort; beat's reaper hands the
members back once it is stale (lease + reaper period), and they are read in bulk again.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from migration_world import (
    PLAIN_CONFIGS,
    ROOT,
    cli_worker,
    open_world,
    process_env,
    run_cli,
    twinbill_cli,
    wait_until,
)

from migration import cohort_progress
from migration.models import Migration, MigrationStep
from sandbox.stack import Stack

pytestmark = [
    pytest.mark.localstripe,
    pytest.mark.newbilling,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

USERS = 4


def test_a_worker_killed_mid_prefetch_loses_no_member(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        # one legacy request a second: the bulk read's pages take seconds, time to kill it
        world = open_world(
            ep,
            tmp_path,
            database_url=postgres_url,
            redis_url=redis_url,
            env_extra={"legacy_rate_limit": "1", "bulk_reads": "on"},
        )
        users = world.seed(USERS, configs=PLAIN_CONFIGS)
        assert world.sync() == USERS
        env = process_env(world.env, TWINBILL_LEASE_SECONDS="6", TWINBILL_REAPER_EVERY="2")
        run_cli(env, "cohort", "create", "wave", "--users", ",".join(users))
        log_a = tmp_path / "worker-a.log"
        with cli_worker(env, log_a, concurrency=1) as worker_a:
            run = run_cli(env, "cohort", "run", "wave", "--yes")
            assert f"enqueued {USERS}" in run.stdout + run.stderr, (run.stdout, run.stderr)
            wait_until(
                lambda: "twinbill.prefetch" in log_a.read_text(), 60, "worker A to start the read"
            )
            os.kill(worker_a.pid, signal.SIGKILL)
            assert worker_a.wait(10) == -signal.SIGKILL
        with world.ctx.sessions() as session:
            unread = session.query(Migration).filter(Migration.snapshot_id.is_(None)).count()
        assert unread > 0, "the read finished before the kill: nothing was tested"

        log_b = tmp_path / "worker-b.log"
        with (log_b.parent / "beat.log").open("ab") as beat_log:
            beat = subprocess.Popen(
                twinbill_cli("beat"), cwd=ROOT, env=env, stdout=beat_log, stderr=subprocess.STDOUT
            )
        try:
            with cli_worker(env, log_b, concurrency=2):

                def done() -> bool:
                    with world.ctx.sessions() as session:
                        return cohort_progress.progress(session, "wave").status == "done"

                wait_until(done, 180, "the other worker to finish the cohort", every=1)
                assert "prefetch died" in log_b.read_text()
        finally:
            beat.terminate()
            beat.wait(20)
        sides = world.check_exactly_one_system(users)
        assert set(sides.values()) == {"new"}, sides
        with world.ctx.sessions() as session:
            details = [
                s.detail or {}
                for s in session.query(MigrationStep).filter(
                    MigrationStep.step == "preflight", MigrationStep.outcome == "ok"
                )
            ]
        # the hand-back went to a new bulk read, not to per-user reads
        assert len(details) == USERS and all(d.get("prefetched") for d in details), details
