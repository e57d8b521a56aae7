"""Forward -> rollback -> forward again, for every configuration the forward saga migrates,
on real services: localstripe for legacy, the reference newbilling service over HTTP.

One sandbox and one seeded population serve every case. At each stage both systems'
own APIs (the stripe SDK straight to localstripe, httpx straight to newbilling) show
exactly one billing system and the same next charge; the refusals write nothing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crash_worker import saga_overrides
from migration_world import BILLING, DEFERRED_CONFIGS, PLAIN_CONFIGS, World, open_world

from admin.bootstrap import bootstrap
from core.errors import InvalidInput, UnknownUser
from core.money import Money
from migration import reaper, records, rollback, saga, services
from migration.models import Migration
from sandbox.legacy.configurations import CONFIGURATIONS
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

#: the forward saga migrates these; a cancel scheduled at period end is not rolled back
#: (refused with its reason: see test_refusals_name_the_reason_and_write_nothing)
SCHEDULED_CANCEL = "cancel_at_period_end"
MIGRATED = tuple(c for c in CONFIGURATIONS if c not in DEFERRED_CONFIGS)
ROUND_TRIP = tuple(c for c in MIGRATED if c != SCHEDULED_CANCEL)
Charge = tuple[int, int, str]  # (unix seconds, amount due, currency)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("rollback")
    with Stack(tmp / "sandbox") as ep:
        w = open_world(ep, tmp, env_extra={"legacy_rate_limit": "200"})
        w.seed(2 * len(CONFIGURATIONS))  # every configuration twice (round robin)
        w.sync()
        yield w
        w.ctx.close()


def user_of(world: World, config: str, n: int = 0) -> str:
    return [u.app_user_id for u in world.seeded if u.config == config][n]


def legacy_next(world: World, uid: str) -> list[Charge]:
    """Legacy's own answer: every billing subscription's upcoming invoice (localstripe dates
    a trial's preview at period end: the charge is at ``trial_end``, docs/legacy-gaps.md)."""
    out = []
    cid = world.user(uid).customer_id
    for sub in world.legacy_subs(uid):
        if sub["status"] not in BILLING or sub.get("cancel_at_period_end"):
            continue
        if sub["status"] == "incomplete" and not (sub.get("trial_end") or 0) > time.time():
            continue
        upcoming = world.stripe.raw_request(
            "get", "/v1/invoices/upcoming", customer=cid, subscription=sub["id"]
        )
        inv = world.stripe.deserialize(upcoming, api_mode="V1")
        trial = sub.get("trial_end")
        at = trial if trial and trial > time.time() else sub["current_period_end"]
        out.append((int(at), int(inv["amount_due"]), str(inv["currency"]).upper()))
    return sorted(out)


def new_next(world: World, uid: str) -> list[Charge]:
    """The new system's own answer (``GET /v1/users/{id}/preview``)."""
    answer = world.nb.get(f"/v1/users/{uid}/preview")
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return sorted(
        (_unix(c["charge_at"]), c["amount_due"], c["currency"])
        for c in answer.json()["subscriptions"]
        if c["charge_at"] is not None
    )


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp())


def steps_ok(world: World, mig: Migration) -> list[str]:
    return [s for s, _, outcome in world.steps(mig.id) if outcome == "ok"]


@pytest.mark.parametrize("config", ROUND_TRIP)
def test_forward_rollback_forward_again(world: World, config: str) -> None:
    uid = user_of(world, config)
    before = legacy_next(world, uid)

    forward = services.migrate_user(world.deps, uid)
    assert forward.status == "succeeded", (config, forward.error_message)
    assert world.check_exactly_one_system([uid]) == {uid: "new"}
    charged = new_next(world, uid)
    assert charged == before, config

    back = rollback.rollback_user(world.deps, uid)
    assert back.status == "succeeded", (config, back.error_message, world.steps(back.id))
    assert steps_ok(world, back) == list(rollback.ORDER)
    assert world.check_exactly_one_system([uid]) == {uid: "legacy"}
    assert legacy_next(world, uid) == charged, config
    assert new_next(world, uid) == []
    bundle = world.bundle(uid)
    assert bundle is not None and bundle["import"]["status"] == "rolled_back"
    recreated = [
        s for s in world.legacy_subs(uid) if (s.get("metadata") or {}).get("twinbill_rollback")
    ]
    assert {s["metadata"]["twinbill_rollback"] for s in recreated} <= {back.id}
    for sub in recreated:  # trialing until the renewal: nothing invoiced now
        assert sub["trial_end"] > time.time() and sub["latest_invoice"] is None
    route = world.routes()[uid]
    assert (route.state, route.system, route.pivoted_at) == ("legacy", "legacy", None)

    again = services.migrate_user(world.deps, uid)
    assert again.status == "succeeded", (config, again.error_message, world.steps(again.id))
    assert world.check_exactly_one_system([uid]) == {uid: "new"}
    assert new_next(world, uid) == charged, config


