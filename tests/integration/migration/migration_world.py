"""Shared wiring for the migration integration tests.

A *world* is: the sandbox (localstripe + reference newbilling, real processes),
optionally a ``FaultProxy`` in front of either, a twinbill context built from
settings that point at those URLs, a seeded legacy population, and — the point
of it all — **independent** views of both billing systems through their own
APIs (the ``stripe`` SDK straight to localstripe, ``httpx`` straight to
newbilling), never through twinbill's backends or its routing table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import stripe

from admin.bootstrap import App, bootstrap
from core import dbschema
from core.settings import Settings, load_settings
from migration.deps import SagaDeps
from migration.models import Migration, MigrationStep
from migration.verify import reconcile_verifier
from multiplexer.backends.stripe.shapes import migration_mark
from multiplexer.inventory import sync_customers
from multiplexer.models import Route
from sandbox.legacy.configurations import plan_users
from sandbox.legacy.launcher import make_client
from sandbox.legacy.population import SeededUser, ensure_catalogue, seed_user
from sandbox.stack import Endpoints

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

#: Subscription statuses under which Stripe keeps charging the customer.
BILLING = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete"})
#: Configurations preflight defers (something in flight on legacy).
DEFERRED_CONFIGS = frozenset({"past_due", "pending_invoice_item"})
#: Configurations that migrate without fuss (used where a test needs "plain" users).
PLAIN_CONFIGS = ("simple_monthly", "yearly", "multi_seat", "two_subscriptions", "credit_balance")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def settings_env(
    endpoints: Endpoints,
    database_url: str,
    *,
    redis_url: str | None = None,
    legacy_url: str | None = None,
    new_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """TWINBILL_* for this world (a worker process gets exactly these)."""
    env = {
        **endpoints.env(),
        "TWINBILL_DATABASE_URL": database_url,
        "TWINBILL_REDIS_URL": redis_url or "",
        "TWINBILL_RENEWAL_GUARD": "7200",
        # localstripe and the Stripe double list an event as soon as its write returns:
        # the re-check needs no settle time, and may read events again at once
        "TWINBILL_EVENT_SETTLE_SECONDS": "0",
        "TWINBILL_EVENT_REFRESH_SECONDS": "0",
    }
    if legacy_url:
        env["TWINBILL_LEGACY_API_BASE"] = legacy_url
    if new_url:
        env["TWINBILL_NEW_BASE_URL"] = new_url
    env.update({f"TWINBILL_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """Settings from exactly ``env`` (explicit overrides beat whatever the shell exports)."""
    overrides: dict[str, object] = {}
    for key, value in env.items():
        name = key.removeprefix("TWINBILL_").lower()
        if name == "renewal_guard":
            overrides["TWINBILL_RENEWAL_GUARD"] = int(value)
        else:
            overrides[name] = value or None
    return load_settings(**overrides)


@dataclass
class World:
    endpoints: Endpoints
    env: dict[str, str]
    settings: Settings
    ctx: App  # this test process's composition root
    deps: SagaDeps
    stripe: stripe.StripeClient  # straight to localstripe, never through a proxy
    nb: httpx.Client  # straight to newbilling, never through a proxy
    workdir: Path
    seeded: list[SeededUser] = field(default_factory=list)
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)  # legacy before migrating

    # -- setup -----------------------------------------------------------------------

    def seed(self, n: int, *, seed: int = 7, configs: tuple[str, ...] | None = None) -> list[str]:
        """Seed ``n`` users straight into localstripe (optionally only some configurations)."""
        ensure_catalogue(self.stripe, ("eur", "usd", "gbp", "jpy"))
        first = len(self.seeded) + 1
        specs = plan_users(n if configs is None else n * 20, seed, first_index=first)
        if configs is not None:
            specs = [s for s in specs if s.config in configs][:n]
        users = [seed_user(self.stripe, spec) for spec in specs]
        for u in users:
            self.track(u)
        return [u.app_user_id for u in users]

    def track(self, user: SeededUser) -> str:
        """Remember a legacy user and its legacy state before any migration."""
        self.seeded.append(user)
        self.baseline[user.app_user_id] = {
            "billing": self.legacy_billing(user.app_user_id),
            "state": self.legacy_state(user.app_user_id),
        }
        return user.app_user_id

    def sync(self) -> int:
        report = sync_customers(
            self.ctx.sessions, self.ctx.legacy.iter_customers(), actor="test", cache=self.ctx.cache
        )
        return report.created

    def user(self, user_id: str) -> SeededUser:
        return next(u for u in self.seeded if u.app_user_id == user_id)

    # -- twinbill's own records ------------------------------------------------------

    def routes(self) -> dict[str, Route]:
        with self.ctx.sessions() as session:
            return {r.user_id: r for r in session.scalars(sa.select(Route))}

    def migrations(self, user_id: str | None = None) -> list[Migration]:
        with self.ctx.sessions() as session:
            q = sa.select(Migration).order_by(Migration.created_at)
            if user_id is not None:
                q = q.where(Migration.user_id == user_id)
            return list(session.scalars(q))

    def steps(self, migration_id: str) -> list[tuple[str, int, str]]:
        with self.ctx.sessions() as session:
            rows = session.scalars(
                sa.select(MigrationStep)
                .where(MigrationStep.migration_id == migration_id)
                .order_by(MigrationStep.id)
            )
            return [(r.step, r.attempt, r.outcome) for r in rows]

    # -- independent views: legacy ---------------------------------------------------

    def legacy_subs(self, user_id: str) -> list[dict[str, Any]]:
        cid = self.user(user_id).customer_id
        page = self.stripe.v1.subscriptions.list({"customer": cid, "status": "all", "limit": 100})
        return [s.to_dict() for s in page.auto_paging_iter()]

    def legacy_billing(self, user_id: str) -> list[str]:
        return [s["id"] for s in self.legacy_subs(user_id) if s["status"] in BILLING]

    def legacy_state(self, user_id: str) -> dict[str, tuple[str, bool, str | None]]:
        """sub id -> (status, cancel_at_period_end, migration marker): what 'untouched' means."""
        return {
            s["id"]: (
                s["status"],
                bool(s.get("cancel_at_period_end")),
                migration_mark(s),
            )
            for s in self.legacy_subs(user_id)
        }

    # -- independent views: new ------------------------------------------------------

    def bundle(self, user_id: str) -> dict[str, Any] | None:
        response = self.nb.get(f"/v1/users/{user_id}/bundle")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def export(self) -> list[dict[str, Any]]:
        response = self.nb.get("/v1/export")
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def new_billing(self, user_id: str) -> bool:
        """Does newbilling bill this user (an active import, or a native customer)?"""
        b = self.bundle(user_id)
        if b is None:
            return False
        imp = b.get("import")
        return imp is None or imp["status"] == "active"

    # -- the population invariant ----------------------------------------------------

    def check_exactly_one_system(self, user_ids: list[str]) -> dict[str, str]:
        """Every user billed by exactly one system, agreeing with the route; no double import.

        Returns user -> "new" | "legacy". Raises AssertionError naming each offender.
        """
        exported = Counter(b["user_id"] for b in self.export())
        twice = sorted(u for u, n in exported.items() if n > 1)
        assert not twice, f"users present more than once in newbilling's export: {twice}"
        routes = self.routes()
        out: dict[str, str] = {}
        problems = []
        for uid in user_ids:
            legacy = self.legacy_billing(uid)
            had_billing = bool(self.baseline.get(uid, {}).get("billing"))
            new = self.new_billing(uid)
            route = routes[uid]
            if legacy and new:
                problems.append(f"{uid}: billed by BOTH (legacy {legacy}, new)")
            elif not legacy and not new and had_billing:
                problems.append(f"{uid}: billed by NEITHER")
            side = "new" if new else "legacy"
            if route.system != side or route.state != side:
                problems.append(f"{uid}: route says {route.state}/{route.system}, services {side}")
            out[uid] = side
        assert not problems, "population invariant broken:\n" + "\n".join(problems)
        return out


def open_world(
    endpoints: Endpoints,
    workdir: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    legacy_url: str | None = None,
    new_url: str | None = None,
    env_extra: dict[str, str] | None = None,
    **deps_overrides: Any,
) -> World:
    database_url = database_url or f"sqlite:///{workdir / 'twinbill.db'}"
    env = settings_env(
        endpoints,
        database_url,
        redis_url=redis_url,
        legacy_url=legacy_url,
        new_url=new_url,
        **(env_extra or {}),
    )
    settings = settings_from(env)
    dbschema.upgrade(settings.database_url)
    ctx = bootstrap(settings, verifier=reconcile_verifier, saga=deps_overrides)
    deps = ctx.saga
    nb = httpx.Client(
        base_url=endpoints.new_url,
        timeout=30,
        headers={"Authorization": f"Bearer {endpoints.new_api_token}"},
    )
    return World(
        endpoints,
        env,
        settings,
        ctx,
        deps,
        make_client(endpoints.legacy_url, endpoints.legacy_api_key),
        nb,
        workdir,
    )


def worker_command(script: str, *, pool: str = "solo", concurrency: int = 1) -> list[str]:
    """A worker process started by a test script next to this file (it builds the root)."""
    return [
        sys.executable,
        str(HERE / f"{script}.py"),
        "--queues=twinbill.control,celery",  # as `twinbill worker`
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def process_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINBILL_")}
    return {
        **clean,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        **env,
        **extra,
    }


def twinbill_cli(*args: str) -> list[str]:
    """The command line of `twinbill ARGS`, as an operator runs it."""
    return [sys.executable, "-m", "admin.cli", *args]


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `twinbill ARGS` to completion in ``env`` (from `process_env`); assert it succeeded."""
    done = subprocess.run(
        twinbill_cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@contextmanager
def cli_worker(
    env: dict[str, str], log: Path, *, concurrency: int
) -> Iterator[subprocess.Popen[bytes]]:
    """A `twinbill worker` process for the block (yielded), its output in ``log``.

    An AssertionError raised in the block (a wait that timed out) carries the log's tail:
    what the worker did is the only clue to why the cohort did not finish.
    """
    with log.open("ab") as out:
        worker = subprocess.Popen(
            twinbill_cli("worker", "--concurrency", str(concurrency)),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{log.read_text()[-4000:]}") from None
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
