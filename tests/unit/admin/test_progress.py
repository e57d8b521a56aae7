"""Watching a halted cohort waits for the sagas still running, then reports them."""

from __future__ import annotations

import io
import threading
import time

from rich.console import Console

from admin.progress import watch_cohort
from core import dbschema
from core.db import make_engine, make_sessionmaker, transaction
from migration.models import Cohort, CohortMember, Migration


def test_halted_cohort_is_watched_until_running_sagas_finish(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    dbschema.upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as s:
        s.add(
            Cohort(
                name="c",
                status="halted",
                definition={},
                halt_at_bp=500,
                dry_run=False,
                include_in_flight=False,
            )
        )
        s.flush()
        s.add(CohortMember(cohort="c", user_id="u1", status="failed"))
        s.add(
            Migration(
                id="m2",
                user_id="u2",
                cohort="c",
                status="running",
                dry_run=False,
                include_in_flight=False,
                pivoted=False,
                generation=1,
            )
        )
        s.add(CohortMember(cohort="c", user_id="u2", status="running", migration_id="m2"))
        s.add(CohortMember(cohort="c", user_id="u3", status="queued"))

    def saga_finishes() -> None:
        time.sleep(0.4)
        with transaction(sessions) as s:
            s.get(CohortMember, ("c", "u2")).status = "done"
            s.get(Migration, "m2").status = "succeeded"

    worker = threading.Thread(target=saga_finishes)
    worker.start()
    p = watch_cohort(sessions, "c", Console(file=io.StringIO()), poll=0.05)
    worker.join()
    assert p.by_status == {"failed": 1, "done": 1, "queued": 1}  # u2 reported as done
    assert p.status == "halted"


def _cohort(sessions, statuses):
    with transaction(sessions) as s:
        s.add(
            Cohort(
                name="c",
                status="running",
                definition={},
                halt_at_bp=500,
                dry_run=False,
                include_in_flight=False,
            )
        )
        s.flush()
        for i, status in enumerate(statuses):
            uid = f"u{i:03}"
            s.add(
                Migration(
                    id=f"m{i:03}",
                    user_id=uid,
                    cohort="c",
                    status="pending",
                    dry_run=False,
                    include_in_flight=False,
                    pivoted=False,
                    generation=1,
                )
            )
            s.add(CohortMember(cohort="c", user_id=uid, status=status, migration_id=f"m{i:03}"))


def test_piped_progress_prints_a_line_per_n_users_with_rate_and_eta(tmp_path, monkeypatch):
    """A Kubernetes Job log (no terminal) shows progress while it happens."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    dbschema.upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    _cohort(sessions, ["queued"] * 12)
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("admin.progress.time.monotonic", lambda: next(clock))
    finished = iter(range(1, 13))

    def one_more_done(_seconds):  # each poll, one more user finishes (one "second" apart)
        n = next(finished)
        with transaction(sessions) as s:
            s.get(CohortMember, ("c", f"u{n - 1:03}")).status = "done"
            s.get(Migration, f"m{n - 1:03}").status = "succeeded"

    monkeypatch.setattr("admin.progress.time.sleep", one_more_done)
    out = io.StringIO()
    watch_cohort(sessions, "c", Console(file=out, width=200), every_users=5, every_seconds=100)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("cohort c: 0/12 done 0") and "rate n/a" in lines[0]
    assert [ln.split()[2] for ln in lines] == ["0/12", "5/12", "10/12", "12/12"]
    assert "users/s" in lines[1] and "ETA" in lines[1] and "ETA n/a" not in lines[1]
    assert "done 12 failed 0" in lines[-1]


def test_rate_counts_only_users_finished_while_watching():
    """`resume` of one user must not report hundreds of users per second."""
    from admin.progress import Rate

    rate = Rate(baseline=40, started=100.0)
    assert rate.of(41, 41, 100.01) == (None, None)  # one user in 10 ms: no rate
    speed, eta = rate.of(50, 60, 105.0)
    assert speed == 2.0 and eta == 5.0