def test_refusals_name_the_reason_and_write_nothing(world: World) -> None:
    on_legacy = user_of(world, "simple_monthly", 1)
    gone = user_of(world, "multi_seat", 1)
    leaving = user_of(world, SCHEDULED_CANCEL)
    for uid in (gone, leaving):
        assert services.migrate_user(world.deps, uid).status == "succeeded"
    world.stripe.v1.customers.delete(world.user(gone).customer_id)

    def written() -> tuple[int, int, Any]:
        with world.ctx.sessions() as session:
            migs = session.scalar(sa.select(sa.func.count()).select_from(Migration))
        return migs or 0, len(world.export()), {u: r.version for u, r in world.routes().items()}

    snapshot = written()
    cases = [
        (on_legacy, InvalidInput, "not new"),
        ("u_nobody", UnknownUser, "u_nobody"),
        (gone, InvalidInput, "is gone"),
        (leaving, InvalidInput, "scheduled to cancel at period end"),
    ]
    for uid, error, reason in cases:
        with pytest.raises(error, match=reason):
            rollback.rollback_user(world.deps, uid)
        with pytest.raises(error, match=reason):
            rollback.plan_user(world.deps, uid)  # the dry run says the same
    assert written() == snapshot


def test_unpaid_invoice_in_the_new_system_is_refused(world: World) -> None:
    uid = user_of(world, "yearly", 1)
    assert services.migrate_user(world.deps, uid).status == "succeeded"
    # the new system bills the user natively and the invoice stays open: a plan change
    # on a simulated card always succeeds, so the open invoice is written as the service
    # stores it, through its own database (a dunning state the sandbox cannot reach)
    (inv, *_) = world.bundle(uid)["invoices"]  # type: ignore[index]
    _reopen_invoice(world, inv["id"])
    before = (world.bundle(uid), world.routes()[uid].version, legacy_next(world, uid))
    with pytest.raises(InvalidInput, match=f"unpaid invoice {inv['id']}"):
        rollback.rollback_user(world.deps, uid)
    assert (world.bundle(uid), world.routes()[uid].version, legacy_next(world, uid)) == before


def _reopen_invoice(world: World, invoice_id: str) -> None:
    (db,) = Path(world.workdir).rglob("newbilling.db")  # the sandbox service's own database
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE nb_invoices SET status='open', amount_due=total, amount_paid=0 "
                    "WHERE id=:id"),
            {"id": invoice_id},
        )  # fmt: skip
    engine.dispose()


def test_history_from_the_stay_in_new_stays_readable_through_the_facade(world: World) -> None:
    uid = user_of(world, "two_subscriptions", 1)
    assert services.migrate_user(world.deps, uid).status == "succeeded"
    currency = world.routes()[uid].currency or world.user(uid).currency
    paid = world.ctx.mux.record_offline_payment(  # money only the new system recorded
        uid, Money(currency.upper(), 500), reference="wire-1", paid_at=None, actor="test"
    )
    back = rollback.rollback_user(world.deps, uid)
    assert back.status == "succeeded", back.error_message
    history = world.ctx.mux.new_system_history(uid)
    assert history is not None
    assert {s.status.value for s in history.subscriptions} == {"canceled"}
    assert len(history.invoices) == len(world.bundle(uid)["invoices"])  # type: ignore[index]
    assert paid.id in {p.id for p in history.payments}
    with world.ctx.sessions() as session:  # and the rollback's report lists it
        from migration.records import steps_of

        build = next(r for r in steps_of(session, back.id) if r.step == "rb_build")
        verify = next(r for r in steps_of(session, back.id) if r.step == "rb_verify")
    assert paid.id in build.detail["history"]["payments"]
    assert verify.detail["clean"] and verify.detail["history_in_new"] == build.detail["history"]


@pytest.fixture(scope="module")
def crash_users(world: World) -> dict[str, str]:
    """One plain user per rollback step, migrated forward (seeded after the population)."""
    users = world.seed(len(rollback.ORDER), configs=PLAIN_CONFIGS)
    world.sync()
    for uid in users:
        assert services.migrate_user(world.deps, uid).status == "succeeded"
    return dict(zip(rollback.ORDER, users, strict=True))


