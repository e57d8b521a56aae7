"""``twinbill demo`` end to end (subprocesses): an injected zero-decimal bug is caught, and
without it the demo's reconciliation is clean.

Both demos start together (each with its own sandbox and ``--workdir``) so the
pair costs the wall time of one; each test waits for its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.legacy.configurations import ZERO_DECIMAL_CURRENCIES, plan_users

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]

USERS = 26
SEED = 7  # the demo's default
REPO = Path(__file__).resolve().parents[3]
AMOUNT_FIELDS = {"amount", "amount_paid", "amount_due", "total", "subtotal", "unit_amount"}


@dataclass
class DemoRun:
    workdir: Path
    proc: subprocess.Popen[str]
    log: Path

    def wait(self, timeout: float = 240) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return code, self.log.read_text(encoding="utf-8", errors="replace")

    def report(self) -> dict:  # type: ignore[type-arg]
        [path] = sorted((self.workdir / "reports").glob("reconciliation-all-*.json"))
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _start(tmp: Path, name: str, *extra: str) -> DemoRun:
    workdir = tmp / name
    log = tmp / f"{name}.log"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")
    }  # the demo points itself at its own sandbox and SQLite file
    env.update({"PYTHONPATH": str(REPO), "COLUMNS": "200"})
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "admin.cli",
                "demo",
                "--users",
                str(USERS),
                "--workdir",
                str(workdir),
                *extra,
            ],
            cwd=tmp,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    return DemoRun(workdir, proc, log)


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DemoRun]]:
    tmp = tmp_path_factory.mktemp("demos")
    runs = {
        "zero-decimal": _start(tmp, "zero-decimal", "--inject-bug", "zero-decimal"),
        "clean": _start(tmp, "clean"),
    }
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def test_demo_with_zero_decimal_bug_is_caught(demos: dict[str, DemoRun]) -> None:
    run = demos["zero-decimal"]
    code, log = run.wait()
    assert code == 1, log
    zero_decimal_users = {
        u.app_user_id for u in plan_users(USERS, SEED) if u.currency in ZERO_DECIMAL_CURRENCIES
    }
    report = run.report()
    assert report["clean"] is False
    found = [d for u in report["users"] for d in u["differences"]]
    hits = [
        d
        for d in found
        if d["user_id"] in zero_decimal_users
        and d["kind"] == "changed"
        and d["field"] in AMOUNT_FIELDS
    ]
    assert hits, found
    # whole yen were multiplied by 100: the new value is 100x the legacy one
    assert all(d["new_value"] == 100 * d["legacy_value"] for d in hits), hits
    # only zero-decimal users are affected
    assert {d["user_id"] for d in found} <= zero_decimal_users
    assert any(d["user_id"] in log and d["field"] in log for d in hits)


def test_demo_without_bug_is_clean(demos: dict[str, DemoRun]) -> None:
    run = demos["clean"]
    code, log = run.wait()
    assert code == 0, log
    report = run.report()
    assert report["clean"] is True
    assert report["summary"]["differences"] == 0
    assert report["summary"]["users_checked"] >= 20
    assert "clean" in log
