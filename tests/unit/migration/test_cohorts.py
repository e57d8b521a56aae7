"""Cohorts: selection, progress counted in the database, halting, pause/resume, reaper."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from core.db import transaction, utcnow
from core.errors import BackendRejected, InvalidInput
from migration import cohort_progress, cohorts, leases, reaper, records, services
from migration.cohorts import Candidate, select_users
from migration.models import Migration
from multiplexer.models import Route


def _facets(session_factory, **facets_by_user):
    with transaction(session_factory) as s:
        for user_id, facets in facets_by_user.items():
            s.get(Route, user_id).facets = facets


def test_stratified_selection_covers_every_value():
    pool = [
        Candidate(f"u{i}", {"configuration": c, "currency": cur})
        for i, (c, cur) in enumerate([(c, cur) for c in "abcd" for cur in ("EUR", "JPY")])
    ]
    picked = select_users(pool, size=4, stratify=("configuration",), seed=3)
    assert len(picked) == 4
    assert {p.facets["configuration"] for p in pool if p.user_id in picked} == set("abcd")
    assert select_users(pool, size=4, stratify=("configuration",), seed=3) == picked  # sticky
    only_jpy = select_users(pool, where={"currency": {"JPY"}})
    assert len(only_jpy) == 4


def test_create_refuses_unknown_and_non_legacy_users(world):
    world.user("u1")
    with pytest.raises(InvalidInput, match="unknown users"):
        cohorts.create(world.sessions, "c", ["u1", "ghost"], actor="t")
    with pytest.raises(InvalidInput, match="empty"):
        cohorts.create(world.sessions, "c", [], actor="t")
    services.migrate_user(world.deps, "u1")
    with pytest.raises(InvalidInput, match="only users on legacy"):
        cohorts.create(world.sessions, "c", ["u1"], actor="t")


def _run_inline(world, name, **kw):
    """Start a cohort with an enqueue that runs each migration right away (like a worker)."""
    return services.start_cohort(
        world.deps, name, lambda mid: services.run_member(world.deps, mid), actor="t", **kw
    )


def test_a_cohort_migrates_its_users_and_finishes(world):
    for u in ("u1", "u2", "u3"):
        world.user(u)
    cohorts.create(world.sessions, "pilot", ["u1", "u2", "u3"], actor="t")
    _run_inline(world, "pilot")
    with world.sessions() as s:
        p = cohort_progress.progress(s, "pilot")
    assert (p.status, p.by_status) == ("done", {"done": 3})
    assert {world.route(u).state for u in ("u1", "u2", "u3")} == {"new"}


def test_failure_rate_over_threshold_halts_and_says_why(world):
    for u in ("u1", "u2", "u3", "u4"):
        world.user(u)
    cohorts.create(world.sessions, "c", ["u1", "u2", "u3", "u4"], actor="t", halt_at_bp=500)
    original = world.new.create_import

    def reject_u1(payload, *, idempotency_key):
        if payload["user_id"] == "u1":
            raise BackendRejected("invoices[0].total: does not add up", backend="new")
        return original(payload, idempotency_key=idempotency_key)

    world.new.create_import = reject_u1
    _run_inline(world, "c")
    with world.sessions() as s:
        p = cohort_progress.progress(s, "c")
    assert p.status == "halted"
    assert "failure rate" in p.halt_reason and "data: 1" in p.halt_reason
    assert p.by_status.get("failed") == 1 and p.by_status.get("done", 0) == 0
    assert world.route("u1").state == "legacy"  # compensated, untouched
    # the others were not started: they wait for an operator
    assert {world.route(u).state for u in ("u2", "u3", "u4")} == {"legacy"}

    world.new.create_import = original
    _run_inline(world, "c", retry_failed=True)
    with world.sessions() as s:
        p = cohort_progress.progress(s, "c")
    assert (p.status, p.by_status) == ("done", {"done": 4})


def test_paused_cohort_starts_nobody(world):
    world.user("u1")
    cohorts.create(world.sessions, "c", ["u1"], actor="t")
    queued: list[str] = []
    services.start_cohort(world.deps, "c", queued.append, actor="t")
    cohorts.set_status(world.sessions, "c", "paused", actor="t")
    assert services.run_member(world.deps, queued[0]) is None
    assert world.route("u1").state == "legacy"
    with pytest.raises(InvalidInput, match="cannot become"):
        cohorts.set_status(world.sessions, "c", "halted", actor="t")


def test_reaper_resumes_stale_and_lost_migrations(world):
    world.user("u1")
    world.user("u2")
    stale_id = records.create(world.sessions, "u1")
    assert leases.claim(world.sessions, stale_id, "dead-worker", stale_after=120)
    lost_id = records.create(world.sessions, "u2")
    with transaction(world.sessions) as s:
        s.get(Migration, stale_id).heartbeat_at = utcnow() - timedelta(minutes=10)
        s.get(Migration, lost_id).created_at = utcnow() - timedelta(hours=2)
    enqueued: list[str] = []
    counts = reaper.reap(world.deps, enqueued.append)
    assert counts["resumed"] == 1 and counts["lost"] == 1
    assert sorted(enqueued) == sorted([stale_id, lost_id])
    for mig_id in enqueued:
        assert services.run_member(world.deps, mig_id).status == "succeeded"


def test_continuous_reconciliation_halts_a_cohort_and_links_the_report(world):
    """The fake new system keeps imports but no records: every migrated user differs."""
    from migration import verify

    for u in ("u1", "u2"):
        world.user(u)
    cohorts.create(world.sessions, "c", ["u1", "u2"], actor="t")
    _run_inline(world, "c")  # the fixture's verifier says clean: the cohort finishes
    cohorts.set_status(world.sessions, "c", "running", actor="t")
    counts = services.reconcile_recent(world.deps)
    assert counts == {"checked": 2, "with_differences": 2, "halted": 1}
    with world.sessions() as s:
        p = cohort_progress.progress(s, "c")
    assert p.status == "halted" and "reports #" in p.halt_reason
    assert verify.resolve_scope(world.sessions, cohort="c").user_ids == ["u1", "u2"]


def test_filters_and_strata_read_data_facets_by_kind():
    """`--where trial=true` must match a stored JSON true (str(True) is "True")."""
    from multiplexer.facets import parse_where

    pool = [
        Candidate("u1", {"trial": True, "invoices": 1, "currency": "EUR", "complexity": 1}),
        Candidate("u2", {"trial": False, "invoices": 7, "currency": "EUR", "complexity": 0}),
        Candidate("u3", {"trial": False, "invoices": 3, "currency": "JPY", "complexity": 4}),
    ]
    assert select_users(pool, where=parse_where(["trial=true"])) == ["u1"]
    assert select_users(pool, where=parse_where(["invoices=2+", "currency=eur"])) == ["u2"]
    assert select_users(pool, max_complexity=0) == ["u2"]
    assert select_users(pool, size=2, stratify=("currency",)) in (["u1", "u3"], ["u2", "u3"])


def test_candidates_carry_the_live_renewal_days(world):
    world.user("u1")
    in_three_days = (utcnow() + timedelta(days=3, hours=1)).isoformat()
    _facets(world.sessions, u1={"next_renewal_at": in_three_days, "complexity": 0})
    with world.sessions() as s:
        (c,) = cohorts.candidates(s)
    assert c.facets["renewal_days"] == 3 and c.facets["currency"] == "EUR"


def test_a_cohorts_start_costs_statements_per_batch_not_per_member(world):
    """Three transactions per member made a 2,000-user cohort wait 12 s to start (SQLite),
    a 600,000-user one about an hour before its first read. Its members are now decided
    in batches; each member still gets its migration, queued, and one already running
    in another cohort is deferred, not started twice."""
    import sqlalchemy as sa

    users = [f"u{i:04d}" for i in range(1200)]
    for u in users:
        world.user(u, subscribe=False)
    busy = records.create(world.sessions, users[7], cohort=None)
    with transaction(world.sessions) as s:
        s.get(Migration, busy).cohort = "earlier"
    cohorts.create(world.sessions, "big", users, actor="t")
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(world.engine, "before_cursor_execute", count)
    try:
        enqueued: list[str] = []
        started = services.start_cohort(world.deps, "big", enqueued.append, actor="t")
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", count)
    assert started == len(enqueued) == len(set(enqueued)) == len(users) - 1
    assert len(statements) < 60, len(statements)  # 3 batches of 500; was ~6 per member
    with world.sessions() as s:
        members = {m.user_id: m for m in s.query(cohorts.CohortMember)}
        assert {members[u].status for u in users if u != users[7]} == {"queued"}
        assert members[users[7]].status == "deferred"
        assert "already migrating in cohort earlier" in members[users[7]].reason
        assert s.query(Migration).filter(Migration.cohort == "big").count() == len(users) - 1


def test_a_migration_received_by_a_worker_that_died_is_handed_back_within_a_lease(world):
    """SIGKILLed between receiving a task and claiming its migration, a worker left it
    pending for an hour (the lost sweep) or six (Redis's visibility timeout). Its mark
    is replaced by the claim at once; a stale one is handed back by the reaper."""
    for u in ("u1", "u2"):
        world.user(u)
    claimed, dead = records.create(world.sessions, "u1"), records.create(world.sessions, "u2")
    assert leases.mark_received(world.sessions, claimed, "host:1")
    assert leases.claim(world.sessions, claimed, "host:1:thread", stale_after=120)
    assert not leases.mark_received(world.sessions, claimed, "host:2")  # claimed: no mark
    assert leases.mark_received(world.sessions, dead, "host:1")
    enqueued: list[str] = []
    assert reaper.reap(world.deps, enqueued.append)["received_by_the_dead"] == 0  # fresh
    with transaction(world.sessions) as s:
        s.get(Migration, dead).heartbeat_at = utcnow() - timedelta(minutes=10)
    counts = reaper.reap(world.deps, enqueued.append)
    assert counts["received_by_the_dead"] == 1 and counts["lost"] == 0 and enqueued == [dead]
    assert reaper.reap(world.deps, enqueued.append)["received_by_the_dead"] == 0  # once
    assert services.run_member(world.deps, dead).status == "succeeded"


def test_a_live_workers_received_marks_are_beaten_and_never_handed_back(world):
    """A task waiting in a live worker behind busy threads keeps its mark fresh (the
    worker beats it); once the beat stops (the process died) the reaper hands it back."""
    world.user("u1")
    waiting = records.create(world.sessions, "u1")
    assert leases.mark_received(world.sessions, waiting, "host:1")
    old = utcnow() - timedelta(minutes=10)
    with transaction(world.sessions) as s:
        s.get(Migration, waiting).heartbeat_at = old
    stop = leases.beat_received(world.sessions, "host:1", every=0.05)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with world.sessions() as s:
                if s.get(Migration, waiting).heartbeat_at > old:
                    break
            time.sleep(0.05)
        enqueued: list[str] = []
        assert reaper.reap(world.deps, enqueued.append)["received_by_the_dead"] == 0
        assert enqueued == []
    finally:
        stop.set()
    time.sleep(0.2)  # a beat in flight lands
    with transaction(world.sessions) as s:
        s.get(Migration, waiting).heartbeat_at = old
    counts = reaper.reap(world.deps, enqueued.append)
    assert counts["received_by_the_dead"] == 1 and enqueued == [waiting]


def test_a_paused_cohorts_member_drops_its_received_mark(world):
    world.user("u1")
    cohorts.create(world.sessions, "c", ["u1"], actor="t")
    queued: list[str] = []
    services.start_cohort(world.deps, "c", queued.append, actor="t")
    cohorts.set_status(world.sessions, "c", "paused", actor="t")
    assert leases.mark_received(world.sessions, queued[0], "host:1")
    assert services.run_member(world.deps, queued[0]) is None
    with world.sessions() as s:
        mig = s.get(Migration, queued[0])
        assert (mig.status, mig.owner) == ("pending", None)  # waits; nobody holds it
