"""Reconciliation wired to the migration's data: the saga's verify step, `twinbill reconcile`,
the demo's final check, and the continuous re-check on beat.

The reconciler knows nothing of migrations; this module hands it loaders: the
legacy side from the snapshot stored at fetch time (checked against its
content hash), the new side from the new service's bundle, and — on request —
a fresh re-fetch of legacy for the "billed by exactly one system" invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.canonical import BillingHistory, System
from core.db import transaction, utcnow
from core.errors import NotFound, ReconciliationError, TwinbillError
from migration import records
from migration.models import CohortMember, Migration
from multiplexer.backends.base import LegacyBillingBackend, NewBillingBackend, UserRef
from multiplexer.models import Route
from multiplexer.search_index import index_invoice_numbers
from reconciler.projection import reconcile_users
from reconciler.render import render
from reconciler.report import Report
from reconciler.services import store_report

if TYPE_CHECKING:
    from migration.deps import SagaDeps


@dataclass(frozen=True)
class Scope:
    kind: str  # user | cohort | all
    value: str | None
    user_ids: list[str]
    migrations: dict[str, Migration]


def last_success(session: Session, user_ids: Sequence[str] | None = None) -> dict[str, Migration]:
    stmt = sa.select(Migration).where(Migration.status == "succeeded", Migration.dry_run.is_(False))
    if user_ids is not None:
        stmt = stmt.where(Migration.user_id.in_(list(user_ids)))
    latest: dict[str, Migration] = {}
    for mig in session.scalars(stmt.order_by(Migration.finished_at)):
        latest[mig.user_id] = mig
    # a user whose latest move was a rollback lives in legacy again: nothing to reconcile
    return {uid: mig for uid, mig in latest.items() if mig.direction != "rollback"}


def resolve_scope(
    sessions: sessionmaker[Session],
    *,
    user: str | None = None,
    cohort: str | None = None,
    all_users: bool = False,
) -> Scope:
    """Which migrated users a reconciliation covers; unknown names are an error."""
    with sessions() as session:
        if user is not None:
            if session.get(Route, user) is None:
                raise ReconciliationError(f"unknown user {user!r}")
            migs = last_success(session, [user])
            if user not in migs:
                raise ReconciliationError(f"user {user!r} has no finished migration to check")
            return Scope("user", user, [user], migs)
        if cohort is not None:
            members = list(
                session.scalars(
                    sa.select(CohortMember.user_id).where(CohortMember.cohort == cohort)
                )
            )
            if not members:
                raise ReconciliationError(f"no cohort named {cohort!r}")
            migs = last_success(session, members)
            return Scope("cohort", cohort, sorted(migs), migs)
        if all_users:
            migs = last_success(session)
            return Scope("all", None, sorted(migs), migs)
    raise ReconciliationError("choose a scope: --user ID, --cohort NAME or --all")


def loaders(
    sessions: sessionmaker[Session],
    legacy: LegacyBillingBackend,
    new: NewBillingBackend,
    migrations: Mapping[str, Migration],
):  # type: ignore[no-untyped-def]
    def load_legacy(user_id: str) -> tuple[BillingHistory, dict[str, Any]]:
        mig = migrations[user_id]
        if mig.snapshot_id is None:
            raise ReconciliationError(f"migration {mig.id} of {user_id!r} has no snapshot")
        snap = records.load_snapshot(sessions, mig.snapshot_id)
        return legacy.map_snapshot(snap), snap.objects

    def load_new(user_id: str) -> BillingHistory:
        try:
            bundle = new.get_bundle(user_id)
        except NotFound:  # a migrated user the new system lost: every record is "missing"
            return BillingHistory(user_id=user_id, system=System.NEW, customer=None)
        try:
            return new.map_bundle(bundle)
        except TwinbillError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # a shape the mapping did not foresee (e.g. a list element that is not an
            # object): still a contract violation, reported as one (exit 2, not a crash)
            raise ReconciliationError(
                f"new service's bundle for user {user_id!r} does not match the contract: {exc!r}",
                user_id=user_id,
            ) from exc

    def load_legacy_now(user_id: str) -> BillingHistory:
        with sessions() as session:
            route = session.get(Route, user_id)
            customer = route.legacy_customer_id if route else None
        return legacy.get_history(UserRef(user_id, customer))

    return load_legacy, load_new, load_legacy_now


def reconcile(
    sessions: sessionmaker[Session],
    legacy: LegacyBillingBackend,
    new: NewBillingBackend,
    scope: Scope,
    *,
    created_by: str,
    refetch: bool = False,
    store: bool = True,
    index_invoices: bool = False,
) -> Report:
    """Check every user of the scope, then store the report in one transaction (nothing is
    written if any user cannot be checked). With ``index_invoices`` the same transaction
    indexes the invoice numbers both sides showed (legacy snapshot, new bundle) for the
    admin search."""
    load_legacy, load_new, load_now = loaders(sessions, legacy, new, scope.migrations)
    numbers: list[tuple[str, str, list[str | None]]] = []
    if index_invoices:
        load_legacy, load_new = _noting_invoices(load_legacy, load_new, numbers)
    cohort_of = {u: m.cohort for u, m in scope.migrations.items()}
    # records the new system created itself after the migration began are not "extra"
    since_of = {u: m.started_at for u, m in scope.migrations.items()}
    report = reconcile_users(
        scope.user_ids,
        load_legacy=load_legacy,
        load_new=load_new,
        load_legacy_now=load_now if refetch else None,
        scope_kind=scope.kind,
        scope_value=scope.value,
        created_by=created_by,
        cohort_of=cohort_of.get,
        since_of=since_of.get,
    )
    if store:
        with transaction(sessions) as session:
            store_report(session, report)
            for user_id, system, found in numbers:
                index_invoice_numbers(session, user_id, system, found)
    return report


def _noting_invoices(
    load_legacy: Callable[[str], tuple[BillingHistory, dict[str, Any]]],
    load_new: Callable[[str], BillingHistory],
    numbers: list[tuple[str, str, list[str | None]]],
) -> tuple[Callable[[str], tuple[BillingHistory, dict[str, Any]]], Callable[[str], BillingHistory]]:
    """Wrap the loaders so that every invoice number they see is noted for the index."""

    def legacy_side(user_id: str) -> tuple[BillingHistory, dict[str, Any]]:
        history, objects = load_legacy(user_id)
        numbers.append((user_id, "legacy", [i.number for i in history.invoices]))
        return history, objects

    def new_side(user_id: str) -> BillingHistory:
        history = load_new(user_id)
        numbers.append((user_id, "new", [i.number for i in history.invoices]))
        return history

    return legacy_side, new_side


def independent_violations(
    mig: Migration, deps: SagaDeps, legacy_subs: list[Any] | None = None
) -> list[Any]:
    """``reconciler.independent`` over each system's own answers: the legacy previews the
    prove step kept, the legacy server's raw subscriptions now (``legacy_subs``, else
    listed), the new service's bundle."""
    from core.canonical import NextCharges
    from reconciler.independent import check_independent

    with deps.sessions() as session:
        proved = records.last_ok_step(session, mig.id, "prove")
        route = session.get(Route, mig.user_id)
    preview = None
    if proved is not None and (proved.detail or {}).get("legacy"):
        preview = NextCharges.model_validate(proved.detail["legacy"])
    ref = UserRef(mig.user_id, route.legacy_customer_id if route else None)
    subs_now = legacy_subs
    if subs_now is None:
        subs_now = deps.legacy.subscriptions_now(ref)  # one list request, the server's own answer
    try:
        bundle: dict[str, Any] | None = deps.new.get_bundle(mig.user_id)
    except NotFound:
        bundle = None
    return check_independent(
        mig.user_id,
        legacy_preview=preview,
        legacy_subs_now=subs_now,
        new_bundle=bundle,
        now=utcnow(),
        cohort=mig.cohort,
    )


