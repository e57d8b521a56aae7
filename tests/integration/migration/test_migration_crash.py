"""A real ``celery worker`` process (PostgreSQL + Redis, the production shape) is SIGKILLed
in the middle of the saga — after the import, after the legacy cancel (the pivot), and
just before the flip — then a fresh worker and the reaper take over.

Afterwards every user is finished (new) or compensated (legacy, nothing imported), which
is checked through both services' own APIs; the killed migration's step records show the
step that was cut off and its repeat.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from migration_world import (
    PLAIN_CONFIGS,
    ROOT,
    World,
    open_world,
    process_env,
    wait_until,
    worker_command,
)

from migration import cohort_progress, cohorts, reaper, services
from sandbox.stack import Stack

pytestmark = [
    pytest.mark.localstripe,
    pytest.mark.newbilling,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

STALE_AFTER = 2.0  # seconds without a heartbeat before the reaper resumes a migration

# (hook variable, step, the last step recorded as finished when the worker died)
CRASHES = [
    ("TWINBILL_TEST_CRASH_AFTER", "load", "transform"),
    ("TWINBILL_TEST_CRASH_AFTER", "cancel", "prove"),
    ("TWINBILL_TEST_CRASH_BEFORE", "flip", "activate"),
]


def start_worker(world: World, log: Path, **hooks: str) -> subprocess.Popen[bytes]:
    env = process_env(world.env, TWINBILL_TEST_STALE_AFTER=str(STALE_AFTER), **hooks)
    with log.open("ab") as out:
        return subprocess.Popen(
            worker_command("crash_worker", pool="solo"),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # warm shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def settled(world: World, name: str) -> bool:
    with world.ctx.sessions() as session:
        return cohort_progress.progress(session, name).settled


@pytest.mark.parametrize(
    "hook,step,last_done", CRASHES, ids=[f"{c[0][20:]}-{c[1]}" for c in CRASHES]
)
def test_worker_sigkilled_mid_saga_is_finished_by_reaper(  # type: ignore[no-untyped-def]
    tmp_path, postgres_url, redis_url, hook, step, last_done
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(
            ep,
            tmp_path,
            database_url=postgres_url,
            redis_url=redis_url,
            env_extra={"legacy_rate_limit": "50"},
            stale_after=STALE_AFTER,
        )
        users = world.seed(3, configs=PLAIN_CONFIGS)
        assert world.sync() == 3
        procs: list[subprocess.Popen[bytes]] = []
        try:
            cohorts.create(world.ctx.sessions, "crash", users, actor="test")
            crashing = start_worker(world, tmp_path / "crashing.log", **{hook: step})
            procs.append(crashing)
            services.start_cohort(world.deps, "crash", world.ctx.enqueue_migration, actor="test")
            assert crashing.wait(90) == -9, (tmp_path / "crashing.log").read_text()[-3000:]

            # -- the moment of the crash -------------------------------------------
            (victim,) = [m for m in world.migrations() if m.status == "running"]
            assert victim.step == last_done
            assert (step, 1, "running") in world.steps(victim.id)
            assert world.routes()[victim.user_id].state == "migrating"
            bundle = world.bundle(victim.user_id)
            legacy_live = world.legacy_billing(victim.user_id)
            if step == "load":  # imported (pending, not billing), legacy untouched
                assert bundle is not None and bundle["import"]["status"] == "pending"
                assert sorted(legacy_live) == sorted(world.baseline[victim.user_id]["billing"])
            elif step == "cancel":  # the cancel → activate window
                assert bundle is not None and bundle["import"]["status"] == "pending"
                assert legacy_live == []
            else:  # active in new, canceled in legacy, route not yet flipped
                assert bundle is not None and bundle["import"]["status"] == "active"
                assert legacy_live == []

            # -- a fresh worker and the reaper ---------------------------------------
            fresh = start_worker(world, tmp_path / "fresh.log")
            procs.append(fresh)
            time.sleep(STALE_AFTER + 0.5)
            reaped = reaper.reap(world.deps, world.ctx.enqueue_migration)
            assert reaped["resumed"] == 1, reaped
            wait_until(lambda: settled(world, "crash"), 90, "the cohort to settle")
        finally:
            for proc in procs:
                stop(proc)

        # -- afterwards, through both services' own APIs --------------------------------
        sides = world.check_exactly_one_system(users)
        assert set(sides.values()) == {"new"}, sides
        for uid in users:
            (mig,) = world.migrations(uid)
            assert mig.status == "succeeded", (uid, mig.status, mig.error_message)
            bundle = world.bundle(uid)
            assert bundle is not None
            assert bundle["import"] == {"id": mig.import_id, "status": "active"}
        trail = world.steps(victim.id)
        assert trail.index((step, 1, "running")) < trail.index((step, 2, "ok")), trail
        assert [s for s, _, outcome in trail if outcome == "ok"] == [
            "preflight",
            "lock",
            "fetch",
            "transform",
            "load",
            "recheck",
            "prove",
            "cancel",
            "activate",
            "flip",
            "verify",
        ]
        world.ctx.close()
