"""The re-check before the pivot, proved from legacy events where the stream is complete.

Legacy is the in-process Stripe double in the current dialect (it records the event of
every write it models and lists them: ``GET /v1/events``) and real localstripe (whose
dialect cannot prove anything from its events: docs/legacy-gaps.md, Events); new is the
reference newbilling service over real HTTP. Requests are counted at the server: the
double's own request log, per thread.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from migration_world import World, open_world, settings_env, settings_from

from core import dbschema
from migration import services, steps
from migration.bootstrap import saga_deps
from migration.deps import SagaDeps, Step
from migration.models import Migration, MigrationStep
from migration.verify import reconcile_verifier
from multiplexer.backends import registry
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from multiplexer.backends.stripe.dialect import DIALECTS
from multiplexer.backends.stripe.events import read_changes
from multiplexer.bootstrap import MuxContext, build
from multiplexer.inventory import sync_customers
from sandbox.stack import Endpoints, Stack
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = [
    pytest.mark.newbilling,
    pytest.mark.localstripe,
    pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing"),
]

#: events are listed at once (settle 0); a read may follow the last one at once
FEED = {"event_settle_seconds": "0", "event_refresh_seconds": "0"}
#: ...or only 5 s after the last one: two workers whose re-checks meet share one read (each
#: verify then waits for the next read, past its cancel: that long, in this test only)
SHARED = {**FEED, "event_refresh_seconds": "5"}
#: per-user reads of the full re-read (a feed read is GET /v1/events)
PER_USER = ("GET /v1/customers/", "GET /v1/subscriptions", "GET /v1/invoices", "GET /v1/charges")


@pytest.fixture(scope="module")
def ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    with Stack(tmp_path_factory.mktemp("sandbox")) as endpoints:
        yield endpoints


def _table(**wrapped: Callable[..., object]) -> dict[str, Step]:
    return {
        name: dataclasses.replace(step, run=wrapped[name]) if name in wrapped else step
        for name, step in steps.STEPS.items()
    }


def _double_ctx(ep: Endpoints, double: StripeDouble, db: str, feed: dict[str, str]) -> MuxContext:
    settings = settings_from(settings_env(ep, db, **feed))
    legacy = StripeLegacyBackend(client_for(double), dialect="current")
    return build(
        settings, backends={"legacy": legacy, "new": registry.build_new(settings, lambda: None)}
    )


def _recheck_steps(ctx: MuxContext, user_id: str) -> list[tuple[int, str, dict]]:
    with ctx.sessions() as s:
        mig = s.scalars(sa.select(Migration).where(Migration.user_id == user_id)).one()
        rows = s.scalars(
            sa.select(MigrationStep)
            .where(MigrationStep.migration_id == mig.id, MigrationStep.step == "recheck")
            .order_by(MigrationStep.id)
        )
        return [(mig.generation, r.outcome, r.detail or {}) for r in rows]


def test_no_event_proves_two_users_unchanged_from_one_shared_read(ep, tmp_path):  # type: ignore[no-untyped-def]
    double = StripeDouble()
    for name in ("a", "b"):
        configurations.seed_plain_named(double, name)
    db = f"sqlite:///{tmp_path / 'twinbill.db'}"
    dbschema.upgrade(db)
    workers = [_double_ctx(ep, double, db, SHARED) for _ in range(2)]  # two workers, one database
    sync_customers(workers[0].sessions, workers[0].legacy.iter_customers(), actor="test")
    both_loaded = threading.Barrier(2, timeout=60)
    during: dict[int, list[tuple[int, int]]] = {}

    def recheck(deps: SagaDeps, mig: Migration):  # type: ignore[no-untyped-def]
        tries = during.setdefault(threading.get_ident(), [])
        if not tries:  # asked again after a wait for the other's read: no second barrier
            both_loaded.wait()  # both imports done: the first read serves both
        start = len(double.log)
        try:
            return steps.step_recheck(deps, mig)
        finally:
            tries.append((start, len(double.log)))

    results = {}

    def run(ctx: MuxContext, user: str) -> None:
        deps = saga_deps(ctx, verifier=reconcile_verifier, steps=_table(recheck=recheck))
        results[user] = services.migrate_user(deps, user)

    threads = [threading.Thread(target=run, args=(w, f"u-{n}")) for w, n in zip(workers, "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {u: m.status for u, m in results.items()} == {"u-a": "succeeded", "u-b": "succeeded"}
    sent = [
        path
        for tid, tries in during.items()
        for start, end in tries
        for who, path in double.log[start:end]
        if who == tid
    ]
    assert sent == ["GET /v1/events"]  # one feed read for both, no per-user call
    for user in ("u-a", "u-b"):
        *waits, (gen, outcome, detail) = _recheck_steps(workers[0], user)
        assert (gen, outcome, detail["proved_by"]) == (1, "ok", "events")
        assert all(w[1] == "waiting" for w in waits)  # at most the other's read
    for w in workers:
        w.close()


def _after_load(change: Callable[[str], None]) -> dict[str, Step]:
    def load(deps: SagaDeps, mig: Migration):  # type: ignore[no-untyped-def]
        out = steps.step_load(deps, mig)
        if mig.generation == 1:
            change(mig.user_id)
        return out

    return _table(load=load)


def test_an_event_after_the_snapshot_re_reads_and_a_real_change_restarts(ep, tmp_path):  # type: ignore[no-untyped-def]
    double = StripeDouble()
    for name in ("changed", "echo", "untold"):
        configurations.seed_plain_named(double, name)
    db = f"sqlite:///{tmp_path / 'twinbill.db'}"
    dbschema.upgrade(db)
    ctx = _double_ctx(ep, double, db, FEED)
    sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test")
    stripe = client_for(double)  # someone else, through Stripe's API, while the user is locked

    def change(user_id: str) -> None:
        name = user_id.removeprefix("u-")
        if name == "changed":  # a real change: the customer's metadata
            stripe.v1.customers.update(f"cus_{name}", {"metadata": {"vip": "yes"}})
        elif name == "echo":  # an event about the user that changes nothing
            stripe.v1.invoices.update(f"in_{name}", {"metadata": {}})
        else:  # an event whose customer cannot be told: a gap for everyone
            event = shapes.event(
                double.new_id("evt"),
                "invoice.updated",
                {"id": "in_elsewhere", "object": "invoice"},
                created=int(time.time()),
            )
            double.put("event", event)

    deps = saga_deps(ctx, verifier=reconcile_verifier, steps=_after_load(change))
    for name in ("changed", "echo", "untold"):
        before = len(double.log)
        mig = services.migrate_user(deps, f"u-{name}")
        assert mig.status == "succeeded", (name, mig.error_message)
        checks = _recheck_steps(ctx, f"u-{name}")
        first = checks[0][2]
        if name == "changed":
            assert mig.generation == 2 and checks[0][1] == "restart"
            assert "legacy state changed" in first["reason"]
        else:
            assert mig.generation == 1 and checks[0][1] == "ok"
            assert first["proved_by"] == "full re-read"
            why = "changed: invoice.updated" if name == "echo" else "gap: a invoice.updated event"
            assert first["why"].startswith(why), first
        # the fallback read the user again, at the server
        assert any(p.startswith(PER_USER) for _, p in double.log[before:])
    ctx.close()


def test_localstripe_cannot_prove_from_events_and_falls_back(ep, tmp_path):  # type: ignore[no-untyped-def]
    world: World | None = None

    def change(user_id: str) -> None:
        assert world is not None
        user = world.user(user_id)
        if user_id == changed:  # localstripe sends customer.updated for this
            world.stripe.v1.customers.update(user.customer_id, {"description": "vip"})
        elif user_id == silent:  # ...and no event at all for this
            [sub] = world.legacy_subs(user_id)
            world.stripe.v1.subscriptions.update(sub["id"], {"cancel_at_period_end": True})

    world = open_world(ep, tmp_path, env_extra=FEED, steps=_after_load(change))
    changed, silent, quiet = world.seed(3, seed=13, configs=("simple_monthly",))
    world.sync()
    started = datetime.now(UTC)
    for uid in (changed, silent, quiet):
        services.migrate_user(world.deps, uid)
    checks = {uid: _recheck_steps(world.ctx, uid) for uid in (changed, silent, quiet)}
    # no change: re-read (never proved from localstripe's events), and migrated
    [(gen, outcome, detail)] = checks[quiet]
    assert (gen, outcome, detail["proved_by"]) == (1, "ok", "full re-read")
    assert "localstripe sends no event" in detail["why"]
    # a change with an event, and one without: both caught by the re-read
    assert checks[changed][0][1] == "restart" and world.migrations(changed)[0].status == "succeeded"
    assert checks[silent][0][1] == "restart"
    world.check_exactly_one_system([changed, silent, quiet])  # from both systems' own answers

    # what localstripe's stream offers (read as if the dialect trusted it): the customer
    # update is there, the subscription update is not — why its dialect falls back
    probe = copy.copy(world.ctx.legacy._t)  # the adapter's transport, as if it trusted events
    probe.wire = dataclasses.replace(DIALECTS["localstripe"], events_gap="")
    got = read_changes(probe, started)
    named = {k for ch in got.changes for k in ch.keys}
    assert world.user(changed).customer_id in named
    assert not any(ch.event_type == "customer.subscription.updated" for ch in got.changes)
    world.ctx.close()


def _verify_detail(ctx: MuxContext, user_id: str) -> dict:
    with ctx.sessions() as s:
        mig = s.scalars(sa.select(Migration).where(Migration.user_id == user_id)).one()
        [row] = s.scalars(
            sa.select(MigrationStep).where(
                MigrationStep.migration_id == mig.id,
                MigrationStep.step == "verify",
                MigrationStep.outcome == "ok",
            )
        )
        return row.detail or {}


def test_verify_knows_legacy_from_the_cancel_answer_unless_someone_else_touched_the_user(
    ep, tmp_path
):  # type: ignore[no-untyped-def]
    """After the pivot, legacy's subscriptions are the snapshot's as the cancel answered —
    no listing — when the event stream shows nothing else about the user (the cancel's own
    deletion names nothing). A subscription someone creates right after the cancel is an
    event about the user: verify lists legacy, and sees it billing next to the new system."""
    double = StripeDouble()
    for name in ("quiet", "meddled"):
        configurations.seed_plain_named(double, name)
    db = f"sqlite:///{tmp_path / 'twinbill.db'}"
    dbschema.upgrade(db)
    ctx = _double_ctx(ep, double, db, FEED)
    sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test")
    stripe = client_for(double)
    [price] = [p["id"] for p in double.all("price")]

    def cancel(deps: SagaDeps, mig: Migration):  # type: ignore[no-untyped-def]
        out = steps.step_cancel(deps, mig)
        if mig.user_id == "u-meddled":  # someone else, through Stripe's API, right after
            stripe.v1.subscriptions.create({"customer": "cus_meddled", "items": [{"price": price}]})
        return out

    deps = saga_deps(ctx, verifier=reconcile_verifier, steps=_table(cancel=cancel))
    after_cancel: dict[str, list[str]] = {}
    for name in ("quiet", "meddled"):
        mig = services.migrate_user(deps, f"u-{name}")
        assert mig.status == "succeeded", (name, mig.error_message)
        paths = [p for _, p in double.log]
        last_delete = max(
            i for i, p in enumerate(paths) if p.startswith("DELETE /v1/subscriptions")
        )
        after_cancel[name] = paths[last_delete + 1 :]
    quiet = _verify_detail(ctx, "u-quiet")
    assert quiet["legacy_subscriptions"] == "cancel answers" and quiet["clean"], quiet
    assert not any(p.startswith("GET /v1/subscriptions") for p in after_cancel["quiet"])
    meddled = _verify_detail(ctx, "u-meddled")
    assert meddled["legacy_subscriptions"] == "listed", meddled
    assert any(p.startswith("GET /v1/subscriptions") for p in after_cancel["meddled"])
    assert not meddled["clean"] and meddled["independent"], meddled  # billed by both
    ctx.close()
