"""Forward -> rollback -> forward again in the current Stripe dialect (the production default).

Legacy is the in-process Stripe double at the pinned API version (every request checked
against the SDK's params types), spoken to by the real ``StripeLegacyBackend(dialect=
"current")``; the new system is the reference newbilling service over real HTTP. Each
stage is checked from each system's own answers: the double's store, newbilling's API.
"""

from __future__ import annotations

import httpx
import pytest
from migration_world import settings_env, settings_from

from core import dbschema
from migration import rollback, services
from migration.bootstrap import saga_deps
from migration.verify import reconcile_verifier
from multiplexer.backends import registry
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from multiplexer.bootstrap import build
from multiplexer.inventory import sync_customers
from sandbox.stack import Stack
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = [
    pytest.mark.newbilling,
    pytest.mark.localstripe,
    pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing"),
]

#: configurations whose next charge the double previews exactly (it computes no taxes);
#: not ``many_payments``: it re-prices the shared catalogue price (1200 for everyone), and
#: the rollback's prove rightly stops a re-creation at today's price instead of the user's
ROUND_TRIP = ("plain", "trial", "customer_coupon", "sepa", "three_decimals")


def test_round_trip_in_the_current_dialect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    double = StripeDouble()
    customers = {n: configurations.CONFIGURATIONS[n](double) for n in ROUND_TRIP}
    with Stack(tmp_path / "sandbox") as ep:
        settings = settings_from(settings_env(ep, f"sqlite:///{tmp_path / 'twinbill.db'}"))
        dbschema.upgrade(settings.database_url)
        legacy = StripeLegacyBackend(client_for(double), dialect="current")
        ctx = build(
            settings, backends={"legacy": legacy, "new": registry.build_new(settings, lambda: None)}
        )
        deps = saga_deps(ctx, verifier=reconcile_verifier)
        sync_customers(ctx.sessions, legacy.iter_customers(), actor="test", cache=ctx.cache)
        nb = httpx.Client(
            base_url=ep.new_url, headers={"Authorization": f"Bearer {ep.new_api_token}"}
        )

        def live(name: str) -> list[dict]:  # type: ignore[type-arg]
            subs = [s for s in double.all("subscription") if s["customer"] == customers[name]]
            return [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]

        def new_charges(uid: str) -> list[tuple[str, int]]:
            body = nb.get(f"/v1/users/{uid}/preview").json()
            return sorted(
                (c["charge_at"], c["amount_due"]) for c in body["subscriptions"] if c["charge_at"]
            )

        for name in ROUND_TRIP:
            uid = f"u-{name}"
            assert services.migrate_user(deps, uid).status == "succeeded", name
            assert live(name) == [], name
            charged = new_charges(uid)

            back = rollback.rollback_user(deps, uid)
            assert back.status == "succeeded", (name, back.error_message)
            (sub,) = live(name)  # legacy bills again, once, trialing until the next charge
            assert sub["metadata"]["twinbill_rollback"] == back.id
            assert sub["status"] == "trialing" and sub["trial_end"] is not None
            payment_method = sub.get("default_payment_method")
            assert payment_method is None or payment_method.startswith("pm_")
            assert nb.get(f"/v1/users/{uid}/bundle").json()["import"]["status"] == "rolled_back"
            assert [c for c in new_charges(uid)] == []

            again = services.migrate_user(deps, uid)
            assert again.status == "succeeded", (name, again.error_message)
            assert live(name) == [] and new_charges(uid) == charged, name
        ctx.close()
