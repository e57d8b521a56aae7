"""The cohort commands as an operator runs them: real `twinbill` processes against the
sandbox (localstripe + reference newbilling over HTTP), SQLite, embedded worker.

preview writes nothing → create → run refuses without a TTY and `--yes` (nothing
cancelled on legacy) → run --yes --wait migrates, prints progress lines to a pipe and
exits 0 with JSON-only stdout → the users live on the new system.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.legacy.launcher import make_client
from sandbox.legacy.population import seed
from sandbox.stack import Stack

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
# Sandbox configurations that migrate today with one subscription each (the test may read
# the seeder's tag; production code no longer does).
SIMPLE = ("simple_monthly", "yearly", "multi_seat", "trialing")


def test_cohort_lifecycle_through_the_cli(tmp_path):
    with Stack(tmp_path / "sandbox") as ep:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")}
        env = {
            **base,
            **ep.env(),
            "TWINBILL_DATABASE_URL": f"sqlite:///{tmp_path / 'tb.db'}",
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
        }

        def twinbill(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "admin.cli", *args],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        client = make_client(ep.legacy_url, ep.legacy_api_key)
        seeded = seed(client, 13, 7)
        simple = sorted(u.app_user_id for u in seeded if u.config in SIMPLE)[:2]
        assert len(simple) == 2

        assert twinbill("db", "upgrade").returncode == 0
        synced = twinbill("users", "sync", "--json")
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["created"] == 13

        preview = twinbill("cohort", "create", "p", "--users", ",".join(simple), "--preview")
        assert preview.returncode == 0 and "2 users (nothing was written)" in preview.stdout
        assert json.loads(twinbill("cohort", "list", "--json").stdout) == []

        assert twinbill("cohort", "create", "pilot", "--users", ",".join(simple)).returncode == 0
        refused = twinbill("cohort", "run", "pilot", "--wait")
        assert refused.returncode == 2, refused.stderr
        assert "will migrate 2 users: cancel 2 legacy subscriptions" in refused.stderr
        assert "(test key)" in refused.stderr and "pass --yes" in refused.stderr
        for u in seeded:
            if u.app_user_id in simple:  # nothing was cancelled on legacy
                for sid in u.subscription_ids:
                    assert client.subscriptions.retrieve(sid).status != "canceled"

        ran = twinbill("cohort", "run", "pilot", "--yes", "--wait", "--json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        status = json.loads(ran.stdout)  # stdout is the status document, nothing else
        assert (status["status"], status["by_status"]) == ("done", {"done": 2})
        assert "cohort pilot: 2/2 done 2" in ran.stderr  # progress lines, even in a pipe
        for uid in simple:
            shown = json.loads(twinbill("users", "show", uid, "--json").stdout)
            assert shown["system"] == "new"
        assert twinbill("cohort", "status", "pilot").returncode == 0
