"""`twinbill sandbox up|status|seed|down` on real processes: found later, none left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def _twinbill(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sandbox_lifecycle(tmp_path):
    up = _twinbill("sandbox", "up", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "TWINBILL_LEGACY_API_BASE=http://127.0.0.1:" in up.stdout
    state = json.loads((tmp_path / ".twinbill-sandbox" / "state.json").read_text())
    pids = [state["legacy_pid"], state["new_pid"]]
    try:
        status = _twinbill("sandbox", "status", "--json", cwd=tmp_path)
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        seeded = _twinbill("sandbox", "seed", "--users", "13", "--json", cwd=tmp_path)
        assert seeded.returncode == 0, seeded.stderr
        configs = {u["config"] for u in json.loads(seeded.stdout)}
        assert len(configs) == 13  # every configuration once
    finally:
        down = _twinbill("sandbox", "down", cwd=tmp_path)
    assert down.returncode == 0
    assert not any(_alive(p) for p in pids)
    after = _twinbill("sandbox", "status", "--json", cwd=tmp_path)
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False


def test_seed_without_a_running_sandbox_is_a_clear_error(tmp_path):
    result = _twinbill("sandbox", "seed", cwd=tmp_path)
    assert result.returncode == 2
    assert "twinbill sandbox up" in result.stderr + result.stdout
