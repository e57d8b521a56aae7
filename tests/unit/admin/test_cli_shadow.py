"""`twinbill cohort shadow|shadow-report|shadow-stop` through typer's CliRunner (fake backends).

Refusals exit 2 with the reason and write nothing; a rehearsal prints its report and
exits 0 when clean; stopping it discards every shadow import.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from admin.cli import app
from core.settings import load_settings
from migration import cohorts, shadow_sync
from migration.models import ShadowImport, ShadowRun
from tests.unit.migration.conftest import World


@pytest.fixture
def world(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    w = World(tmp_path)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'saga.db'}")
    root = SimpleNamespace(
        saga=w.deps,
        settings=settings,
        celery=SimpleNamespace(embedded=False),  # "workers elsewhere": run each one inline
        enqueue_shadow_sync=lambda rid, trigger: shadow_sync.sync(w.deps, rid, trigger=trigger),
    )
    monkeypatch.setattr("admin.cli.context.app_root", lambda: root)
    for u in ("u1", "u2"):
        w.user(u)
    cohorts.create(w.sessions, "pilot", ["u1", "u2"], actor="test")
    return w


def _written(w: World) -> tuple[int, int]:
    with w.sessions() as s:
        runs = s.scalar(sa.select(sa.func.count(ShadowRun.id)))
        rows = s.scalar(sa.select(sa.func.count(ShadowImport.id)))
    return int(runs or 0), int(rows or 0)


def test_an_unknown_cohort_is_refused_with_exit_2_and_nothing_written(world) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["cohort", "shadow", "nope", "--yes", "--json"])
    assert result.exit_code == 2, result.output
    assert "no cohort named 'nope'" in json.loads(result.stdout)["error"]["message"]
    assert _written(world) == (0, 0)


def test_without_a_terminal_and_without_yes_nothing_is_written(world) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["cohort", "shadow", "pilot"])
    assert result.exit_code == 2, result.output
    assert "nothing was written" in result.output
    assert _written(world) == (0, 0)


def test_a_rehearsal_reports_then_stops_leaving_nothing_in_new(world) -> None:  # type: ignore[no-untyped-def]
    cli = CliRunner()
    result = cli.invoke(app, ["cohort", "shadow", "pilot", "--days", "3", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["cohort", "shadow-report", "pilot", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert (report["users_compared"], report["mismatches_by_field"]) == (2, {})
    assert report["clean"] and report["reusable"]
    result = cli.invoke(app, ["cohort", "shadow-stop", "pilot", "--yes", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["discarded"] == 2
    with world.sessions() as s:
        assert {r.status for r in s.scalars(sa.select(ShadowImport))} == {"discarded"}
    assert world.new.imports and {i.status for i in world.new.imports.values()} == {"discarded"}
