"""A migrated world for the reconciler's integration tests, and ways to corrupt it.

One real localstripe (legacy) and one real newbilling (new, over HTTP) from
``sandbox.stack.Stack``; the staging population (26 users = every one of the 13
configurations twice) seeded on legacy, routed, and migrated synchronously
through the real saga (its verify step is the reconciler). A few users are
deferred by preflight (open invoices, pending invoice items): expected.

The new side is corrupted through newbilling's own database, opened with
SQLAlchemy and newbilling's own models (``sandbox/newbilling/models.py``); the
legacy side through the stripe SDK against localstripe. Every corruption is a
context manager that restores what it changed, so tests do not depend on their
order.

Kept out of conftest.py on purpose: the conftest next to this file only
re-exports the session fixture (one world for every test module here).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import stripe
from sqlalchemy.orm import Session, sessionmaker

from core import dbschema
from core.settings import load_settings
from migration import services, verify
from migration.bootstrap import saga_deps
from migration.models import Migration, Snapshot
from migration.saga import SagaDeps
from multiplexer.bootstrap import MuxContext, build
from multiplexer.inventory import sync_customers
from reconciler.findings import Difference
from reconciler.invariants import InvariantViolation
from reconciler.models import ReconciliationReport
from reconciler.report import Report
from sandbox.legacy.launcher import make_client
from sandbox.legacy.population import SeededUser, seed
from sandbox.newbilling.db import make_engine as nb_engine
from sandbox.newbilling.db import make_sessionmaker as nb_sessionmaker
from sandbox.stack import Endpoints, Stack

POPULATION = 26
SEED = 7
REPO = Path(__file__).resolve().parents[3]


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str


@dataclass
class World:
    workdir: Path
    endpoints: Endpoints
    env: dict[str, str]
    ctx: MuxContext
    deps: SagaDeps
    legacy_client: stripe.StripeClient
    nb_sessions: sessionmaker[Session]
    users: list[SeededUser]
    migrations: dict[str, Migration] = field(default_factory=dict)
    #: the reconciliation of the untouched migration, taken before any test ran
    baseline: Report | None = None
    baseline_cli: CliRun | None = None

    # -- lookups -------------------------------------------------------------------

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.ctx.sessions

    @property
    def new_db_path(self) -> Path:
        return self.workdir / "sandbox" / "newbilling.db"

    def user(self, config: str, currency: str) -> SeededUser:
        """The migrated user of a configuration and currency (fails if it was deferred)."""
        for u in self.users:
            if u.config == config and u.currency == currency:
                assert u.app_user_id in self.migrations, f"{u.app_user_id} was not migrated"
                return u
        raise AssertionError(f"no seeded user is {config}/{currency}")

    # -- reconciling ----------------------------------------------------------------

    def reconcile_user(self, user_id: str, *, refetch: bool = True) -> Report:
        """``twinbill reconcile --user ID [--refetch]`` semantics, in process."""
        scope = verify.resolve_scope(self.sessions, user=user_id)
        return verify.reconcile(
            self.sessions,
            self.ctx.legacy,
            self.ctx.new,
            scope,
            created_by="test",
            refetch=refetch,
            store=False,
        )

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliRun:
        """The real ``twinbill`` command in a subprocess, pointed at this world."""
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("TWINBILL_REDIS_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "admin.cli", *args],
            cwd=self.workdir,
            env={**full_env, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CliRun(proc.returncode, proc.stdout, proc.stderr)

    def report_rows(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(sa.select(sa.func.count(ReconciliationReport.id))) or 0)

    # -- the new side's database ----------------------------------------------------

    @contextlib.contextmanager
    def new_db(self) -> Iterator[Session]:
        """A newbilling session, committed on success."""
        with self.nb_sessions() as session:
            yield session
            session.commit()

    def allow_duplicate_invoice_ids(self) -> None:
        """Rebuild ``nb_invoices`` without its UNIQUE(external_id) (SQLite's 12-step recipe).

        newbilling refuses a second invoice with the same external id, which is
        exactly the corruption to test; the rebuild keeps every row, column and
        index, only that constraint goes (harmless for every other test).
        """
        con = sqlite3.connect(self.new_db_path, timeout=30, isolation_level=None)
        try:
            sql = con.execute(
                "select sql from sqlite_master where type='table' and name='nb_invoices'"
            ).fetchone()[0]
            if "UNIQUE (external_id)" not in sql:
                return
            indexes = [
                row[0]
                for row in con.execute(
                    "select sql from sqlite_master where type='index' "
                    "and tbl_name='nb_invoices' and sql is not null"
                )
            ]
            rebuilt = sql.replace("CREATE TABLE nb_invoices", "CREATE TABLE nb_invoices_tmp", 1)
            rebuilt = rebuilt.replace("UNIQUE (external_id), ", "").replace(
                ", \n\tUNIQUE (external_id)", ""
            )
            assert "UNIQUE" not in rebuilt, rebuilt
            con.execute("PRAGMA foreign_keys=OFF")
            con.execute("BEGIN IMMEDIATE")
            con.execute(rebuilt)
            con.execute("INSERT INTO nb_invoices_tmp SELECT * FROM nb_invoices")
            con.execute("DROP TABLE nb_invoices")
            con.execute("ALTER TABLE nb_invoices_tmp RENAME TO nb_invoices")
            for index in indexes:
                con.execute(index)
            con.execute("COMMIT")
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            con.close()

    # -- the stored snapshot --------------------------------------------------------

    @contextlib.contextmanager
    def tampered_snapshot(self, user_id: str) -> Iterator[int]:
        """Change a stored snapshot's body after the fact (its hash no longer matches)."""
        snapshot_id = self.migrations[user_id].snapshot_id
        assert snapshot_id is not None
        with self.sessions() as session:
            original = session.scalar(
                sa.select(sa.cast(Snapshot.body, sa.Text)).where(Snapshot.id == snapshot_id)
            )
            body = json.loads(original)
            body["customer"]["email"] = "someone.else@example.test"
            session.execute(sa.update(Snapshot).where(Snapshot.id == snapshot_id).values(body=body))
            session.commit()
        try:
            yield snapshot_id
        finally:
            with self.sessions() as session:
                session.execute(
                    sa.text("UPDATE snapshots SET body = :body WHERE id = :id"),
                    {"body": original, "id": snapshot_id},
                )
                session.commit()


def build_world(workdir: Path, stack: Stack) -> World:
    endpoints = stack.__enter__()
    try:
        return _populate(workdir, endpoints)
    except BaseException:
        stack.__exit__(None, None, None)
        raise


def _populate(workdir: Path, endpoints: Endpoints) -> World:
    db_url = f"sqlite:///{workdir / 'twinbill.db'}"
    env = {**endpoints.env(), "TWINBILL_DATABASE_URL": db_url}
    settings = load_settings(
        database_url=db_url,
        redis_url=None,
        legacy_backend="localstripe",
        legacy_api_base=endpoints.legacy_url,
        legacy_api_key=endpoints.legacy_api_key,
        new_base_url=endpoints.new_url,
        new_api_token=endpoints.new_api_token,
        new_webhook_secret=endpoints.new_webhook_secret,
    )
    dbschema.upgrade(settings.database_url)
    client = make_client(endpoints.legacy_url, endpoints.legacy_api_key)
    users = seed(client, POPULATION, SEED)
    ctx = build(settings)
    sync_customers(ctx.sessions, ctx.legacy.iter_customers(), actor="test", cache=ctx.cache)
    deps = saga_deps(ctx, verifier=verify.reconcile_verifier)
    world = World(
        workdir=workdir,
        endpoints=endpoints,
        env=env,
        ctx=ctx,
        deps=deps,
        legacy_client=client,
        nb_sessions=nb_sessionmaker(
            nb_engine(f"sqlite:///{workdir / 'sandbox' / 'newbilling.db'}")
        ),
        users=users,
    )
    for u in users:
        mig = services.migrate_user(deps, u.app_user_id)
        assert mig.status in ("succeeded", "deferred"), (u, mig.status)
        if mig.status == "succeeded":
            world.migrations[u.app_user_id] = mig
    # the untouched migration, reconciled before any test touches anything
    world.baseline = verify.reconcile(
        ctx.sessions,
        ctx.legacy,
        ctx.new,
        verify.resolve_scope(ctx.sessions, all_users=True),
        created_by="test:baseline",
        refetch=True,
    )
    world.baseline_cli = world.cli("reconcile", "--all", "--refetch")
    return world


def migrate_extra_user(world: World, *, index: int, seed_value: int) -> SeededUser:
    """Seed one more legacy user (not migrated yet) and route it."""
    user = seed(world.legacy_client, 1, seed_value, first_index=index)[0]
    sync_customers(
        world.sessions, world.ctx.legacy.iter_customers(), actor="test", cache=world.ctx.cache
    )
    world.users.append(user)
    return user


# -- finding what a report says -----------------------------------------------------


def differences(report: Report, user_id: str) -> list[Difference]:
    return [d for r in report.results if r.user_id == user_id for d in r.differences]


def violations(report: Report, user_id: str) -> list[InvariantViolation]:
    return [v for r in report.results if r.user_id == user_id for v in r.violations]


def find(
    items: Sequence[Difference], *, kind: str, record_type: str, record_id: str, field: str | None
) -> Difference:
    """The one difference of that kind naming that record and field (fails listing all)."""
    hits = [
        d
        for d in items
        if str(d.kind) == kind
        and d.record_type == record_type
        and d.record_id == record_id
        and d.field == field
    ]
    assert len(hits) == 1, (
        f"expected one {kind} {record_type} {record_id}.{field}, got {hits}; all: "
        + "\n".join(str(d.to_dict()) for d in items)
    )
    return hits[0]


def invariant(items: Sequence[InvariantViolation], name: str) -> InvariantViolation:
    hits = [v for v in items if v.invariant == name]
    assert len(hits) == 1, f"expected one {name}, got {[v.to_dict() for v in items]}"
    return hits[0]


def iso(value: datetime) -> str:
    """A newbilling timestamp as the reconciler prints it (UTC, to the second, ``Z``)."""
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
