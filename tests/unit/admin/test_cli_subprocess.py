"""The key CLI rules on the real `twinbill` process (``python -m admin.cli``): exit codes,
one-line errors naming the fix, JSON-only stdout, and refusal without a TTY and ``--yes``.

No billing service is needed: the legacy and new URLs point at a closed port, and
every case here must stop before (or without) talking to them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import dbschema
from core.db import make_engine, make_sessionmaker, transaction
from migration import cohorts
from migration.models import Migration
from multiplexer import routing

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SERVICES = {
    "TWINBILL_LEGACY_API_KEY": "sk_test_" + "0" * 24,
    "TWINBILL_LEGACY_API_BASE": "http://127.0.0.1:9",
    "TWINBILL_LEGACY_BACKEND": "localstripe",
    "TWINBILL_NEW_BASE_URL": "http://127.0.0.1:9",
    "TWINBILL_NEW_API_TOKEN": "t" * 20,
    "TWINBILL_HTTP_TIMEOUT": "1",
}


def twinbill(*args: str, cwd: Path, env: dict[str, str] | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")}
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        cwd=cwd,
        env={**base, **(env or {}), "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,  # not a terminal
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version(tmp_path):
    run = twinbill("--version", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("twinbill ")


def test_missing_secret_is_one_line_exit_2_and_json_under_json(tmp_path):
    run = twinbill("users", "sync", cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "missing setting(s): TWINBILL_LEGACY_API_KEY" in run.stderr
    as_json = twinbill("users", "sync", "--json", cwd=tmp_path)
    assert as_json.returncode == 2
    error = json.loads(as_json.stdout)["error"]  # stdout is exactly one JSON document
    assert error["kind"] == "config" and "TWINBILL_LEGACY_API_KEY" in error["message"]


def test_users_sync_on_a_fresh_folder_says_run_db_upgrade(tmp_path):
    run = twinbill("users", "sync", cwd=tmp_path, env=SERVICES)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "no such table" not in run.stderr
    assert "run `twinbill db upgrade`" in run.stderr


def test_db_check_upgrade_history_downgrade(tmp_path):
    env = {"TWINBILL_DATABASE_URL": f"sqlite:///{tmp_path / 'tb.db'}"}
    check = twinbill("db", "check", "--json", cwd=tmp_path, env=env)
    assert check.returncode == 1 and json.loads(check.stdout)["ok"] is False
    assert twinbill("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    ok = twinbill("db", "check", "--json", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    head = json.loads(ok.stdout)["head"]
    history = json.loads(twinbill("db", "history", "--json", cwd=tmp_path, env=env).stdout)
    assert [h["revision"] for h in history if h["current"]] == [head]
    refused = twinbill("db", "downgrade", "-1", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert (
        json.loads(twinbill("db", "current", "--json", cwd=tmp_path, env=env).stdout)["revision"]
        == head
    )
    down = twinbill("db", "downgrade", "-1", "--yes", "--json", cwd=tmp_path, env=env)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["revision"] == history[-2]["revision"]
    assert twinbill("db", "check", cwd=tmp_path, env=env).returncode == 1


@pytest.fixture
def populated(tmp_path):
    """A migrated schema with one legacy user in a cohort that never ran."""
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    dbschema.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        routing.create_route(
            s,
            "u1",
            system="legacy",
            actor="test",
            reason="t",
            legacy_customer_id="cus_1",
            currency="EUR",
        )
    cohorts.create(sessions, "pilot", ["u1"], actor="t")
    yield sessions, {**SERVICES, "TWINBILL_DATABASE_URL": url}
    engine.dispose()


def _migrations(sessions) -> int:
    with sessions() as s:
        return int(s.scalar(sa.select(sa.func.count(Migration.id))))


@pytest.mark.parametrize(
    "args",
    [("cohort", "run", "pilot", "--wait"), ("migrate", "u1"), ("migrate", "u1", "--json")],
)
def test_cancelling_commands_refuse_without_tty_and_yes(tmp_path, populated, args):
    sessions, env = populated
    run = twinbill(*args, cwd=tmp_path, env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "environment: database sqlite:///" in run.stderr and "(test key)" in run.stderr
    assert "will migrate 1 user: cancel" in run.stderr
    if "--json" in args:
        assert json.loads(run.stdout)["error"]["fix"] == "pass --yes to confirm"
    else:
        assert "pass --yes" in run.stderr and run.stdout == ""
    assert _migrations(sessions) == 0
    with sessions() as s:
        assert cohorts.get(s, "pilot").status == "created"


def test_resume_of_a_cohort_that_never_ran_and_migrate_of_a_stranger(tmp_path, populated):
    sessions, env = populated
    resume = twinbill("cohort", "resume", "pilot", "--yes", cwd=tmp_path, env=env)
    assert resume.returncode == 2 and "never ran" in resume.stderr
    ghost = twinbill("migrate", "ghost", "--yes", "--json", cwd=tmp_path, env=env)
    assert ghost.returncode == 2 and "unknown user" in json.loads(ghost.stdout)["error"]["message"]
    assert _migrations(sessions) == 0


def test_status_and_preview_are_json_only(tmp_path, populated):
    sessions, env = populated
    status = twinbill("cohort", "status", "pilot", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["total"] == 1
    missing = twinbill("cohort", "status", "nope", "--json", cwd=tmp_path, env=env)
    assert (
        missing.returncode == 2
        and "no cohort named" in json.loads(missing.stdout)["error"]["message"]
    )
    bad = twinbill("cohort", "create", "x", "--where", "colour=red", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "unknown field(s) colour" in bad.stderr


def test_cohort_list_and_status_read_the_database_alone(tmp_path, populated):
    """They only read the database: no legacy key (nor any billing setting) is needed."""
    _, env = populated
    db_only = {"TWINBILL_DATABASE_URL": env["TWINBILL_DATABASE_URL"]}
    listed = twinbill("cohort", "list", "--json", cwd=tmp_path, env=db_only)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)] == ["pilot"]
    status = twinbill("cohort", "status", "pilot", cwd=tmp_path, env=db_only)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "pilot — created, 1 users" in status.stdout and status.stderr == ""