def legacy_subscriptions_after_cancel(deps: SagaDeps, mig: Migration) -> list[Any] | None:
    """Legacy's subscriptions now, from legacy's own answers without listing them: the
    snapshot's, each one the cancel canceled as the cancel's response said — when the
    event feed proves that nothing else named the user from the snapshot's read until
    after the cancel (the cancel's own deletions name nothing: ``event_keys``). None when
    it cannot prove it (no feed, a gap, an event about the user): the caller lists them.

    Raises ``Later`` while the feed has not read past the cancel yet: the verify step is
    scheduled again instead of holding its worker's thread."""
    from migration.deps import Later
    from migration.recheck import snapshot_ids

    if deps.change_feed is None or mig.direction != "forward" or mig.snapshot_id is None:
        return None
    with deps.sessions() as session:
        cancel = records.last_ok_step(session, mig.id, "cancel")
    answers = (cancel.detail or {}).get("answers") if cancel is not None else None
    if cancel is None or cancel.finished_at is None or not isinstance(answers, dict):
        return None  # a cancel from before its answers were kept: list them
    snap = records.load_snapshot(deps.sessions, mig.snapshot_id)
    if snap.taken_at is None:
        return None
    verdict = deps.change_feed.check(snapshot_ids(snap), snap.taken_at, cancel.finished_at)
    if verdict.wait is not None:
        raise Later(verdict.wait, verdict.reason)
    if not verdict.unchanged:
        return None
    subs = snap.objects.get("subscriptions") or []
    return [{**sub, "status": answers[sub["id"]]} if sub["id"] in answers else sub for sub in subs]


