"""``twinbill demo``: the whole story on one laptop, in about two minutes.

Starts the sandbox (localstripe + reference newbilling), seeds a staging
population, syncs the inventory, then migrates in growing cohorts — 10
hand-picked simple users, 10 more complex ones, then the rest — through a real
(embedded) Celery worker, and finally reconciles both systems. Same code path
as production: only the database (SQLite) and the broker (in-memory) differ.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from admin.bootstrap import App

#: The pilot: plain subscriptions (complexity 0, read from the data by `users sync`).
PILOT_MAX_COMPLEXITY = 0
#: The second cohort covers ground: one user per value of each of these facets first.
COVER = ("status", "dunning", "trial", "scheduled_cancel", "subscriptions", "refunds", "currency")


@dataclass
class CohortOutcome:
    name: str
    size: int
    migrated: int
    failed: int
    deferred: int
    failures: dict[str, int]
    deferrals: dict[str, int]
    legacy_calls: int
    seconds: float
    status: str
    halt_reason: str | None = None

    @property
    def users_per_second(self) -> float:
        return self.size / self.seconds if self.seconds else 0.0


@dataclass
class DemoResult:
    cohorts: list[CohortOutcome] = field(default_factory=list)
    population: int = 0
    lost: list[str] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None
    report_paths: list[Path] = field(default_factory=list)
    stopped_at_prove: list[str] = field(default_factory=list)  # users prove sent back to legacy
    #: ``--rollback``: user -> (rollback status, verified clean from both systems' answers)
    rolled_back: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        every_user_settled = all(c.failed == 0 and c.status == "done" for c in self.cohorts)
        clean = self.reconciliation is None or bool(self.reconciliation.get("clean"))
        back = all(s == "succeeded" and ok for s, ok in self.rolled_back.values())
        return every_user_settled and not self.lost and clean and back


def plan_cohorts(
    candidates: list[Any], *, pilot: int = 10, complex_: int = 10
) -> list[tuple[str, list[str], dict[str, Any]]]:
    from migration.cohorts import select_users

    simple = select_users(
        candidates,
        max_complexity=PILOT_MAX_COMPLEXITY,
        size=pilot,
        stratify=("interval", "currency"),
    )
    rest = [c for c in candidates if c.user_id not in set(simple)]
    complex_users = select_users(
        [c for c in rest if (c.facets.get("complexity") or 0) > PILOT_MAX_COMPLEXITY],
        size=complex_,
        stratify=COVER,
    )
    remaining = sorted(c.user_id for c in rest if c.user_id not in set(complex_users))
    plan = [
        ("pilot", simple, {"picked": "complexity 0", "stratify": ["interval", "currency"]}),
        ("complex", complex_users, {"picked": "complexity > 0", "stratify": list(COVER)}),
        ("rest", remaining, {"picked": "everyone else"}),
    ]
    return [p for p in plan if p[1]]


def run_demo(
    *,
    users: int,
    seed: int,
    workdir: Path,
    inject_bug: str | None,
    include_in_flight: bool,
    console: Console,
    on_ready: Callable[[dict[str, str]], None] | None = None,
    rollback: bool = False,
) -> DemoResult:
    from sandbox.stack import Stack

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    console.print(f"[bold]twinbill demo[/] — working folder {workdir}")
    with Stack(workdir / "sandbox") as endpoints:
        env = {**endpoints.env(), "TWINBILL_DATABASE_URL": f"sqlite:///{workdir / 'twinbill.db'}"}
        env.pop("TWINBILL_REDIS_URL", None)
        os.environ.update(env)
        os.environ.pop("TWINBILL_REDIS_URL", None)
        console.print(
            f"sandbox: legacy (localstripe) {endpoints.legacy_url}, "
            f"new (newbilling) {endpoints.new_url}"
        )
        if on_ready:
            on_ready(env)
        return _run(
            users=users,
            seed=seed,
            workdir=workdir,
            inject_bug=inject_bug,
            include_in_flight=include_in_flight,
            console=console,
            endpoints=endpoints,
            rollback=rollback,
        )


def _run(
    *,
    users: int,
    seed: int,
    workdir: Path,
    inject_bug: str | None,
    include_in_flight: bool,
    console: Console,
    endpoints: Any,
    rollback: bool = False,
) -> DemoResult:
    from admin.bootstrap import bootstrap
    from core import dbschema
    from core.queue import embedded_worker
    from core.settings import load_settings
    from migration import cohorts
    from migration.readiness import sync_legacy
    from sandbox.legacy.launcher import make_client
    from sandbox.legacy.population import seed as seed_population

    settings = load_settings()
    dbschema.upgrade(settings.database_url)
    result = DemoResult(population=users)

    t0 = time.monotonic()
    seeded = seed_population(
        make_client(endpoints.legacy_url, endpoints.legacy_api_key), users, seed
    )
    console.print(
        f"seeded {len(seeded)} legacy users in {time.monotonic() - t0:.1f}s "
        f"({len({u.config for u in seeded})} configurations, "
        f"{len({u.currency for u in seeded})} currencies)"
    )

    ctx = bootstrap(settings)  # the process's one root
    report = sync_legacy(ctx, actor="demo")
    console.print(
        f"inventory: {report.created} routes created from legacy customers "
        f"({len(report.conflicts)} conflicts); `twinbill inventory report` says who is ready"
    )
    with ctx.sessions() as session:
        plan = plan_cohorts(cohorts.candidates(session))
    with embedded_worker(ctx.celery, concurrency=4):
        for name, user_ids, definition in plan:
            cohorts.create(
                ctx.sessions,
                name,
                user_ids,
                actor="demo",
                definition=definition,
                include_in_flight=include_in_flight,
                inject_bug=inject_bug,
            )
            result.cohorts.append(_run_cohort(ctx, name, len(user_ids), console))
            if result.cohorts[-1].status == "halted":
                console.print(f"[red]cohort {name} halted[/]: {result.cohorts[-1].halt_reason}")
                break
    result.lost = _lost_users(ctx, seeded)
    result.stopped_at_prove, prove_paths = _stopped_at_prove(ctx, workdir, console)
    result.reconciliation, result.report_paths = _reconcile(ctx, workdir, console)
    result.report_paths = [*prove_paths, *result.report_paths]
    if rollback and result.cohorts:
        result.rolled_back = _roll_back(ctx, result.cohorts[-1].name, console)
    ctx.close()
    return result


def _roll_back(ctx: Any, name: str, console: Console) -> dict[str, tuple[str, bool]]:
    """The last cohort goes back to legacy; each user shown from both systems' own answers
    (the rollback's verify step: legacy's preview of its next charge, the new system's
    preview charging nothing)."""
    from rich.table import Table

    from core.money import Money
    from migration import records, rollback

    users = rollback.cohort_users(ctx.saga, name)
    console.print(f"[bold]rolling back cohort {name}[/]: {len(users)} users back to legacy")
    table = Table(
        "user", "rollback", "legacy next charge", "new system", title=f"{name} rolled back"
    )
    out: dict[str, tuple[str, bool]] = {}
    from migration.rollback_plan import RollbackRefused

    for uid in users:
        try:
            mig = rollback.rollback_user(ctx.saga, uid)
        except RollbackRefused as exc:  # named, nothing written: the user stays on new
            table.add_row(uid, "[yellow]refused[/]", exc.message.split(": ", 1)[-1], "unchanged")
            continue
        rollback.after_cohort_rollback(ctx.saga, name, mig)
        with ctx.sessions() as session:
            verify = (
                next(
                    (
                        r.detail
                        for r in records.steps_of(session, mig.id)
                        if r.step == rollback.VERIFY
                    ),
                    None,
                )
                or {}
            )
        charges = ", ".join(
            f"{Money(c['currency'], c['amount_due']).format()} on {c['charge_at'][:10]}"
            for c in verify.get("legacy_next", [])
        )
        still = verify.get("new_still_charging")
        clean = bool(verify.get("clean"))
        out[uid] = (mig.status, clean)
        table.add_row(
            uid,
            f"[green]{mig.status}[/]" if clean else f"[red]{mig.status}[/]",
            charges or "nothing to charge",
            "charges nothing" if not still else f"[red]still charging {still}[/]",
        )
    console.print(table)
    return out


def _run_cohort(ctx: App, name: str, size: int, console: Console) -> CohortOutcome:
    from admin.progress import watch_cohort

    legacy = ctx.limiters["legacy"]
    calls_before = legacy.stats()["acquired"]
    started = time.monotonic()
    ctx.start_cohort(name, actor="demo")
    p = watch_cohort(ctx.sessions, name, console)
    return CohortOutcome(
        name,
        size,
        p.by_status.get("done", 0),
        p.by_status.get("failed", 0),
        p.by_status.get("deferred", 0),
        p.failures_by_kind,
        p.deferred_by_reason,
        legacy.stats()["acquired"] - calls_before,
        time.monotonic() - started,
        p.status,
        p.halt_reason,
    )


def _lost_users(ctx: Any, seeded: list[Any]) -> list[str]:
    """Independent check through the routing table: every seeded user is somewhere."""
    from multiplexer.models import Route

    with ctx.sessions() as session:
        known = {r.user_id: r.state for r in session.query(Route).all()}
    return [u.app_user_id for u in seeded if known.get(u.app_user_id) not in ("legacy", "new")]


def _stopped_at_prove(ctx: Any, workdir: Path, console: Console) -> tuple[list[str], list[Path]]:
    """Users ``prove`` stopped before the legacy cancel: still on legacy, diff shown."""
    from migration.prove import stopped_at_prove
    from reconciler.render import render

    report = stopped_at_prove(ctx.sessions)
    if not report.results:
        return [], []
    console.print(
        f"[yellow]{len(report.results)} users stopped at prove[/] (next charges differ; "
        "left on legacy, untouched):"
    )
    console.print(render(report, "table"))
    folder = workdir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.created_at.strftime("%Y%m%dT%H%M%SZ")
    paths = []
    for fmt in ("html", "json"):
        path = folder / f"prove-failures-{stamp}.{fmt}"
        path.write_text(render(report, fmt), encoding="utf-8")
        paths.append(path)
    return [r.user_id for r in report.results], paths


def _reconcile(
    ctx: Any, workdir: Path, console: Console
) -> tuple[dict[str, Any] | None, list[Path]]:
    try:
        from migration.verify import reconcile_population
    except ImportError:
        return None, []
    return reconcile_population(ctx, workdir / "reports", console)
