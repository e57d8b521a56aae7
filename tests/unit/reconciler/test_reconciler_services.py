from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from billing_strategies import fixed_history, identity_new, identity_new_doc

from core.canonical import BillingHistory
from core.db import make_engine, make_sessionmaker, transaction
from core.dbschema import upgrade
from reconciler.models import ReconciliationReport, ReconciliationResult
from reconciler.projection import reconcile_users
from reconciler.report import Report
from reconciler.services import diff_rate, latest_results, store_report


def _report(dirty_users: set[str], cohort: str = "pilot") -> Report:
    hs = {u: fixed_history(u) for u in ("u1", "u2", "u3")}
    news = {}
    for u, h in hs.items():
        doc = identity_new_doc(h)
        if u in dirty_users:
            doc["customer"]["balance"] = 99
        news[u] = BillingHistory.model_validate(doc) if u in dirty_users else identity_new(h)
    return reconcile_users(
        sorted(hs),
        load_legacy=lambda u: (hs[u], None),
        load_new=news.__getitem__,
        scope_kind="cohort",
        scope_value=cohort,
        created_by="cli:test",
        cohort_of=lambda u: cohort,
    )


def test_models_round_trip_through_the_alembic_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twinbill.db'}"
    upgrade(url)
    engine = make_engine(url)
    assert {"reconciliation_reports", "reconciliation_results"} <= set(
        sa.inspect(engine).get_table_names()
    )
    factory = make_sessionmaker(engine)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    with transaction(factory) as s:
        first = store_report(s, _report({"u1", "u2"}))
    with transaction(factory) as s:
        second = store_report(s, _report({"u2"}))
        store_report(s, _report({"u1"}, cohort="other"))
    with factory() as s:
        row = s.get(ReconciliationReport, first.id)
        assert row is not None and row.clean is False and row.users_checked == 3
        assert row.body["schema_version"] == 1 and row.body["report"]["id"] == first.id
        assert row.counts_by_kind == {"changed": 2}
        assert row.created_at.tzinfo is not None
        assert s.scalar(sa.select(sa.func.count(ReconciliationResult.id))) == 9
        latest = latest_results(s, "pilot", t0)
        assert [(r.user_id, r.report_id, r.clean) for r in latest] == [
            ("u1", second.id, True),
            ("u2", second.id, False),
            ("u3", second.id, True),
        ]
        assert latest[1].counts_by_kind == {"changed": 1}
        assert diff_rate(s, "pilot", t0) == (3, 1)
        assert diff_rate(s, "other", t0) == (3, 1)
        assert diff_rate(s, "pilot", datetime.now(UTC) + timedelta(hours=1)) == (0, 0)
        assert diff_rate(s, "nobody", t0) == (0, 0)
    engine.dispose()