def _store_violations(deps: SagaDeps, mig: Migration, violations: list[Any]) -> int | None:
    from reconciler.report import ReportBuilder, UserResult

    report = Report(scope_kind="user", scope_value=mig.user_id, created_by="system:saga:verify")
    ReportBuilder(report).add(
        UserResult(mig.user_id, mig.cohort, (), tuple(violations), checked_at=utcnow())
    )
    with transaction(deps.sessions) as session:
        store_report(session, report)
    return report.id


def reconcile_verifier(mig: Migration, deps: SagaDeps) -> dict[str, Any]:
    """The saga's verify step: reconcile this one user, store the result, and index the
    invoice numbers of both sides (legacy snapshot, new bundle) for the admin search;
    then the independent invariants (each system's own answers), stored as their own
    one-user report when any is broken."""
    mig = records.load(deps.sessions, mig.id)
    # first, before anything is stored: it may say Later (the feed has not read past the
    # cancel yet), and the step then runs again from the start
    legacy_subs = legacy_subscriptions_after_cancel(deps, mig)
    scope = Scope("user", mig.user_id, [mig.user_id], {mig.user_id: mig})
    # The snapshot (proved current by the re-check just before the cancel) against the
    # new bundle; what legacy bills *now* — the snapshot's subscriptions as the cancel
    # answered, where the event feed proves nobody else touched the user, else one list
    # of them — is judged by the independent invariants (billed twice, billed by
    # neither...). A full re-read would cost 5–7 requests for lists the cancel does not touch.
    report = reconcile(
        deps.sessions,
        deps.legacy,
        deps.new,
        scope,
        created_by="system:saga",
        index_invoices=True,
    )
    independent = independent_violations(mig, deps, legacy_subs)
    independent_report = _store_violations(deps, mig, independent) if independent else None
    return {
        "clean": report.clean and not independent,
        "report_id": report.id,
        "differences": report.summary.differences,
        "violations": report.summary.violations + len(independent),
        "independent": [v.to_dict() for v in independent],
        "independent_report_id": independent_report,
        # how legacy's subscriptions were known: from the cancel's answers (the feed proved
        # nothing else changed) or listed
        "legacy_subscriptions": "cancel answers" if legacy_subs is not None else "listed",
    }


def write_reports(
    report: Report, folder: Path, formats: Sequence[str] = ("html", "json")
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.created_at.strftime("%Y%m%dT%H%M%SZ")
    paths = []
    for fmt in formats:
        path = folder / f"reconciliation-{report.scope_kind}-{stamp}.{fmt}"
        path.write_text(render(report, fmt), encoding="utf-8")
        paths.append(path)
    return paths


def reconcile_population(ctx: Any, folder: Path, console: Any) -> tuple[dict[str, Any], list[Path]]:
    """The demo's last act: every migrated user, with a legacy re-fetch, reports on disk."""
    scope = resolve_scope(ctx.sessions, all_users=True)
    report = reconcile(ctx.sessions, ctx.legacy, ctx.new, scope, created_by="demo", refetch=True)
    console.print(render(report, "table"))
    summary = report.summary.to_dict()
    return {"clean": report.clean, "summary": summary}, write_reports(report, folder)


def recent_migrations(
    sessions: sessionmaker[Session], *, within: timedelta, sample: int
) -> list[str]:
    """Users for continuous reconciliation: everyone migrated recently + a rolling sample."""
    cutoff = utcnow() - within
    with sessions() as session:
        recent = list(
            session.scalars(
                sa.select(Migration.user_id).where(
                    Migration.status == "succeeded", Migration.finished_at >= cutoff
                )
            )
        )
        older = list(
            session.scalars(
                sa.select(Migration.user_id)
                .where(Migration.status == "succeeded", Migration.finished_at < cutoff)
                .order_by(sa.func.random())
                .limit(sample)
            )
        )
    return sorted(set(recent) | set(older))
