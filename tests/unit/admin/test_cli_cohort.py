"""`twinbill cohort ...` and `twinbill migrate` through typer's CliRunner over fake backends.

Exit codes: 0 all good, 1 something needs a human, 2 usage/config error. Commands
that cancel legacy subscriptions say so and ask: without a terminal and without
``--yes`` they refuse and nothing is started. ``--json`` stdout is one document.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from admin.cli import app
from core.db import transaction
from core.errors import BackendRejected
from core.settings import load_settings
from migration import cohorts, services
from migration.models import Cohort, CohortMember, Migration
from tests.unit.migration.conftest import World


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = World(tmp_path)
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'saga.db'}",
        legacy_api_key="sk_live_" + "x" * 24,
    )

    def enqueue(mid: str) -> None:  # "workers elsewhere": run each one inline
        services.run_member(w.deps, mid)

    def prefetch(cohort: str, ids: list[str]) -> None:
        services.prefetch_chunk(w.deps, cohort, ids, enqueue, prefetch)

    def start_cohort(name: str, *, actor: str, retry_failed: bool = False) -> int:  # as App's
        return services.start_cohort(
            w.deps, name, enqueue, actor=actor, retry_failed=retry_failed, prefetch=prefetch
        )

    root = SimpleNamespace(
        saga=w.deps,
        settings=settings,
        celery=SimpleNamespace(embedded=False),
        enqueue_migration=enqueue,
        start_cohort=start_cohort,
    )
    monkeypatch.setattr("admin.cli.context.app_root", lambda: root)
    monkeypatch.setattr("admin.cli.context.database", lambda: w.sessions)  # list, status
    return w


@pytest.fixture
def cli():
    return CliRunner()


def _migrations(w: World) -> int:
    with w.sessions() as s:
        return int(s.scalar(sa.select(sa.func.count(Migration.id))))


def _cohort(w: World, name: str) -> Cohort:
    with w.sessions() as s:
        return s.get(Cohort, name)


def test_run_without_tty_and_without_yes_refuses_and_starts_nothing(world, cli):
    ref = world.user("u1")
    world.user("u2")
    cohorts.create(world.sessions, "pilot", ["u1", "u2"], actor="t")
    result = cli.invoke(app, ["cohort", "run", "pilot", "--wait"])
    assert result.exit_code == 2, result.output
    assert "will migrate 2 users: cancel 2 legacy subscriptions" in result.stderr
    assert "(live key)" in result.stderr and "environment: database sqlite:///" in result.stderr
    assert "pass --yes" in result.stderr
    assert _cohort(world, "pilot").status == "created" and _migrations(world) == 0
    assert world.legacy.list_subscriptions(ref)[0].status.billing


def test_run_asks_at_a_terminal_and_no_means_nothing_started(world, cli, monkeypatch):
    world.user("u1")
    cohorts.create(world.sessions, "pilot", ["u1"], actor="t")
    monkeypatch.setattr("admin.cli.guard.stdin_is_tty", lambda: True)
    result = cli.invoke(app, ["cohort", "run", "pilot"], input="n\n")
    assert result.exit_code == 2 and "Go ahead?" in result.output
    assert _migrations(world) == 0
    result = cli.invoke(app, ["cohort", "run", "pilot", "--wait"], input="y\n")
    assert result.exit_code == 0, result.output
    assert world.route("u1").state == "new"


def test_clean_cohort_exits_0_and_json_is_the_only_stdout(world, cli):
    world.user("u1")
    cohorts.create(world.sessions, "pilot", ["u1"], actor="t")
    result = cli.invoke(app, ["cohort", "run", "pilot", "--yes", "--wait", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "done" and doc["needs_human"] is False
    assert doc["started_at"].endswith("Z")  # ISO 8601 UTC


def _reject(world, user_id):
    original = world.new.create_import

    def create_import(payload, *, idempotency_key):
        if payload["user_id"] == user_id:
            raise BackendRejected("invoices[0].total: does not add up", backend="new")
        return original(payload, idempotency_key=idempotency_key)

    world.new.create_import = create_import


def test_halted_cohort_exits_1_from_run_status_and_retry_failed(world, cli):
    for u in ("u1", "u2", "u3"):
        world.user(u)
    cohorts.create(world.sessions, "c", ["u1", "u2", "u3"], actor="t", halt_at_bp=500)
    _reject(world, "u1")
    run = cli.invoke(app, ["cohort", "run", "c", "--yes", "--wait"])
    assert run.exit_code == 1, run.output
    assert "halted" in run.stdout
    status = cli.invoke(app, ["cohort", "status", "c", "--json"])
    assert status.exit_code == 1
    assert json.loads(status.stdout)["status"] == "halted"
    retry = cli.invoke(app, ["cohort", "retry-failed", "c", "--yes", "--wait"])
    assert retry.exit_code == 1, retry.output  # u1 fails again


def _fail_after_pivot(world, name, user_id):
    """The member's migration failed after the legacy cancel (pivoted)."""
    with transaction(world.sessions) as s:
        mig = Migration(
            id=f"m-{user_id}",
            user_id=user_id,
            cohort=name,
            status="failed",
            dry_run=False,
            include_in_flight=False,
            pivoted=True,
            generation=1,
            error_kind="backend",
            error_message="activate: new service down",
        )
        s.add(mig)
        member = s.get(CohortMember, (name, user_id))
        member.status, member.migration_id = "failed", mig.id
        member.error_kind, member.reason = "backend", "activate: new service down"


