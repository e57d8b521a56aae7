"""A cohort's completion is decided once, atomically; `--wait` never waits on a member that
no task will move."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from typer.testing import CliRunner

from core.audit import AuditEntry
from core.db import transaction
from migration import cohort_progress, cohorts, leases, records, services
from migration.models import CohortMember, Migration


def _done_audits(world, name: str) -> int:
    with world.sessions() as s:
        return s.scalar(
            sa.select(sa.func.count()).where(
                AuditEntry.action == "cohort.done", AuditEntry.resource_id == name
            )
        )


def _settled_running_cohort(world, name: str = "rest") -> None:
    world.user("u1")
    cohorts.create(world.sessions, name, ["u1"], actor="t")
    cohorts.set_status(world.sessions, name, "running", actor="t")
    with transaction(world.sessions) as s:
        s.get(CohortMember, (name, "u1")).status = "done"


def test_racing_finishers_mark_the_cohort_done_once_and_none_fails(world, monkeypatch):
    """The old check-then-set let two finishers both see `running`; the second raised
    "cohort 'rest' is done; cannot become done" (the demo exited 2). Force that
    interleaving: every finisher reads the cohort before any of them writes."""
    _settled_running_cohort(world)
    n = 6
    barrier = threading.Barrier(n)
    real_progress = cohort_progress.progress

    def progress_then_wait(session, name):  # only the old code path reads progress first
        p = real_progress(session, name)
        barrier.wait(timeout=5)
        return p

    monkeypatch.setattr(cohort_progress, "progress", progress_then_wait)
    results: list[object] = []

    def finish() -> None:
        try:
            results.append(cohort_progress.finish_if_settled(world.sessions, "rest"))
        except Exception as exc:  # noqa: BLE001 - the failure this test is about
            results.append(exc)

    threads = [threading.Thread(target=finish) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert results.count(True) == 1 and results.count(False) == n - 1
    assert _done_audits(world, "rest") == 1
    with world.sessions() as s:
        assert cohorts.get(s, "rest").status == "done"


def test_a_halt_racing_a_finish_is_not_an_error(world):
    _settled_running_cohort(world)
    assert cohort_progress.finish_if_settled(world.sessions, "rest") is True
    assert cohort_progress.halt_if_running(world.sessions, "rest", "too many failures") is False
    assert cohort_progress.finish_if_settled(world.sessions, "rest") is False
    with world.sessions() as s:
        assert cohorts.get(s, "rest").status == "done"


def test_an_unsettled_cohort_is_not_done(world):
    world.user("u1")
    cohorts.create(world.sessions, "c", ["u1"], actor="t")
    cohorts.set_status(world.sessions, "c", "running", actor="t")
    assert cohort_progress.finish_if_settled(world.sessions, "c") is False  # u1 still pending


def test_a_member_with_a_deferred_migration_from_an_earlier_cohort_is_moved(world):
    """It used to stay `pending` forever: records.create returned the earlier cohort's
    deferred migration, the task could not claim it, and `cohort run --wait` hung."""
    world.user("u1")
    cohorts.create(world.sessions, "first", ["u1"], actor="t")
    earlier = records.create(world.sessions, "u1", cohort="first")
    records.finish(world.sessions, earlier, "deferred", reason="open invoice in_1")
    cohorts.create(world.sessions, "second", ["u1"], actor="t", include_in_flight=True)
    queued: list[str] = []
    assert services.start_cohort(world.deps, "second", queued.append, actor="t") == 1
    assert queued == [earlier]
    with world.sessions() as s:
        member = s.get(CohortMember, ("second", "u1"))
        assert (member.status, member.migration_id) == ("queued", earlier)
        assert s.get(Migration, earlier).cohort == "second"
        assert cohort_progress.waiting_on(s, "second").movable == ["u1"]
    services.run_member(world.deps, queued[0])
    with world.sessions() as s:
        assert cohort_progress.progress(s, "second").status == "done"
        assert cohort_progress.waiting_on(s, "second").movable == []


def test_a_member_whose_route_is_not_legacy_is_not_waited_for(world):
    world.user("u1")
    world.user("u2")
    cohorts.create(world.sessions, "c", ["u1", "u2"], actor="t")
    other = records.create(world.sessions, "u2", cohort=None)  # someone else runs u2 now
    assert leases.claim(world.sessions, other, "elsewhere", stale_after=120)
    queued: list[str] = []
    services.start_cohort(world.deps, "c", queued.append, actor="t")
    with world.sessions() as s:
        member = s.get(CohortMember, ("c", "u2"))
        assert member.status == "deferred" and other in member.reason
        assert cohort_progress.waiting_on(s, "c").movable == ["u1"]


def test_ctrl_c_while_waiting_exits_130_with_a_resume_hint(monkeypatch):
    from admin import cli, progress
    from admin.cli import cohort as migrate

    monkeypatch.setattr(migrate, "_deps", lambda: type("D", (), {"sessions": None})())
    monkeypatch.setattr(migrate, "_start", lambda name, **kw: migrate._wait(name, json=False))

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(progress, "watch_cohort", interrupted)
    result = CliRunner().invoke(cli.app, ["cohort", "run", "pilot", "--wait"])
    assert result.exit_code == 130
    assert "`twinbill cohort resume pilot --wait`" in " ".join(result.output.split())
