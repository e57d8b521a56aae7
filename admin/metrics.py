"""Metrics of the web process: the database-derived gauges, read at scrape time.

Per-process counters and histograms live in ``core.observability`` (every process
serves its own); these gauges describe shared state, so only ``twinbill serve``
collects them — a worker would report the same numbers again.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from migration.models import Cohort, CohortMember
from multiplexer.models import OutboxMessage
from reconciler.models import ReconciliationReport


class DatabaseCollector:
    """Gauges read from the database at scrape time (web process only)."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    def describe(self) -> list[Any]:
        return []  # collected lazily: no database read when the collector is registered

    def collect(self) -> Any:
        try:
            depth, members, rates = self._read()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is down
            logging.getLogger(__name__).warning("metrics: database gauges unavailable")
            return
        outbox = GaugeMetricFamily(
            "twinbill_outbox_messages", "Webhook outbox messages, by status", labels=["status"]
        )
        for state, n in depth.items():
            outbox.add_metric([state], n)
        yield outbox
        cohort = GaugeMetricFamily(
            "twinbill_cohort_members",
            "Cohort members by status (running cohorts and the last 20)",
            labels=["cohort", "status"],
        )
        for (name, status), n in members.items():
            cohort.add_metric([name, status], n)
        yield cohort
        diff = GaugeMetricFamily(
            "twinbill_reconciliation_diff_ratio",
            "Share of users with differences in the latest reconciliation report, by scope",
            labels=["scope"],
        )
        for scope, ratio in rates.items():
            diff.add_metric([scope], ratio)
        yield diff

    def _read(self) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, float]]:
        with self.sessions() as session:
            depth = {
                str(state): int(n)
                for state, n in session.execute(
                    sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
                )
            }
            recent = sa.select(Cohort.name).order_by(Cohort.created_at.desc()).limit(20)
            members = {
                (str(c), str(st)): int(n)
                for c, st, n in session.execute(
                    sa.select(CohortMember.cohort, CohortMember.status, sa.func.count())
                    .where(CohortMember.cohort.in_(recent))
                    .group_by(CohortMember.cohort, CohortMember.status)
                )
            }
            rates: dict[str, float] = {}
            for report in session.scalars(
                sa.select(ReconciliationReport).order_by(ReconciliationReport.id.desc()).limit(20)
            ):
                scope = str(report.scope_kind)
                checked = report.users_checked or 0
                if scope not in rates and checked:
                    rates[scope] = (report.users_with_differences or 0) / checked
        return depth, members, rates
