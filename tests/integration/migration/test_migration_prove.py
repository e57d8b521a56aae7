"""``prove``: before the legacy cancel, both systems must agree on each user's next charge.

Real localstripe and the reference newbilling over HTTP; every expectation is read back
through each system's own API (the ``stripe`` SDK straight to localstripe, ``httpx``
straight to newbilling), never through twinbill's backends.

One test per finding of issue 9, each failing on the old code:
credit read as a debt, a trial billed by nobody, a trial inside the renewal guard not
deferred, a tax rate not carried, a false ``customer.user_id`` diff for CSV-linked users.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from migration_world import DEFERRED_CONFIGS, World, open_world

from core.errors import BackendUnavailable
from migration import services
from migration.models import Migration, MigrationStep
from multiplexer.inventory import import_mapping, read_mapping_csv
from reconciler.models import ReconciliationResult
from sandbox.legacy.population import GOOD_CARD, SeededUser
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def step_row(world: World, mig: Migration, name: str) -> MigrationStep | None:
    with world.ctx.sessions() as session:
        return session.scalars(
            sa.select(MigrationStep)
            .where(MigrationStep.migration_id == mig.id, MigrationStep.step == name)
            .order_by(MigrationStep.id.desc())
        ).first()


def latest_result(world: World, user_id: str) -> ReconciliationResult | None:
    with world.ctx.sessions() as session:
        return session.scalars(
            sa.select(ReconciliationResult)
            .where(ReconciliationResult.user_id == user_id)
            .order_by(ReconciliationResult.id.desc())
        ).first()


def legacy_customer(world: World, user_id: str) -> dict[str, Any]:
    return world.stripe.v1.customers.retrieve(world.user(user_id).customer_id).to_dict()


def test_every_configuration_proves_and_migrates_with_identical_next_charges(
    tmp_path: Path,
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, env_extra={"legacy_rate_limit": "100"})
        users = world.seed(14)  # every configuration once, one twice
        world.sync()
        by_config: dict[str, str] = {}
        for uid in users:
            cfg = world.user(uid).config
            by_config.setdefault(cfg, uid)
            mig = services.migrate_user(world.deps, uid)
            if cfg in DEFERRED_CONFIGS:
                assert mig.status == "deferred", (uid, cfg, mig.error_message)
                continue
            assert mig.status == "succeeded", (uid, cfg, mig.error_message)
            proved = step_row(world, mig, "prove")
            assert proved is not None and proved.outcome == "ok", (uid, cfg)
            assert proved.detail["clean"] and proved.detail["differences"] == []
            verified = step_row(world, mig, "verify")
            assert verified is not None and verified.detail["clean"], (cfg, verified.detail)
        world.check_exactly_one_system(users)

        # finding: trials billed by nobody. localstripe says `incomplete` + future trial_end
        trial = by_config["trialing"]
        (raw,) = world.legacy_subs(trial)
        assert raw["status"] == "canceled" and raw["trial_end"] > time.time()
        (sub,) = world.bundle(trial)["subscriptions"]  # type: ignore[index]
        expected = datetime.fromtimestamp(raw["trial_end"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (sub["status"], sub["next_renewal_at"]) == ("trialing", expected)

        # finding: a credit arrived as a debt. localstripe shows credit 500 as account_balance 500
        credit = by_config["credit_balance"]
        given = int(legacy_customer(world, credit)["metadata"]["twinbill_balance"])  # -credit
        assert given < 0
        assert world.bundle(credit)["customer"]["balance"] == given  # type: ignore[index]

        # finding: the subscription's tax rate was not carried
        taxed = by_config["yearly"]
        (raw,) = world.legacy_subs(taxed)
        (rate,) = raw["default_tax_rates"]
        (sub,) = world.bundle(taxed)["subscriptions"]  # type: ignore[index]
        (carried,) = sub["tax_rates"]
        assert carried["external_id"] == rate["id"]
        assert carried["percentage"] == format(rate["percentage"], "g")
        proved = step_row(world, world.migrations(taxed)[-1], "prove")
        assert proved is not None
        (legacy_charge,) = proved.detail["legacy"]["charges"]
        (new_charge,) = proved.detail["new"]["charges"]
        assert legacy_charge["tax"] == new_charge["tax"] > 0


@pytest.mark.parametrize(
    ("bug", "config"),
    [("credit-sign", "credit_balance"), ("trial-state", "trialing"), ("tax-rate", "yearly")],
)
def test_an_injected_misreading_is_stopped_at_prove_before_the_legacy_cancel(
    tmp_path: Path, bug: str, config: str
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, env_extra={"legacy_rate_limit": "100"})
        (uid,) = world.seed(1, configs=(config,))
        world.sync()
        mig = services.migrate_user(world.deps, uid, inject_bug=bug)

        assert (mig.status, mig.error_kind) == ("compensated", "data")
        assert "next charges differ" in (mig.error_message or "")
        trail = world.steps(mig.id)
        assert ("prove", 1, "error") in trail
        assert not any(step in ("cancel", "activate", "flip") for step, _, _ in trail)
        # on legacy, untouched: same subscriptions, same status, no migration marker
        assert world.legacy_state(uid) == world.baseline[uid]["state"]
        route = world.routes()[uid]
        assert (route.state, route.system) == ("legacy", "legacy")
        bundle = world.bundle(uid)
        assert bundle is None or bundle["import"]["status"] == "discarded"
        # both previews and the diff are kept, on the step and in a stored report
        proved = step_row(world, mig, "prove")
        assert proved is not None and proved.detail["legacy"] and proved.detail["new"]
        assert proved.detail["differences"]
        result = latest_result(world, uid)
        assert result is not None and not result.clean and result.differences > 0


def test_guard_csv_links_and_unavailable_previews(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stack(tmp_path / "sandbox") as ep:
        world = open_world(ep, tmp_path, env_extra={"legacy_rate_limit": "100"})
        world.seed(1, configs=("simple_monthly",))  # the catalogue
        v1 = world.stripe.v1

        # finding: a trial ending in 10 minutes must be deferred by the renewal guard
        cus = v1.customers.create({"name": "Soon", "metadata": {"app_user_id": "u_soon"}})
        v1.payment_methods.attach(GOOD_CARD, {"customer": cus.id})
        sub = v1.subscriptions.create(
            {
                "customer": cus.id,
                "items": [{"plan": "plan_basic_monthly_eur"}],
                "trial_end": int(time.time()) + 600,
                "metadata": {"app_user_id": "u_soon"},
            }
        )
        world.track(SeededUser("u_soon", cus.id, "trial_soon", "eur", (sub.id,)))

        # finding: a legacy account without app_user_id metadata, linked by CSV
        plain = v1.customers.create({"name": "Linked By File", "email": "csv@example.test"})
        pm = v1.payment_methods.attach(GOOD_CARD, {"customer": plain.id})
        v1.customers.update(plain.id, {"invoice_settings": {"default_payment_method": pm.id}})
        csv_sub = v1.subscriptions.create(
            {"customer": plain.id, "items": [{"plan": "plan_basic_monthly_usd"}]}
        )
        mapping = tmp_path / "links.csv"
        mapping.write_text(f"user_id,legacy_customer_id\nu_csv,{plain.id}\n")
        import_mapping(world.ctx.sessions, read_mapping_csv(mapping), actor="test")
        world.track(SeededUser("u_csv", plain.id, "csv_linked", "usd", (csv_sub.id,)))
        world.sync()

        soon = services.migrate_user(world.deps, "u_soon")
        assert soon.status == "deferred"
        assert "safety window" in (soon.defer_reason or "")
        assert world.legacy_state("u_soon") == world.baseline["u_soon"]["state"]

        linked = services.migrate_user(world.deps, "u_csv")
        assert linked.status == "succeeded", linked.error_message
        verified = step_row(world, linked, "verify")
        assert verified is not None and verified.detail["clean"], verified.detail

        # a preview that keeps failing: retried, then compensated, never migrated unverified
        (other,) = world.seed(1, configs=("multi_seat",))
        world.sync()
        world.deps.max_attempts, world.deps.sleep = 3, lambda _s: None

        def unavailable(*_a: Any, **_k: Any) -> Any:
            raise BackendUnavailable("legacy upcoming invoice: 503", backend="stripe")

        monkeypatch.setattr(world.deps.legacy, "preview_next_charges", unavailable)
        mig = services.migrate_user(world.deps, other)
        assert mig.status == "compensated"
        trail = world.steps(mig.id)
        assert [s for s in trail if s[0] == "prove"] == [("prove", n, "error") for n in (1, 2, 3)]
        assert not any(step == "cancel" for step, _, _ in trail)
        assert world.legacy_state(other) == world.baseline[other]["state"]
        assert mig.error_kind == "transient"
        assert (mig.error_message or "").startswith("could not prove")
        bundle = world.bundle(other)
        assert bundle is None or bundle["import"]["status"] == "discarded"