def run_killed(world: World, mig_id: str, step: str) -> int:
    """Run the rollback in a child process built by the composition root with crash_worker's
    hook, which SIGKILLs it right after ``step``'s work (its step record still open). A fork,
    not a fresh interpreter: the same real process death, without paying the imports again;
    the child builds its own root (engine, HTTP clients) and touches none of ours."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies by SIGKILL
        try:
            os.environ["TWINBILL_TEST_CRASH_AFTER"] = step
            root = bootstrap(world.settings, saga=saga_overrides())
            saga.run(root.saga, mig_id)
        finally:
            os._exit(3)  # the hook did not fire
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.mark.parametrize("step", rollback.ORDER)
def test_sigkill_at_each_rollback_step_is_finished_by_the_reaper(
    world: World, crash_users: dict[str, str], step: str
) -> None:
    uid = crash_users[step]
    charged = new_next(world, uid)
    mig_id = records.create(world.ctx.sessions, uid, direction="rollback")
    assert run_killed(world, mig_id, step) == signal.SIGKILL
    (mig,) = [m for m in world.migrations(uid) if m.id == mig_id]
    assert mig.status == "running" and (step, 1, "running") in world.steps(mig_id)
    assert world.routes()[uid].state in ("migrating", "legacy")

    deps = dataclasses.replace(world.deps, stale_after=0.2)  # the lease of the dead worker
    time.sleep(0.3)  # let it age past that lease (a wait for staleness, not for a result)
    reaped = reaper.reap(deps, lambda found: saga.run(deps, found))
    assert reaped["resumed"] == 1, reaped

    done = records.load(world.ctx.sessions, mig_id)
    assert done.status == "succeeded", (done.error_message, world.steps(mig_id))
    trail = world.steps(mig_id)
    assert trail.index((step, 1, "running")) < trail.index((step, 2, "ok")), trail
    assert world.check_exactly_one_system([uid]) == {uid: "legacy"}
    assert legacy_next(world, uid) == charged
    recreated = [
        s for s in world.legacy_subs(uid) if (s.get("metadata") or {}).get("twinbill_rollback")
    ]
    assert len([s for s in recreated if s["status"] in BILLING]) == len(charged)  # never twice


def test_cli_rollback_and_cohort_rollback(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from admin.cli import app
    from migration import cohort_progress, cohorts

    monkeypatch.setattr("admin.cli.rollback._root", lambda: world.ctx)
    monkeypatch.setattr("admin.cli.migrate._deps", lambda: world.deps)
    single, member = user_of(world, "trialing", 1), user_of(world, "gifted", 1)
    cohorts.create(world.ctx.sessions, "rb-cli", [member], actor="test")
    assert services.migrate_user(world.deps, single).status == "succeeded"
    assert services.migrate_user(world.deps, member, cohort="rb-cli").status == "succeeded"
    cli = CliRunner()

    planned = cli.invoke(app, ["rollback", single, "--dry-run", "--json"])
    assert planned.exit_code == 0, planned.output
    (plan,) = json.loads(planned.stdout)["plans"]
    assert [s["of"] for s in plan["recreate"]] == plan["cancel_in_new"]
    assert world.routes()[single].state == "new"  # a dry run writes nothing

    refused = cli.invoke(app, ["rollback", single])  # no terminal, no --yes
    assert refused.exit_code == 2 and world.routes()[single].state == "new"

    done = cli.invoke(app, ["rollback", single, "--yes", "--json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["status"] == "succeeded" and body["clean"], body
    assert "will roll back 1 user: cancel 1 subscription in the new system" in done.stderr

    again = cli.invoke(app, ["rollback", single, "--yes"])  # not on new any more: refused
    assert again.exit_code == 2 and "not new" in again.stderr

    cohort_run = cli.invoke(app, ["cohort", "rollback", "rb-cli", "--yes", "--json"])
    assert cohort_run.exit_code == 0, cohort_run.output
    (result,) = json.loads(cohort_run.stdout)["results"]
    assert result["user_id"] == member and result["status"] == "succeeded"
    with world.ctx.sessions() as session:  # pending again: `cohort run` would move it anew
        assert cohort_progress.progress(session, "rb-cli").by_status.get("pending") == 1
    assert world.check_exactly_one_system([single, member]) == {single: "legacy", member: "legacy"}
