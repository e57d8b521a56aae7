"""Real services for browser tests: sandbox stack, seeded legacy, admin app under uvicorn."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "browser password 1"


@dataclass
class Live:
    base: str
    ctx: object
    legacy_user: str
    migrated_user: str
    failed_migration: str
    cohort: str
    report_id: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _failed_migration(ctx, user_id: str) -> str:
    from core.errors import TransformError
    from migration import records

    mig_id = records.create(ctx.sessions, user_id, cohort="pilot")
    mig = records.load(ctx.sessions, mig_id)
    step = records.begin_step(ctx.sessions, mig, "fetch")
    records.end_step(ctx.sessions, step, outcome="ok")
    step = records.begin_step(ctx.sessions, mig, "transform")
    err = TransformError("unsupported tax rate", record="subscription", field="tax_rates")
    records.end_step(ctx.sessions, step, outcome="error", error=err)
    records.finish(ctx.sessions, mig_id, "failed", error=err, member_status="failed")
    return mig_id


def _report(ctx, user_id: str) -> int:
    from core.db import transaction, utcnow
    from reconciler.findings import Difference, DiffKind
    from reconciler.report import Report, ReportBuilder, UserResult
    from reconciler.services import store_report

    diff = Difference(
        DiffKind.CHANGED,
        user_id,
        "subscription",
        "sub_1",
        "current_period_end",
        "2026-12-01T00:00:00Z",
        "2026-12-01T01:00:00Z",
        "exact",
    )
    report = ReportBuilder(Report("users", user_id, "test")).add_all(
        [UserResult(user_id, "pilot", (diff,), (), utcnow())]
    )
    with transaction(ctx.sessions) as session:
        return int(store_report(session, report).id)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} missing (apt-get install -y chromium)"
        if os.environ.get("TWINBILL_REQUIRE_SERVICES") == "1":
            pytest.fail(msg + " - CI must run the browser tests")
        pytest.skip(msg)
    import uvicorn

    from admin.app import create_app
    from admin.bootstrap import bootstrap
    from admin.web.auth import create_user
    from core import dbschema
    from core.settings import load_settings
    from migration import cohorts
    from migration.services import migrate_user
    from multiplexer.inventory import sync_customers
    from sandbox.legacy.launcher import make_client
    from sandbox.legacy.population import seed
    from sandbox.stack import Stack

    tmp = tmp_path_factory.mktemp("browser")
    with Stack(tmp) as endpoints:
        url = f"sqlite:///{tmp / 'twinbill.db'}"
        dbschema.upgrade(url)
        env = {k.removeprefix("TWINBILL_").lower(): v for k, v in endpoints.env().items()}
        settings = load_settings(
            database_url=url, secret_key="browser-secret-key-0123456789", **env
        )
        ctx = bootstrap(settings)
        seeded = seed(make_client(endpoints.legacy_url, endpoints.legacy_api_key), 14, 7)
        sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test", cache=ctx.cache)
        simple = [u for u in seeded if u.config == "simple_monthly"]
        migrated = simple[0].app_user_id
        mig = migrate_user(ctx.saga, migrated)
        assert mig.status == "succeeded", (mig.status, mig.error_message)
        others = [u.app_user_id for u in seeded if u.app_user_id != migrated]
        legacy_user = next(u.app_user_id for u in simple[1:] + seeded if u.app_user_id != migrated)
        cohorts.create(ctx.sessions, "pilot", others[-3:], actor="test")
        failed = _failed_migration(ctx, others[-1])
        report_id = _report(ctx, migrated)
        for role in ("support", "developer"):
            create_user(ctx.sessions, f"{role}@example.test", role, PASSWORD, actor="test")
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        try:
            yield Live(
                f"http://127.0.0.1:{port}", ctx, legacy_user, migrated, failed, "pilot", report_id
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            ctx.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def shot():
    def take(page, name: str) -> None:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    return take
