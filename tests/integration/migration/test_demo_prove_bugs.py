"""``twinbill demo --inject-bug KIND`` for the misreadings ``prove`` exists for.

Each of ``credit-sign``, ``trial-state`` and ``tax-rate`` is stopped at ``prove``,
before the legacy cancel: the demo exits 1, the first affected user is listed with the
field diff of their next charges (prove-failures report), and they are not among the
migrated users the final reconciliation checks (they stayed on legacy). The three
demos run side by side, each with its own sandbox, so they cost the time of one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.legacy.configurations import plan_users

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

USERS = 13  # every configuration once
SEED = 7
REPO = Path(__file__).resolve().parents[3]
#: bug -> (configurations it hits, next-charge fields that must be named)
EXPECTED = {
    "credit-sign": ({"credit_balance"}, {"balance", "amount_due"}),
    "trial-state": ({"trialing", "gifted"}, {"state", "charge_at"}),  # a gift is a trial
    "tax-rate": ({"yearly"}, {"tax", "tax_breakdown", "total"}),
}


def _start(tmp: Path, bug: str) -> tuple[subprocess.Popen[str], Path, Path]:
    workdir, log = tmp / bug, tmp / f"{bug}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")}
    env.update({"PYTHONPATH": str(REPO), "COLUMNS": "200"})
    command = [sys.executable, "-m", "admin.cli", "demo", "--users", str(USERS)]
    command += ["--workdir", str(workdir), "--inject-bug", bug]
    with log.open("w") as fh:
        proc = subprocess.Popen(
            command, cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True
        )
    return proc, workdir, log


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple]]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("prove-demos")
    runs = {bug: _start(tmp, bug) for bug in EXPECTED}
    yield runs
    for proc, _, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_demo_bug_is_stopped_at_prove_before_the_legacy_cancel(demos, bug: str) -> None:  # type: ignore[no-untyped-def]
    proc, workdir, log = demos[bug]
    code = proc.wait(timeout=300)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert code == 1, text
    assert "stopped at prove" in text
    configs, fields = EXPECTED[bug]
    hit = {u.app_user_id for u in plan_users(USERS, SEED) if u.config in configs}
    [path] = sorted((workdir / "reports").glob("prove-failures-*.json"))
    report = json.loads(path.read_text(encoding="utf-8"))
    stopped = {u["user_id"]: u for u in report["users"]}
    # The first user the bug hits is stopped at prove; that failure halts the cohort
    # (diff rate over its threshold), so later users of the same configuration may never
    # start. None of them may be migrated (checked below).
    caught = hit & set(stopped)
    assert caught, (hit, sorted(stopped))
    for uid in caught:
        named = {d["field"] for d in stopped[uid]["differences"]}
        assert fields <= named, (uid, named)
        assert all(d["record_type"] == "next_charge" for d in stopped[uid]["differences"])
    # never migrated: the final reconciliation (migrated users only) does not know them
    [final] = sorted((workdir / "reports").glob("reconciliation-all-*.json"))
    migrated = {u["user_id"] for u in json.loads(final.read_text(encoding="utf-8"))["users"]}
    assert not hit & migrated
