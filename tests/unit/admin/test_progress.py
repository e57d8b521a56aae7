"""Watching a halted cohort waits for the sagas still running, then reports them."""

from __future__ import annotations

import io
import threading
import time

from rich.console import Console

from admin.progress import watch_cohort
from core import dbschema
from core.db import make_engine, make_sessionmaker, transaction
from migration.models import Cohort, CohortMember


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
        s.add(CohortMember(cohort="c", user_id="u2", status="running"))
        s.add(CohortMember(cohort="c", user_id="u3", status="queued"))

    def saga_finishes() -> None:
        time.sleep(0.4)
        with transaction(sessions) as s:
            s.get(CohortMember, ("c", "u2")).status = "done"

    worker = threading.Thread(target=saga_finishes)
    worker.start()
    p = watch_cohort(sessions, "c", Console(file=io.StringIO()), poll=0.05)
    worker.join()
    assert p.by_status == {"failed": 1, "done": 1, "queued": 1}  # u2 reported as done
    assert p.status == "halted"
