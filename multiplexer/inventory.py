"""Inventory: create/update routing rows from the legacy system or an explicit CSV.

Both paths are idempotent: a row is only touched (version bumped, audited)
when a routing field actually changed, so re-running a sync changes nothing.
Facets (``multiplexer.facets``) are refreshed in place without a version bump.
A customer that conflicts with the routing table (two customers claiming one
user, a customer re-labelled to another user) is skipped and reported; it never
aborts the sync of everyone else.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.canonical import Customer
from core.db import transaction
from core.errors import InvalidInput
from multiplexer import facets as facets_of
from multiplexer import routing
from multiplexer.backends.base import InventoryEntry
from multiplexer.cache import RouteCache
from multiplexer.models import Route

#: extra facets from a higher layer (preflight verdict, unmapped features): the sync
#: itself knows nothing of migrations
Assess = Callable[[InventoryEntry], dict[str, Any]]


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0  # routing fields changed (version bumped, audited)
    refreshed: int = 0  # only facets changed: a cache of legacy data, no version bump
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # customer ids without an app user id
    #: customers that could not be given a route, with the reason; the sync went on
    conflicts: list[dict[str, str]] = field(default_factory=list)
    #: customers the mapping could not read: routed, with ``readable=false`` facets
    unreadable: list[dict[str, str]] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return (
            self.created + self.updated + self.refreshed + self.unchanged
            + len(self.skipped) + len(self.conflicts)
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "refreshed": self.refreshed,
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
            "conflicts": self.conflicts,
            "unreadable": self.unreadable,
        }


def _conflict(report: SyncReport, customer_id: str, user_id: str, reason: str) -> None:
    report.conflicts.append({"customer_id": customer_id, "user_id": user_id, "reason": reason})


def upsert_entry(
    session: Session,
    entry: InventoryEntry,
    facets: dict[str, Any] | None,
    *,
    actor: str,
    cache: RouteCache | None,
    report: SyncReport,
) -> None:
    """Create or update one user's route; a customer that conflicts with the routing
    table is reported in ``report.conflicts`` and left alone (never raises for it)."""
    customer = entry.customer
    if customer is None:
        _conflict(report, entry.customer_id, entry.user_id, entry.problem or "unreadable customer")
        return
    user_id = customer.user_id
    owner = session.scalar(sa.select(Route).where(Route.legacy_customer_id == customer.id))
    if not user_id:  # no app_user_id in metadata: known only if a CSV import linked it
        if owner is None:
            report.skipped.append(customer.id)
            return
        user_id = owner.user_id
    if owner is not None and owner.user_id != user_id:
        _conflict(
            report,
            customer.id,
            user_id,
            f"legacy customer {customer.id} is linked to user {owner.user_id!r}, but its "
            f"metadata app_user_id says {user_id!r}: fix one of them",
        )
        return
    route = session.get(Route, user_id)
    if route is not None and route.legacy_customer_id not in (None, customer.id):
        _conflict(
            report,
            customer.id,
            user_id,
            f"user {user_id!r} is linked to legacy customer {route.legacy_customer_id}, "
            f"but {customer.id} also claims it (metadata app_user_id): fix one of them",
        )
        return
    if entry.problem:
        report.unreadable.append(
            {"customer_id": customer.id, "user_id": user_id, "problem": entry.problem}
        )
    if facets is None:  # customers only: keep what a full inventory read found
        facets = {**((route.facets or {}) if route else {}), "currency": customer.currency}
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
            facets=facets,
            **wanted,
        )
        session.flush()  # a later customer of this batch claiming the user must see it
        report.created += 1
        return
    changes = {k: v for k, v in wanted.items() if getattr(route, k) != v}
    if facets != route.facets:
        route.facets = facets
    if not changes:
        if session.is_modified(route):
            report.refreshed += 1
        else:
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


def entry_facets(entry: InventoryEntry, assess: Assess | None) -> dict[str, Any] | None:
    if entry.customer is None:
        return None
    out = facets_of.compute(
        entry.history, entry.features, currency=entry.customer.currency, problem=entry.problem
    )
    if assess is not None:
        out.update(assess(entry))
    return out


def _sync(
    sessions: sessionmaker[Session],
    pairs: Iterable[tuple[InventoryEntry, dict[str, Any] | None]],
    *,
    actor: str,
    cache: RouteCache | None,
    batch: int,
    on_customer: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    report = SyncReport()
    pending: list[tuple[InventoryEntry, dict[str, Any] | None]] = []

    def flush() -> None:
        with transaction(sessions) as session:
            for entry, facets in pending:
                upsert_entry(session, entry, facets, actor=actor, cache=cache, report=report)
                if on_customer is not None:
                    on_customer(report)
        pending.clear()

    for pair in pairs:
        pending.append(pair)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return report


def sync_inventory(
    sessions: sessionmaker[Session],
    entries: Iterable[InventoryEntry],
    *,
    actor: str,
    cache: RouteCache | None = None,
    assess: Assess | None = None,
    batch: int = 200,
    on_customer: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Entries (``LegacyBillingBackend.read_inventory``) -> routes with facets, ``batch``
    customers per transaction. Conflicts are reported and skipped, never fatal."""
    pairs = ((e, entry_facets(e, assess)) for e in entries)
    return _sync(sessions, pairs, actor=actor, cache=cache, batch=batch, on_customer=on_customer)


def sync_customers(
    sessions: sessionmaker[Session],
    customers: Iterable[Customer],
    *,
    actor: str,
    cache: RouteCache | None = None,
    batch: int = 200,
) -> SyncReport:
    """Customers only (no billing data read): routes whose facets are just the currency.
    ``users sync`` reads the whole inventory instead (``sync_inventory``)."""
    pairs = (
        (InventoryEntry(customer_id=c.id, user_id=c.user_id, customer=c, history=None), None)
        for c in customers
    )
    return _sync(sessions, pairs, actor=actor, cache=cache, batch=batch)


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
