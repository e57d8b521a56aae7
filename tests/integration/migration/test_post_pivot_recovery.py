"""issue 11, finding 3: after the pivot, new-service 500s that outlast a step's attempts
must not end the user ``failed`` (legacy canceled, import pending: billed by nobody).

localstripe + newbilling behind ``sandbox.faultproxy``: the proxy starts answering 500 to
every new-service request right after the legacy cancel, for longer than the activate
step's attempts. The migration parks as "retrying after the pivot" (paged, counted, the
route read-only), the reaper hands it back once its wait is over, and when newbilling is
healthy again the user ends on the new system: checked through both services' own APIs.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from migration_world import open_world

from core.db import transaction, utcnow
from migration import cohort_progress, cohorts, reaper, records, recovery, saga
from migration.models import Migration
from sandbox.faultproxy import FaultProxy
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def test_new_service_down_after_the_pivot_is_retried_until_it_is_back(tmp_path):
    with (
        Stack(tmp_path / "sandbox") as ep,
        FaultProxy(ep.new_url, seed=1) as new_proxy,
    ):
        pages: list[str] = []
        world = open_world(
            ep,
            tmp_path,
            new_url=new_proxy.url,
            env_extra={"http_timeout": "2"},
            sleep=lambda _s: None,  # the in-step backoff: order kept, time skipped
            page=pages.append,
            post_pivot_backoff_base=60.0,
            post_pivot_backoff_max=600.0,
        )
        (user,) = world.seed(1, configs=("simple_monthly",))
        assert world.sync() == 1
        cohorts.create(world.ctx.sessions, "c1", [user], actor="test")
        legacy = world.deps.legacy
        real_cancel = legacy.cancel_for_migration

        def cancel_then_outage(*args, **kwargs):  # the pivot happens, then newbilling 500s
            result = real_cancel(*args, **kwargs)
            new_proxy.configure(error_rate=1.0)
            return result

        legacy.cancel_for_migration = cancel_then_outage  # type: ignore[method-assign]
        mig_id = records.create(world.ctx.sessions, user, cohort="c1")
        mig = saga.run(world.deps, mig_id)

        # -- retrying after the pivot: not failed, not routed back, paged --------------
        assert (mig.status, mig.pivoted) == ("retrying", True), mig.error_message
        assert mig.defer_reason.startswith(recovery.LABEL)
        assert new_proxy.stats()["injected_500"] >= world.deps.max_attempts  # all attempts 500
        route = world.routes()[user]
        assert (route.state, route.system) == ("migrating", "legacy")
        assert route.pivoted_at is not None
        assert world.legacy_billing(user) == []  # canceled on legacy (stripe SDK, no proxy)
        assert world.bundle(user)["import"]["status"] == "pending"  # straight to newbilling
        assert len(pages) == 1 and recovery.LABEL in pages[0]
        with world.ctx.sessions() as s:
            progress = cohort_progress.progress(s, "c1")
        assert progress.by_status == {"retrying": 1} and not progress.settled
        assert progress.as_dict()["retrying_after_pivot"][0]["user_id"] == user

        # a second round while still down: still retrying, with a longer wait
        with transaction(world.ctx.sessions) as s:
            s.get(Migration, mig_id).defer_until = utcnow() - timedelta(seconds=1)
        queued: list[str] = []
        assert reaper.reap(world.deps, queued.append)["retried_after_pivot"] == 1
        mig = saga.run(world.deps, queued[0])
        assert mig.status == "retrying"
        assert (mig.defer_until - utcnow()).total_seconds() > 90  # 120 s: doubled
        assert len(pages) == 1  # paged once, not every round

        # -- newbilling is back: forward recovery finishes the migration ---------------
        new_proxy.configure(error_rate=0.0)
        with transaction(world.ctx.sessions) as s:
            s.get(Migration, mig_id).defer_until = utcnow() - timedelta(seconds=1)
        queued.clear()
        reaper.reap(world.deps, queued.append)
        mig = saga.run(world.deps, queued[0])
        assert mig.status == "succeeded", mig.error_message
        assert world.check_exactly_one_system([user]) == {user: "new"}
        assert world.bundle(user)["import"] == {"id": mig.import_id, "status": "active"}
        world.ctx.close()
