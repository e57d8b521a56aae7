"""The whole saga in the current Stripe dialect (the production default).

Legacy is the in-process Stripe double (tests/stripe_current) holding current-shape
configurations, spoken to by the real ``StripeLegacyBackend(dialect="current")``
through the SDK, every request checked against the SDK's params types; the new
system is the reference newbilling service over real HTTP. Checked from each
system's own answers: the double's store for legacy, newbilling's API for new.
"""

from __future__ import annotations

import httpx
import pytest
from migration_world import settings_env, settings_from

from core import dbschema
from migration import services
from migration.bootstrap import saga_deps
from migration.verify import reconcile_verifier
from multiplexer.backends import registry
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from multiplexer.backends.stripe.shapes import migration_mark
from multiplexer.bootstrap import build
from multiplexer.inventory import sync_customers
from multiplexer.webhooks.inbound import migration_reason
from sandbox.stack import Stack
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = [
    pytest.mark.newbilling,
    pytest.mark.localstripe,
    pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing"),
]

MIGRATE = (
    "plain",
    "tax_inclusive",
    "tax_exclusive",
    "customer_coupon",
    "trial",
    "item_discount",
    "three_decimals",
    "sepa",
    "many_payments",
)
DEFER = {
    "paused": "collection paused",
    "cancel_at": "scheduled to cancel",
    "dunning": "open invoice",
    "credit_notes": "open invoice",
    "multi_period": "different billing periods",
    "tiered": "tiered or custom-amount price",
}


def test_saga_in_the_current_dialect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    double = StripeDouble()
    customers = {name: configurations.CONFIGURATIONS[name](double) for name in (*MIGRATE, *DEFER)}
    with Stack(tmp_path / "sandbox") as ep:
        settings = settings_from(settings_env(ep, f"sqlite:///{tmp_path / 'twinbill.db'}"))
        dbschema.upgrade(settings.database_url)
        legacy = StripeLegacyBackend(client_for(double), dialect="current")
        new = registry.build_new(settings, lambda: None)
        ctx = build(settings, backends={"legacy": legacy, "new": new})
        deps = saga_deps(ctx, verifier=reconcile_verifier)
        report = sync_customers(
            ctx.sessions, legacy.iter_customers(), actor="test", cache=ctx.cache
        )
        assert report.created == len(customers)
        nb = httpx.Client(
            base_url=ep.new_url, headers={"Authorization": f"Bearer {ep.new_api_token}"}
        )

        # the first user's cancel is done by Stripe but its answer is lost (a 500 after it)
        double.fail_after["DELETE /v1/subscriptions/([^/]+)"] = 500
        for name in MIGRATE:
            sent = len(double.requests)
            mig = services.migrate_user(deps, f"u-{name}")
            assert mig.status == "succeeded", (name, mig.error_message)
            # legacy, from the double's own store: nothing billing any more
            subs = [s for s in double.all("subscription") if s["customer"] == customers[name]]
            assert [s["status"] for s in subs] == ["canceled"], name
            # one request per live subscription cancels and marks it (no read, no mark of
            # its own), also for the user whose answer was lost: re-read, not re-sent
            sub_path = f"/v1/subscriptions/{subs[0]['id']}"
            to_sub = [r for r in double.requests[sent:] if r.endswith(sub_path)]
            assert to_sub == [f"DELETE {sub_path}"], (name, to_sub)
            # what Stripe sent about it: one event, marked, suppressed on its payload alone
            [event] = [
                e
                for e in double.all("event")
                if e["data"]["object"]["id"] == subs[0]["id"] and e["type"].endswith(".deleted")
            ]
            assert migration_mark(event["data"]["object"]) == mig.id
            assert migration_reason("legacy", event, None, frozenset()), name
            # new, from newbilling's own API: the user is billed there
            bundle = nb.get(f"/v1/users/u-{name}/bundle").json()
            assert bundle["import"]["status"] == "active", name
        assert not double.fail_after  # the lost answer was injected

        for name, reason in DEFER.items():
            mig = services.migrate_user(deps, f"u-{name}")
            assert mig.status == "deferred" and reason in (mig.defer_reason or ""), (
                name,
                mig.status,
                mig.defer_reason,
                mig.error_message,
            )
            subs = [s for s in double.all("subscription") if s["customer"] == customers[name]]
            assert all(s["status"] != "canceled" for s in subs), name
            assert nb.get(f"/v1/users/u-{name}/bundle").status_code == 404

        # money carried exactly: the inclusive-tax user's invoice is 12.50, not 14.58
        bundle = nb.get("/v1/users/u-tax_inclusive/bundle").json()
        totals = sorted(i["total"] for i in bundle.get("invoices", []))
        assert totals == [1250], bundle
        ctx.close()
