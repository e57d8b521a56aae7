"""New users during the migration period: placed by the rollout policy's sticky hash
(``twinbill rollout set --new-users-percent 50``), created in the system it chose, never
selected for a cohort when created on the new side, and never migrated twice.
"""

from __future__ import annotations

from collections import Counter

import pytest
from migration_world import PLAIN_CONFIGS, open_world

from core.db import transaction
from core.errors import InvalidInput
from migration import cohorts, services
from multiplexer.placement import current_placement, set_policy
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def test_new_users_placed_by_policy_are_never_migrated_twice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, env_extra={"legacy_rate_limit": "100"})
        existing = world.seed(3, configs=PLAIN_CONFIGS[:2])
        world.sync()
        with transaction(world.ctx.sessions) as session:
            set_policy(session, actor="test", new_users_percent="50", reason="pilot")

        newcomers = [f"n_{i:04d}" for i in range(20)]
        for uid in newcomers:
            world.ctx.mux.create_user(
                uid, email=f"{uid}@example.test", name=uid.upper(), currency="eur", actor="test"
            )
        with world.ctx.sessions() as session:
            placement = current_placement(session)
        routes = world.routes()
        on_new = [u for u in newcomers if routes[u].system == "new"]
        on_legacy = [u for u in newcomers if routes[u].system == "legacy"]
        assert on_new and on_legacy, "50 % over 20 users put everyone on one side"
        for uid in newcomers:  # the sticky hash decided, and the route agrees
            assert routes[uid].system == routes[uid].state == placement.system_for(uid)
        with pytest.raises(InvalidInput):  # created once, wherever it lives
            world.ctx.mux.create_user(uid, email=None, name=None, currency="eur", actor="test")

        # independently: each newcomer exists in exactly the system the route names
        for uid in on_new:
            bundle = world.bundle(uid)
            assert bundle is not None and bundle["import"] is None  # native, not imported
        for uid in on_legacy:
            assert world.bundle(uid) is None
            cus = world.stripe.v1.customers.retrieve(routes[uid].legacy_customer_id)
            assert cus.email == f"{uid}@example.test"

        # raising the percentage never moves anyone already placed
        with transaction(world.ctx.sessions) as session:
            set_policy(session, actor="test", new_users_percent="100")
        assert {u: r.system for u, r in world.routes().items()} == {
            u: r.system for u, r in routes.items()
        }

        # cohort selection never offers a user created on the new side
        with world.ctx.sessions() as session:
            offered = {c.user_id for c in cohorts.candidates(session)}
        assert offered == set(existing) | set(on_legacy)
        with pytest.raises(InvalidInput, match="only users on legacy"):
            cohorts.create(world.ctx.sessions, "sneaky", [on_new[0]], actor="test")

        # asking to migrate a new-side user anyway is refused, and changes nothing
        before = world.bundle(on_new[0])
        refused = services.migrate_user(world.deps, on_new[0])
        assert refused.status == "compensated"
        assert "already lives in the new system" in (refused.error_message or "")
        assert world.bundle(on_new[0]) == before
        assert world.routes()[on_new[0]].state == "new"

        # a legacy-placed newcomer migrates once; a second attempt is refused
        first = services.migrate_user(world.deps, on_legacy[0])
        assert first.status == "succeeded", first.error_message
        again = services.migrate_user(world.deps, on_legacy[0])
        assert again.status == "compensated"
        assert "already lives in the new system" in (again.error_message or "")
        exported = Counter(b["user_id"] for b in world.export())
        assert exported[on_legacy[0]] == 1
        assert world.bundle(on_legacy[0])["import"] == {"id": first.import_id, "status": "active"}
        world.ctx.close()
