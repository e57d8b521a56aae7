"""Legacy data that cannot be mapped fails *that* user as a ``data`` error naming the
offending record, leaves the user on legacy untouched, and the cohort goes on.

* currency mismatch — real in localstripe: one customer, a USD subscription and a newer
  EUR one (Stripe itself refuses that; localstripe does not);
* an invoice whose lines do not add up, and an unknown plan interval — localstripe
  computes invoices itself and validates intervals, so these are made by altering the
  raw legacy objects on their way into ``map_snapshot`` (the stored snapshot and its
  content hash stay genuine).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from migration_world import PLAIN_CONFIGS, World, open_world

from migration import cohort_progress, cohorts, services
from multiplexer.backends.base import RawSnapshot
from sandbox.legacy.population import GOOD_CARD, SeededUser
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def mixed_currency_user(world: World, user_id: str) -> tuple[SeededUser, str]:
    """A customer with a USD subscription and a newer EUR one; returns (user, the USD sub)."""
    v1 = world.stripe.v1
    cus = v1.customers.create(
        {
            "name": "Mixed Currency",
            "email": "mixed@example.test",
            "metadata": {"app_user_id": user_id, "twinbill_config": "mixed_currency"},
        }
    )
    pm = v1.payment_methods.attach(GOOD_CARD, {"customer": cus.id})
    v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    meta = {"app_user_id": user_id}
    usd = v1.subscriptions.create(
        {"customer": cus.id, "items": [{"plan": "plan_basic_monthly_usd"}], "metadata": meta}
    )
    time.sleep(1.1)  # `created` has one-second resolution: the EUR one is the newer
    eur = v1.subscriptions.create(
        {"customer": cus.id, "items": [{"plan": "plan_basic_monthly_eur"}], "metadata": meta}
    )
    user = SeededUser(user_id, str(cus.id), "mixed_currency", "eur", (str(usd.id), str(eur.id)))
    return user, str(usd.id)


def tamper(world: World, monkeypatch: pytest.MonkeyPatch, alter: dict[str, Any]) -> None:
    """Route chosen users' raw legacy objects through ``alter[user_id]`` before mapping."""
    legacy = world.deps.legacy
    original = legacy.map_snapshot

    def map_snapshot(snap: RawSnapshot) -> Any:
        if snap.user_id in alter:
            objects = copy.deepcopy(snap.objects)
            alter[snap.user_id](objects)
            snap = RawSnapshot(snap.user_id, snap.customer_id, objects)
        return original(snap)

    monkeypatch.setattr(legacy, "map_snapshot", map_snapshot)


def test_unmappable_users_fail_as_data_and_the_cohort_goes_on(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, env_extra={"legacy_rate_limit": "100"})
        good = world.seed(5, configs=PLAIN_CONFIGS[:3])
        bad_lines, bad_interval = world.seed(2, configs=("simple_monthly",))
        mixed, usd_sub = mixed_currency_user(world, "u_mixed")
        world.track(mixed)
        assert world.sync() == 8

        # the offending records, read straight from localstripe
        invoice = world.stripe.v1.invoices.list(
            {"customer": world.user(bad_lines).customer_id, "limit": 1}
        ).data[0]
        plan_id = world.legacy_subs(bad_interval)[0]["items"]["data"][0]["plan"]["id"]

        def lines_off_by_one(objects: dict[str, Any]) -> None:
            (inv,) = [i for i in objects["invoices"] if i["id"] == invoice.id]
            inv["lines"]["data"][0]["amount"] += 1

        def fortnightly(objects: dict[str, Any]) -> None:
            for sub in objects["subscriptions"]:
                for item in sub["items"]["data"]:
                    item["plan"]["interval"] = "fortnight"
            for plan in objects["plans"].values():
                plan["interval"] = "fortnight"

        tamper(world, monkeypatch, {bad_lines: lines_off_by_one, bad_interval: fortnightly})

        everyone = [*good, bad_lines, bad_interval, "u_mixed"]
        # never halt: this cohort is about one user's bad data not stopping the others
        cohorts.create(world.ctx.sessions, "data", everyone, actor="test", halt_at_bp=10_000)
        services.start_cohort(
            world.deps,
            "data",
            lambda mig_id: services.run_member(world.deps, mig_id),  # the task body, inline
            actor="test",
        )
        with world.ctx.sessions() as session:
            progress = cohort_progress.progress(session, "data")

        assert progress.by_status == {"done": len(good), "failed": 3}, progress.as_dict()
        assert progress.failures_by_kind == {"data": 3}
        expected_record = {bad_lines: invoice.id, bad_interval: plan_id, "u_mixed": usd_sub}
        for uid, record in expected_record.items():
            (mig,) = world.migrations(uid)
            assert mig.status == "compensated" and mig.error_kind == "data", (uid, mig.status)
            assert record in (mig.error_message or ""), (uid, record, mig.error_message)
            member = next(m for m in progress.failed_users if m["user_id"] == uid)
            assert member["kind"] == "data" and record in member["reason"]
        assert "currency" in world.migrations("u_mixed")[0].error_message
        assert "interval" in world.migrations(bad_interval)[0].error_message
        assert "lines add up" in world.migrations(bad_lines)[0].error_message

        # independently: the failed users are untouched on legacy and absent from new
        for uid in expected_record:
            assert world.legacy_state(uid) == world.baseline[uid]["state"], uid
            assert world.bundle(uid) is None, uid
        sides = world.check_exactly_one_system(everyone)
        assert sides == {**{u: "new" for u in good}, **{u: "legacy" for u in expected_record}}
        world.ctx.close()
