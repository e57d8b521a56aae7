"""A cohort on a `twinbill worker` process over Redis, against the current Stripe API
(the double served over HTTP) with the event re-check at its production settings
(events listable 1 s after they happen): every re-check must first wait for the feed.

The worker has one thread. A waiting migration releases its lease and is published again
when due, on the control queue, so that thread migrates the next user meanwhile; each user
is then proved unchanged from the shared event reads — no per-user re-read — and verify
knows legacy's subscriptions from the cancel's answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from migration_world import (
    cli_worker,
    process_env,
    run_cli,
    settings_env,
    settings_from,
    wait_until,
)

from admin.bootstrap import bootstrap
from core import dbschema
from migration import cohort_progress
from migration.models import Migration, MigrationStep, Snapshot
from multiplexer.inventory import sync_customers
from sandbox.stack import Stack
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble
from tests.stripe_current.served import API_KEY, ServedDouble

pytestmark = [
    pytest.mark.newbilling,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing"),
]

USERS = 5


def test_a_waiting_migration_frees_the_only_worker_thread_for_the_next_user(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    double = StripeDouble()
    for i in range(USERS):
        configurations.seed_plain_named(double, f"w{i}")
    with Stack(tmp_path / "sandbox") as ep, ServedDouble(double) as url:
        env = settings_env(
            ep,
            postgres_url,
            redis_url=redis_url,
            legacy_url=url,
            legacy_backend="stripe",
            legacy_api_key=API_KEY,
            event_settle_seconds="1",  # production's: a re-check right after its import waits
            event_refresh_seconds="1",
            bulk_reads="on",
        )
        dbschema.upgrade(postgres_url)
        ctx = bootstrap(settings_from(env))
        report = sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test")
        assert report.created == USERS
        users = [f"u-w{i}" for i in range(USERS)]
        penv = process_env(env)
        with cli_worker(penv, tmp_path / "worker.log", concurrency=1):
            run_cli(penv, "cohort", "create", "waits", "--users", ",".join(users))
            run_cli(penv, "cohort", "run", "waits", "--yes")

            def settled() -> bool:
                with ctx.sessions() as session:
                    return cohort_progress.progress(session, "waits").settled

            wait_until(settled, 120, "the worker to finish the cohort")
        with ctx.sessions() as session:
            migs = {m.id: m for m in session.query(Migration)}
            rows = session.query(MigrationStep).order_by(MigrationStep.started_at).all()
            kept = {m.id: sorted(session.get(Snapshot, m.snapshot_id).body) for m in migs.values()}
        ctx.close()
    assert sorted(m.status for m in migs.values()) == ["succeeded"] * USERS
    waits = [r for r in rows if r.outcome == "waiting"]
    assert waits, "no re-check had to wait: the settle time did not apply"
    # while a user waited, the one thread ran another user's steps
    freed = 0
    for w in waits:
        resumed = min(
            r.started_at
            for r in rows
            if r.migration_id == w.migration_id and r.started_at > w.started_at
        )
        others = [
            r
            for r in rows
            if r.migration_id != w.migration_id and w.finished_at < r.started_at < resumed
        ]
        freed += bool(others)
    assert freed, "no other user's step ran while a migration waited"
    for mig_id in migs:
        [recheck] = [
            r
            for r in rows
            if r.migration_id == mig_id and r.step == "recheck" and r.outcome == "ok"
        ]
        assert recheck.detail["proved_by"] == "events", recheck.detail
        [verify] = [
            r for r in rows if r.migration_id == mig_id and r.step == "verify" and r.outcome == "ok"
        ]
        assert verify.detail["clean"] and verify.detail["legacy_subscriptions"] == "cancel answers"
    # each customer was retrieved once: by `cohort run`'s question ("will cancel N legacy
    # subscriptions", read per user for cohorts of up to 25), never by the saga
    per_user = [p for p in double.requests if re.fullmatch(r"GET /v1/customers/cus_\w+", p)]
    assert sorted(per_user) == [f"GET /v1/customers/cus_w{i}" for i in range(USERS)], per_user
    # the cohort's read left each customer's balance transactions to its own preflight,
    # which read them once (the other read is `cohort run`'s question, as above) and
    # stored the whole snapshot
    balance = sorted(p for p in double.requests if p.endswith("/balance_transactions"))
    assert balance == sorted(
        2 * [f"GET /v1/customers/cus_w{i}/balance_transactions" for i in range(USERS)]
    )
    for mig_id, keys in kept.items():
        assert "balance_transactions" in keys, (mig_id, keys)