def test_a_user_failed_after_the_legacy_cancel_is_singled_out_and_exits_1(world, cli):
    for u in ("u1", "u2"):
        world.user(u)
    cohorts.create(world.sessions, "c", ["u1", "u2"], actor="t", halt_at_bp=10_000)
    _fail_after_pivot(world, "c", "u1")
    retry = cli.invoke(app, ["cohort", "retry-failed", "c", "--yes", "--wait"])
    assert retry.exit_code == 1, retry.output
    assert "will migrate 1 user" in retry.stderr  # u1 is not restarted: a human resumes it
    assert "FAILED AFTER THE LEGACY CANCEL u1" in retry.stdout
    assert "migrate u1 --resume" in retry.stdout
    doc = json.loads(cli.invoke(app, ["cohort", "status", "c", "--json"]).stdout)
    assert doc["failed_after_pivot"] == ["u1"]
    assert [f["after_pivot"] for f in doc["failed_users"]] == [True]


def test_resume_refuses_a_cohort_that_never_ran(world, cli):
    world.user("u1")
    cohorts.create(world.sessions, "c", ["u1"], actor="t")
    result = cli.invoke(app, ["cohort", "resume", "c", "--yes"])
    assert result.exit_code == 2
    assert "never ran" in result.stderr and "twinbill cohort run c" in result.stderr
    assert _cohort(world, "c").status == "created" and _migrations(world) == 0


