"""The ``prove`` step's I/O: ask both systems what they will charge next, compare, record.

Runs between ``recheck`` and ``cancel`` (the pivot) and in dry runs: the user can
still be compensated. The comparison itself is pure (``reconciler.next_charge``);
this module fetches the two previews (legacy: the server's upcoming-invoice
preview; new: ``GET /v1/imports/{id}/preview`` of the pending import), stores the
result as a one-user reconciliation report (so it shows in the HTML report and in
the cohort's diff rate) and raises ``ProveFailed`` on any difference.

A preview that cannot be fetched (timeout, 5xx, 429) raises the backend's transient
error: the saga retries it like any step and, when it keeps failing, compensates the
user ("could not prove"). A preview that does not parse is a ``TransformError``
(a data error naming the field). Nobody is migrated unverified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.db import transaction, utcnow
from core.errors import TwinbillError
from migration import records
from multiplexer.backends.base import RawSnapshot, UserRef
from reconciler.next_charge import ProveResult, compare_next_charges
from reconciler.report import Report, ReportBuilder, UserResult
from reconciler.services import store_report

if TYPE_CHECKING:
    from migration.deps import SagaDeps
    from migration.models import Migration


class ProveFailed(TwinbillError):
    """The two systems disagree on the user's next charge: a data error, before the pivot."""

    kind = "data"

    def __init__(self, result: ProveResult, detail: dict[str, Any]) -> None:
        super().__init__(result.summary(), user_id=result.user_id)
        self.result = result
        self.detail = detail


def store_result(deps: SagaDeps, mig: Migration, result: ProveResult) -> int | None:
    """One-user report: the HTML page shows both previews and the field diff."""
    report = Report(scope_kind="user", scope_value=mig.user_id, created_by="system:saga:prove")
    ReportBuilder(report).add(
        UserResult(
            user_id=mig.user_id,
            cohort=mig.cohort,
            differences=result.differences,
            violations=(),
            checked_at=utcnow(),
            legacy_view={"next_charges": result.legacy.model_dump(mode="json")},
            new_view={"next_charges": result.new.model_dump(mode="json")},
        )
    )
    with transaction(deps.sessions) as session:
        store_report(session, report)
    return report.id


def compare_previews(
    deps: SagaDeps, ref: UserRef, import_id: str, *, known: RawSnapshot | None = None
) -> ProveResult:
    """Both systems' own previews of the user's next charges, compared (``prove`` and the
    shadow rehearsal's daily and per-webhook check share this). ``known``: a legacy
    snapshot just proved current, so legacy is asked only for its previews."""
    legacy = deps.legacy.preview_next_charges(ref, known=known)
    new = deps.new.preview_import(import_id)
    return compare_next_charges(legacy, new)


def prove(deps: SagaDeps, mig: Migration, ref: UserRef) -> dict[str, Any]:
    assert mig.import_id is not None, "prove runs after load"
    assert mig.snapshot_id is not None, "prove runs after the re-check"
    # the re-check step just proved the snapshot is legacy's state now (unchanged since
    # it was read): its customer and subscriptions are legacy's own answers
    current = records.load_snapshot(deps.sessions, mig.snapshot_id)
    result = compare_previews(deps, ref, mig.import_id, known=current)
    report_id = store_result(deps, mig, result)
    detail = {**result.to_dict(), "report_id": report_id}
    if not result.clean:
        raise ProveFailed(result, detail)
    return detail


def stopped_at_prove(sessions: Any, *, created_by: str = "demo") -> Report:
    """Every user whose latest migration was stopped at ``prove``, with both previews and
    the diff (the demo's and the runbook's "who failed prove, and why")."""
    import sqlalchemy as sa

    from migration.models import Migration, MigrationStep
    from reconciler.findings import Difference

    report = Report(scope_kind="all", scope_value=None, created_by=created_by)
    builder = ReportBuilder(report)
    with sessions() as session:
        rows = session.execute(
            sa.select(Migration, MigrationStep)
            .join(MigrationStep, MigrationStep.migration_id == Migration.id)
            .where(
                MigrationStep.step == "prove",
                MigrationStep.outcome == "error",
                Migration.status.in_(("compensated", "failed")),
            )
            .order_by(Migration.user_id, MigrationStep.id)
        ).all()
    latest: dict[str, tuple[Any, Any]] = {}
    for mig, step in rows:
        if (step.detail or {}).get("differences"):
            latest[mig.user_id] = (mig, step)
    for user_id, (mig, step) in sorted(latest.items()):
        detail = step.detail
        builder.add(
            UserResult(
                user_id=user_id,
                cohort=mig.cohort,
                differences=tuple(Difference.from_dict(d) for d in detail["differences"]),
                violations=(),
                checked_at=step.finished_at or utcnow(),
                legacy_view={"next_charges": detail.get("legacy")},
                new_view={"next_charges": detail.get("new")},
            )
        )
    return report
