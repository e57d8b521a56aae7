"""Shadow rehearsal of a cohort over the staging population, on real services.

One sandbox (localstripe + the reference newbilling over HTTP) and one seeded population
(every configuration once) for the whole module: each test starts its own rehearsal of
the same cohort and ends it, the last one runs the cohort. Every "nobody moved" claim is
read back through each system's own API (``World.legacy_state``, ``World.bundle``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from migration_world import World, open_world, wait_until

from migration import cohorts, services, shadow, shadow_sync
from migration.models import MigrationStep, ShadowCheck, ShadowImport
from migration.shadow_reads import ShadowReadHooks
from migration.shadow_report import build
from multiplexer.backends.base import UserRef
from multiplexer.facade import BillingMux
from multiplexer.scientist import Scientist
from sandbox.faultproxy import FaultProxy
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

USERS = 13  # every configuration once
SECRET = "whsec_shadow_test"
COHORT = "staging"
#: bug -> next-charge fields the shadow report must name (as prove does)
BUGS = {
    "credit-sign": {"balance", "amount_due"},
    "trial-state": {"state", "charge_at"},
    "tax-rate": {"tax", "tax_breakdown", "total"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("shadow")
    with Stack(tmp / "sandbox") as ep:
        w = open_world(
            ep, tmp, env_extra={"legacy_rate_limit": "100", "legacy_webhook_secret": SECRET}
        )
        users = w.seed(USERS)
        w.sync()
        cohorts.create(w.ctx.sessions, COHORT, users, actor="test")
        yield w
        w.ctx.close()


def rehearse(world: World, *, bug: str | None = None) -> list[str]:
    _, rows = shadow.start(world.ctx.sessions, COHORT, days=7, actor="test", inject_bug=bug)
    for row_id in rows:
        shadow_sync.sync(world.deps, row_id, trigger="start")
    return rows


def shadow_rows(world: World) -> list[ShadowImport]:
    with world.ctx.sessions() as session:
        return list(session.scalars(sa.select(ShadowImport).order_by(ShadowImport.user_id)))


def assert_nobody_moved(world: World) -> None:
    """Every route still legacy, every legacy subscription as seeded, nobody billed by new."""
    routes = world.routes()
    for user in world.seeded:
        uid = user.app_user_id
        assert (routes[uid].state, routes[uid].system) == ("legacy", "legacy"), uid
        assert world.legacy_state(uid) == world.baseline[uid]["state"], uid
        assert not world.new_billing(uid) or world.bundle(uid) is None, uid


def assert_nothing_left_in_new(world: World) -> None:
    for row in shadow_rows(world):
        assert row.status in ("discarded", "adopted"), (row.user_id, row.status)
        if row.status == "discarded" and row.import_id:
            imp = world.nb.get(f"/v1/imports/{row.import_id}").json()
            assert imp["status"] == "discarded", (row.user_id, imp)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_injected_bug_shows_in_the_shadow_report_before_anyone_moves(
    world: World, bug: str
) -> None:
    rehearse(world, bug=bug)
    with world.ctx.sessions() as session:
        report = build(session, COHORT)
    assert not report.clean and not report.reusable
    assert BUGS[bug] <= set(report.mismatches_by_field), report.mismatches_by_field
    assert report.mismatches_by_kind.get("next_charge"), report.mismatches_by_kind
    assert_nobody_moved(world)
    shadow.end(world.deps, COHORT, actor="test", reason="test over")
    assert_nothing_left_in_new(world)


class Gate:
    """The real new backend, held at a gate: the test decides when a read may answer."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.open, self.entered = inner, threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith(("list_", "get_history")):
            return attr

        def held(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            assert self.open.wait(60), "gate never opened"
            return attr(*args, **kwargs)

        return held


def test_a_clean_population_reports_zero_mismatches_and_the_app_keeps_its_answers(
    world: World,
) -> None:
    rows = rehearse(world)
    with world.ctx.sessions() as session:
        report = build(session, COHORT)
    imported = [r for r in shadow_rows(world) if r.status == "active"]
    assert len(rows) == USERS and imported
    assert report.users_compared == len(imported), report.as_dict()
    assert report.mismatches_by_field == {} and report.users_with_mismatches == 0
    assert report.clean and report.reusable, report.verdict
    for row in imported:  # a pending import in new that never bills
        bundle = world.bundle(row.user_id)
        assert bundle is not None and bundle["import"]["status"] == "pending", row.user_id
    assert_nobody_moved(world)

    # the app's reads: the legacy answer, unchanged; the new one compared in the background
    mux, legacy = world.ctx.mux, world.ctx.legacy
    for row in imported:
        ref = UserRef(row.user_id, world.user(row.user_id).customer_id)
        assert mux.list_subscriptions(row.user_id) == legacy.list_subscriptions(ref)
        assert mux.list_invoices(row.user_id) == legacy.list_invoices(ref)
        assert mux.list_payments(row.user_id) == legacy.list_payments(ref)
        assert mux.summary(row.user_id).system.value == "legacy"
    assert mux._scientist is not None and mux._scientist.drain(60)
    with world.ctx.sessions() as session:
        report = build(session, COHORT)
        reads = list(session.scalars(sa.select(ShadowCheck).where(ShadowCheck.trigger == "facade")))
    assert report.reads_compared == 4 * len(imported), [(c.kind, c.outcome) for c in reads]
    assert report.clean, report.examples


def _facade_checks(world: World) -> list[ShadowCheck]:
    with world.ctx.sessions() as session:
        return list(
            session.scalars(
                sa.select(ShadowCheck)
                .where(ShadowCheck.trigger == "facade")
                .order_by(ShadowCheck.id)
            )
        )


def _mux(world: World, new: Any, *, timeout: float) -> tuple[BillingMux, Scientist]:
    """The app's facade over real legacy and ``new``, with its own scientist (1 slot)."""
    ctx = world.ctx
    scientist = Scientist(ShadowReadHooks(ctx.sessions), timeout=timeout, max_in_flight=1)
    mux = BillingMux(
        ctx.sessions,
        ctx.cache,
        {"legacy": ctx.legacy, "new": new},
        max_amount_major=10_000,
        scientist=scientist,
    )
    return mux, scientist


def test_a_new_system_that_hangs_or_fails_never_changes_the_apps_answer(world: World) -> None:
    """The rehearsal of the previous test is still active. No wall clock: the gate decides."""
    row = next(r for r in shadow_rows(world) if r.status == "active")
    ref = UserRef(row.user_id, world.user(row.user_id).customer_id)
    expected = world.ctx.legacy.list_subscriptions(ref)
    before = len(_facade_checks(world))

    # hangs: the app's call returns while the comparison is still waiting for new
    gate = Gate(world.ctx.new)
    mux, scientist = _mux(world, gate, timeout=600)
    assert mux.list_subscriptions(row.user_id) == expected
    assert gate.entered.wait(30)
    assert scientist.stats()["in_flight"] == 1 and len(_facade_checks(world)) == before
    assert mux.list_subscriptions(row.user_id) == expected  # no free slot: dropped, not queued
    assert scientist.stats()["dropped"] == 1
    gate.open.set()
    assert scientist.drain(60)
    assert [c.outcome for c in _facade_checks(world)[before:]] == ["clean"]
    scientist.close()

    # hangs past the timeout: recorded as a timeout, the answer unchanged
    gate = Gate(world.ctx.new)
    mux, scientist = _mux(world, gate, timeout=0.05)
    assert mux.list_invoices(row.user_id) == world.ctx.legacy.list_invoices(ref)
    assert scientist.drain(60)
    assert scientist.stats()["timeout"] == 1
    assert _facade_checks(world)[-1].outcome == "timeout"
    gate.open.set()
    scientist.close()

    # 500s: a real HTTP 500 from a proxy in front of newbilling
    from multiplexer.backends import registry

    with FaultProxy(world.endpoints.new_url, error_rate=1.0) as proxy:
        settings = world.settings.model_copy(update={"new_base_url": proxy.url})
        failing = registry.build_new(settings, lambda: None)
        mux, scientist = _mux(world, failing, timeout=600)
        assert mux.list_subscriptions(row.user_id) == expected
        assert mux.summary(row.user_id).system.value == "legacy"
        assert scientist.drain(60)
        assert scientist.stats()["error"] == 2 and proxy.stats()["injected_500"] >= 2
        scientist.close()
    assert [c.outcome for c in _facade_checks(world)[-2:]] == ["error", "error"]
    with world.ctx.sessions() as session:
        report = build(session, COHORT)
    assert report.clean and report.errors >= 3  # could not compare: counted, not a mismatch


def test_a_legacy_webhook_re_imports_a_changed_user_under_a_new_generation(world: World) -> None:
    """The real path: a signed legacy webhook, the root's hook, a Celery task in a worker."""
    from core.queue import embedded_worker
    from multiplexer.webhooks import inbound
    from multiplexer.webhooks.signatures import sign

    row = next(r for r in shadow_rows(world) if r.status == "active" and r.generation == 1)
    user = world.user(row.user_id)
    world.stripe.v1.customers.update(user.customer_id, {"metadata": {"shadow_test": "changed"}})
    body = json.dumps(
        {
            "id": "evt_shadow_1",
            "type": "customer.updated",
            "data": {"object": {"id": user.customer_id, "object": "customer"}},
        }
    ).encode()
    header = sign(SECRET, body, int(time.time()))
    ctx = world.ctx

    def webhook_check() -> ShadowCheck | None:
        with ctx.sessions() as session:
            return session.scalars(
                sa.select(ShadowCheck).where(
                    ShadowCheck.user_id == row.user_id, ShadowCheck.trigger == "webhook"
                )
            ).first()

    with embedded_worker(ctx.celery, concurrency=1):
        outcome = inbound.receive(
            ctx.sessions,
            ctx.settings,
            "legacy",
            body,
            header,
            lambda _u: None,
            ctx.on_legacy_event,
        )
        assert outcome.user_id == row.user_id
        check = wait_until(webhook_check, 60, "the webhook's shadow re-sync")
    with ctx.sessions() as session:
        after = session.get(ShadowImport, row.id)
    assert after is not None and after.generation == 2 and after.import_id != row.import_id
    assert check.detail["reimported"] is True and check.outcome == "clean", check.detail
    old = world.nb.get(f"/v1/imports/{row.import_id}").json()
    assert old["status"] == "discarded"
    assert_nobody_moved(world)
    shadow.end(world.deps, COHORT, actor="test", reason="test over")
    assert_nothing_left_in_new(world)


def test_cohort_run_reuses_a_clean_rehearsals_imports_and_leaves_nothing_behind(
    world: World, tmp_path: Path
) -> None:
    rehearse(world)
    shadowed = {r.user_id: r.import_id for r in shadow_rows(world) if r.status == "active"}
    started: list[str] = []
    services.start_cohort(world.deps, COHORT, started.append, actor="test")
    for mig_id in started:
        services.run_member(world.deps, mig_id)
    reused = {}
    for uid, import_id in shadowed.items():
        mig = world.migrations(uid)[-1]
        with world.ctx.sessions() as session:
            load = session.scalars(
                sa.select(MigrationStep).where(
                    MigrationStep.migration_id == mig.id,
                    MigrationStep.step == "load",
                    MigrationStep.outcome == "ok",
                )
            ).first()
        if load is not None:
            reused[uid] = (load.detail or {}).get("shadow") and mig.import_id == import_id
    assert reused and all(reused.values()), reused
    wait_until(lambda: all(r.status != "active" for r in shadow_rows(world)), 5, "no live row")
    assert_nothing_left_in_new(world)
    world.check_exactly_one_system([u.app_user_id for u in world.seeded])
