"""Inventory: create/update routing rows from the legacy system or an explicit CSV.

Both paths are idempotent: a row is only touched (version bumped, audited)
when something actually changed, so re-running a sync changes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.canonical import Customer
from core.db import transaction
from core.errors import InvalidInput
from multiplexer import routing
from multiplexer.cache import RouteCache
from multiplexer.models import Route

CONFIG_KEY = "twinbill_config"


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # customer ids without an app user id

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
        }


def _facets(customer: Customer) -> dict[str, Any]:
    facets: dict[str, Any] = {"currency": customer.currency}
    if customer.metadata.get(CONFIG_KEY):
        facets["configuration"] = customer.metadata[CONFIG_KEY]
    return facets


def upsert_legacy_user(
    session: Session,
    customer: Customer,
    *,
    actor: str,
    cache: RouteCache | None,
    report: SyncReport,
) -> None:
    user_id = customer.user_id
    if not user_id:  # no app_user_id in metadata: known only if a CSV import linked it
        linked = session.scalar(sa.select(Route).where(Route.legacy_customer_id == customer.id))
        if linked is None:
            report.skipped.append(customer.id)
            return
        customer = customer.model_copy(update={"user_id": linked.user_id})
        user_id = linked.user_id
    route = session.get(Route, user_id)
    wanted = {
        "legacy_customer_id": customer.id,
        "email": customer.email,
        "name": customer.name,
        "currency": customer.currency,
    }
    if route is None:
        routing.create_route(
            session,
            user_id,
            system="legacy",
            actor=actor,
            reason="inventory sync",
            cache=cache,
            facets=_facets(customer),
            **wanted,
        )
        report.created += 1
        return
    if route.legacy_customer_id not in (None, customer.id):
        raise InvalidInput(
            f"user {user_id!r} is linked to legacy customer {route.legacy_customer_id}, "
            f"but {customer.id} also claims it (metadata app_user_id): fix one of them"
        )
    facets = {**(route.facets or {}), **_facets(customer)}
    changes = {k: v for k, v in wanted.items() if getattr(route, k) != v}
    if facets != route.facets:
        changes["facets"] = facets
    if not changes:
        report.unchanged += 1
        return
    before = {k: getattr(route, k) for k in changes}
    for k, v in changes.items():
        setattr(route, k, v)
    route.version += 1
    audit.record(
        session,
        actor=actor,
        action="route.inventory_updated",
        resource_type="route",
        resource_id=user_id,
        before=before,
        after=changes,
        reason="inventory sync",
    )
    if cache is not None:
        cache.invalidate(user_id)
    report.updated += 1


def sync_customers(
    sessions: sessionmaker[Session],
    customers: Iterable[Customer],
    *,
    actor: str,
    cache: RouteCache | None = None,
    batch: int = 200,
) -> SyncReport:
    """Page through legacy customers (the backend throttles each page) into routes."""
    report = SyncReport()
    pending: list[Customer] = []

    def flush() -> None:
        with transaction(sessions) as session:
            for c in pending:
                upsert_legacy_user(session, c, actor=actor, cache=cache, report=report)
        pending.clear()

    for customer in customers:
        pending.append(customer)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return report


def read_mapping_csv(path: Path) -> list[tuple[str, str]]:
    """``user_id,legacy_customer_id`` rows (header optional); refuses the file on any bad row."""
    rows: list[tuple[str, str]] = []
    seen_users: set[str] = set()
    seen_customers: set[str] = set()
    with path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if n == 1 and row[0].strip().lower() in {"user_id", "app_user_id"}:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise InvalidInput(f"{path}:{n}: expected user_id,legacy_customer_id")
            user_id, customer_id = row[0].strip(), row[1].strip()
            if user_id in seen_users or customer_id in seen_customers:
                raise InvalidInput(f"{path}:{n}: {user_id} or {customer_id} appears twice")
            seen_users.add(user_id)
            seen_customers.add(customer_id)
            rows.append((user_id, customer_id))
    return rows


def import_mapping(
    sessions: sessionmaker[Session],
    rows: list[tuple[str, str]],
    *,
    actor: str,
    cache: RouteCache | None = None,
) -> SyncReport:
    """Link app users to legacy customers explicitly; a later sync fills in the details."""
    report = SyncReport()
    with transaction(sessions) as session:
        for user_id, customer_id in rows:
            route = session.get(Route, user_id)
            owner = session.scalar(sa.select(Route).where(Route.legacy_customer_id == customer_id))
            if owner is not None and owner.user_id != user_id:
                raise InvalidInput(
                    f"legacy customer {customer_id} already belongs to "
                    f"{owner.user_id!r}, not {user_id!r}; nothing imported"
                )
            if route is None:
                routing.create_route(
                    session,
                    user_id,
                    system="legacy",
                    actor=actor,
                    reason="imported mapping",
                    cache=cache,
                    legacy_customer_id=customer_id,
                )
                report.created += 1
            elif route.legacy_customer_id == customer_id:
                report.unchanged += 1
            elif route.legacy_customer_id is None and route.system == "legacy":
                before = {"legacy_customer_id": None}
                route.legacy_customer_id = customer_id
                route.version += 1
                audit.record(
                    session,
                    actor=actor,
                    action="route.inventory_updated",
                    resource_type="route",
                    resource_id=user_id,
                    before=before,
                    after={"legacy_customer_id": customer_id},
                    reason="imported mapping",
                )
                report.updated += 1
            else:
                raise InvalidInput(
                    f"user {user_id!r} is already linked to "
                    f"{route.legacy_customer_id}; nothing imported"
                )
    return report
