"""A cohort migrates through misbehaving APIs: 429 bursts, 500s (some *after* the write
happened), connection resets, timeouts and slow answers, on both the legacy side
(localstripe) and the new side (newbilling), through ``sandbox.faultproxy``.

What an operator would check afterwards, read straight from both services (not from
twinbill's own records): every user that was not deferred now lives in newbilling with
exactly one active import, none of them still has a billing subscription in legacy,
and the deferred users are untouched.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from migration_world import DEFERRED_CONFIGS, open_world, wait_until

from core.queue import embedded_worker
from migration import cohort_progress, cohorts, services
from sandbox.faultproxy import FaultProxy
from sandbox.stack import Stack

pytestmark = [
    pytest.mark.localstripe,
    pytest.mark.newbilling,
    pytest.mark.celery,
    pytest.mark.slow,
]

# Per request, on top of the 429 bursts: a few percent of 500s, 500s after the write,
# resets and timeouts. Seeds picked so that every fault kind occurs within the first ~100
# requests (the fate sequence depends only on the seed and the request count).
LEGACY_SEED, NEW_SEED = 28, 123
LEGACY_FAULTS = dict(
    burst_429=(50, 1),  # of every 50 requests the last gets 429 + Retry-After: 1
    error_rate=0.01,  # 500 before forwarding
    error_after_rate=0.01,  # forwarded (the write happened), then 500
    reset_rate=0.01,
    timeout_rate=0.005,
    timeout_seconds=3.0,  # above TWINBILL_HTTP_TIMEOUT=2
    slow_rate=0.03,
    slow_seconds=0.4,
)
NEW_FAULTS = dict(
    burst_429=(25, 1),
    error_rate=0.02,
    error_after_rate=0.04,
    reset_rate=0.02,
    timeout_rate=0.01,
    timeout_seconds=3.0,
    slow_rate=0.03,
    slow_seconds=0.4,
)
#: Retries are per *step*, and a step such as the verify re-fetch makes ~8 legacy calls
#: that must all succeed in one attempt: at these fault rates the default 6 attempts
#: would fail a user in a few percent of runs, so this hostile network gets 12.
MAX_ATTEMPTS = 12


def test_cohort_migrates_through_faults_on_both_apis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with (
        Stack(tmp_path / "sandbox") as ep,
        FaultProxy(ep.legacy_url, seed=LEGACY_SEED) as legacy_proxy,
        FaultProxy(ep.new_url, seed=NEW_SEED) as new_proxy,
    ):
        world = open_world(
            ep,
            tmp_path,
            legacy_url=legacy_proxy.url,
            new_url=new_proxy.url,
            env_extra={"http_timeout": "2", "legacy_rate_limit": "60"},
            max_attempts=MAX_ATTEMPTS,
            sleep=lambda s: time.sleep(min(s, 4.0)),  # keep the test short; order kept
        )
        users = world.seed(20)  # straight to localstripe, not through the proxy
        assert world.sync() == 20
        legacy_proxy.configure(**LEGACY_FAULTS)
        new_proxy.configure(**NEW_FAULTS)
        legacy_proxy.reset_stats()
        new_proxy.reset_stats()

        with embedded_worker(world.ctx.celery, concurrency=4):
            cohorts.create(world.ctx.sessions, "faulty", users, actor="test")
            services.start_cohort(world.deps, "faulty", world.ctx.enqueue_migration, actor="test")

            def settled():  # type: ignore[no-untyped-def]
                with world.ctx.sessions() as session:
                    p = cohort_progress.progress(session, "faulty")
                halted = p.status == "halted" and not p.by_status.get("running")
                # the worker marks the cohort done just after the last member settles
                done = p.settled and p.status != "running"
                return p if done or halted else None

            progress = wait_until(settled, 150, "the cohort to settle")
        legacy_stats, new_stats = legacy_proxy.stats(), new_proxy.stats()

        # -- the faults really happened, and were survived ------------------------------
        for name, stats in (("legacy", legacy_stats), ("new", new_stats)):
            for fault in ("injected_429", "injected_500", "error_after", "reset", "timeout"):
                assert stats[fault] > 0, f"{name} proxy never injected {fault}: {stats}"

        deferred = {u for u in users if world.user(u).config in DEFERRED_CONFIGS}
        migrated = [u for u in users if u not in deferred]
        assert progress.by_status.get("failed", 0) == 0, progress.failed_users
        assert progress.status == "done", progress.as_dict()
        assert progress.by_status == {"done": len(migrated), "deferred": len(deferred)}

        # -- independently, through both services' own APIs -----------------------------
        sides = world.check_exactly_one_system(users)
        assert {u for u, side in sides.items() if side == "new"} == set(migrated)

        exported = Counter(b["user_id"] for b in world.export())
        for uid in migrated:
            assert exported[uid] == 1, f"{uid} exported {exported[uid]} times"
            (mig,) = [m for m in world.migrations(uid) if m.status == "succeeded"]
            bundle = world.bundle(uid)
            assert bundle is not None and bundle["import"] == {
                "id": mig.import_id,
                "status": "active",
            }
            assert world.legacy_billing(uid) == []
            # (no request can mark a localstripe subscription as the migration's: its
            # cancel reads no parameter, its metadata updates are dropped; so only the
            # status can be checked here)
            for sub_id in world.baseline[uid]["billing"]:
                assert world.legacy_state(uid)[sub_id][0] == "canceled", (uid, sub_id)
        for uid in deferred:
            assert world.bundle(uid) is None
            assert world.legacy_state(uid) == world.baseline[uid]["state"], uid
            assert world.routes()[uid].state == "legacy"
        world.ctx.close()