def test_preview_selects_by_facet_and_writes_nothing(world, cli):
    for u, cur in (("u1", "EUR"), ("u2", "EUR"), ("u3", "JPY")):
        world.user(u)
        with transaction(world.sessions) as s:
            route = s.get(cohorts.Route, u)
            route.currency, route.facets = cur, {"trial": False, "next_renewal_at": None}
    result = cli.invoke(
        app, ["cohort", "create", "p", "--where", "currency=EUR", "--preview", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["users"] == ["u1", "u2"]
    assert doc["by_facet"] == {
        "currency": {"EUR": 2},
        "renewal_days": {"none": 2},
        "trial": {"no": 2},
    }
    assert _cohort(world, "p") is None
    text = cli.invoke(app, ["cohort", "create", "p", "--where", "currency=JPY", "--preview"])
    assert "1 users (nothing was written)" in text.stdout and "currency: JPY 1" in text.stdout


def test_unknown_filter_field_is_a_usage_error(world, cli):
    world.user("u1")
    result = cli.invoke(app, ["cohort", "create", "p", "--where", "plan=gold"])
    assert result.exit_code == 2
    assert "unknown field(s) plan" in result.stderr
    bad = cli.invoke(app, ["cohort", "create", "p", "--stratify", "colour", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["kind"] == "input"
    assert _cohort(world, "p") is None


def test_dry_run_cohort_is_marked_in_status_and_list(world, cli):
    world.user("u1")
    made = cli.invoke(app, ["cohort", "create", "rehearsal", "--users", "u1", "--dry-run"])
    assert made.exit_code == 0 and "DRY-RUN cohort" in made.stdout
    run = cli.invoke(app, ["cohort", "run", "rehearsal", "--wait"])  # cancels nothing: no ask
    assert run.exit_code == 0, run.output
    assert "will dry-run 1 user" in run.stderr
    assert run.stdout.startswith("DRY RUN rehearsal — done")
    assert "diff rate 0.0% (0 of 1 reconciled users differ)" in run.stdout  # the prove step
    assert world.route("u1").state == "legacy"
    listed = cli.invoke(app, ["cohort", "list"])
    assert "done (dry run)" in listed.stdout
    [row] = json.loads(cli.invoke(app, ["cohort", "list", "--json"]).stdout)
    assert (row["dry_run"], row["reconciled"], row["diff_rate"]) == (True, 1, 0.0)


def test_delete_only_a_cohort_that_never_ran(world, cli):
    world.user("u1")
    world.user("u2")
    cohorts.create(world.sessions, "a", ["u1"], actor="t")
    cohorts.create(world.sessions, "b", ["u2"], actor="t")
    cli.invoke(app, ["cohort", "run", "b", "--yes", "--wait"])
    refused = cli.invoke(app, ["cohort", "delete", "b", "--yes"])
    assert refused.exit_code == 2 and "never ran" in refused.stderr
    assert cli.invoke(app, ["cohort", "delete", "a"]).exit_code == 2  # no tty, no --yes
    assert _cohort(world, "a") is not None
    done = cli.invoke(app, ["cohort", "delete", "a", "--yes"])
    assert done.exit_code == 0, done.output
    assert _cohort(world, "a") is None
    with world.sessions() as s:
        assert cohorts.candidates(s)[0].user_id == "u1"  # free for another cohort


def test_migrate_unknown_user_writes_nothing(world, cli):
    result = cli.invoke(app, ["migrate", "ghost", "--yes"])
    assert result.exit_code == 2 and "unknown user 'ghost'" in result.stderr
    assert _migrations(world) == 0
    as_json = cli.invoke(app, ["migrate", "ghost", "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["message"].startswith("unknown user")


def test_migrate_asks_then_prints_a_readable_step_table(world, cli):
    world.user("u1")
    refused = cli.invoke(app, ["migrate", "u1"])
    assert refused.exit_code == 2 and "cancel 1 legacy subscription on account" in refused.stderr
    assert _migrations(world) == 0
    result = cli.invoke(app, ["migrate", "u1", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "{'" not in result.stdout  # no dict reprs, cut off or not
    doc = json.loads(cli.invoke(app, ["migrate", "u1", "--dry-run", "--json"]).stdout)
    assert doc["steps"] and doc["steps"][0]["started_at"].endswith("Z")


def test_migrate_failure_exits_1(world, cli):
    world.user("u1")
    _reject(world, "u1")
    result = cli.invoke(app, ["migrate", "u1", "--yes", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] in ("compensated", "failed")


def test_after_a_successful_retry_the_old_halt_reason_and_rate_are_gone(world, cli):
    for u in ("u1", "u2", "u3"):
        world.user(u)
    cohorts.create(world.sessions, "c", ["u1", "u2", "u3"], actor="t", halt_at_bp=500)
    original = world.new.create_import
    _reject(world, "u1")
    assert cli.invoke(app, ["cohort", "run", "c", "--yes", "--wait"]).exit_code == 1
    world.new.create_import = original  # the bug is fixed
    retry = cli.invoke(app, ["cohort", "retry-failed", "c", "--yes", "--wait"])
    assert retry.exit_code == 0, retry.output
    assert "halted" not in retry.stdout and "100.0%" not in retry.stdout
    assert "c — done, 3 users, failure rate 0.0%" in retry.stdout


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("subscription sub_1 renews at 2026-12-02 08:00 UTC, inside the 2:00:00 safety window", 0),
        ("open invoice in_1 in dunning (500 EUR due)", 0),
        ("legacy keeps changing during migration: snapshot differs", 1),
        ("could not prove (preview unavailable, not migrated): 503", 1),
    ],
)
def test_status_exit_code_for_deferrals(world, cli, reason, code):
    world.user("u1")
    cohorts.create(world.sessions, "c", ["u1"], actor="t")
    with transaction(world.sessions) as s:
        member = s.get(CohortMember, ("c", "u1"))
        member.status, member.reason = "deferred", reason
    result = cli.invoke(app, ["cohort", "status", "c"])
    assert result.exit_code == code, result.output
    assert ("deferred with a problem" in result.stdout) == bool(code)
