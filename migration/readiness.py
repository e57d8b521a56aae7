"""Readiness: what will go wrong if the migration starts tomorrow, user bucket by bucket.

Two halves. ``assessor`` runs inside ``twinbill users sync`` for every legacy customer
and stores, beside the data facets, the verdicts of the rules that decide a
migration: ``preflight`` (``migration.preflight.defer_reason``, the very function the
saga's preflight step calls, on the same snapshot shape) and ``unmapped`` (what no
mapping carries: ``reconciler.unmapped`` over the raw objects, and the transform's
refusals). ``build`` then reads only the routing table (no legacy call) and groups
users per facet value: how many migrate today, how many preflight would defer and
why, how many carry features nothing maps.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import TransformError
from migration import preflight, transform
from migration.cohort_progress import _reason_class as reason_class
from multiplexer import facets as facets_of
from multiplexer import stage
from multiplexer.backends.base import InventoryEntry
from multiplexer.inventory import Assess, SyncReport, sync_inventory
from multiplexer.models import Route

#: facets the report breaks down (the others are shown in JSON only)
REPORT_FACETS = (
    "currency",
    "status",
    "subscriptions",
    "interval",
    "trial",
    "paused",
    "scheduled_cancel",
    "dunning",
    "discounts",
    "tax",
    "payment_method",
    "invoices",
    "refunds",
    "credit_balance",
    "pending_items",
    "renewal_days",
    "complexity",
)
OK = "ok"
#: the stage scope of a ``users sync`` run (``sync_legacy``): its start time, a run id
SYNC_SCOPE = "users sync:"
#: a sync's rows older than this are a killed sync's (none runs for a day)
SYNC_LEFTOVERS = timedelta(days=1)
EXAMPLES = 5


def assessor(*, renewal_guard: timedelta, now: datetime) -> Assess:
    """The ``assess`` hook of ``multiplexer.inventory.sync_inventory``."""
    from reconciler.unmapped import find_unmapped

    def assess(entry: InventoryEntry) -> dict[str, Any]:
        if entry.history is None:
            return {
                "preflight": "unreadable",
                "preflight_reason": entry.problem,
                "unmapped": [f"unreadable: {_field_of(entry.problem)}"],
            }
        raw = entry.snapshot.objects if entry.snapshot else {}
        reason = preflight.defer_reason(
            entry.history, now=now, renewal_guard=renewal_guard, raw=raw
        )
        unmapped: set[str] = set()
        if raw and "customer" in raw:  # a legacy adapter's raw objects (not a fake's)
            # pending one-off items are preflight's business (it defers such users)
            billing = {k: v for k, v in raw.items() if k != "pending_invoice_items"}
            for d in find_unmapped(entry.user_id, billing):
                unmapped.add(f"{d.record_type}.{d.field}")
        try:
            transform.build_payload(entry.history, source_ref=f"inventory:{entry.customer_id}")
        except TransformError as exc:
            unmapped.add(f"transform refuses {exc.field or 'record'}")
        return {
            "preflight": reason_class(reason) if reason else OK,
            "preflight_reason": reason,
            "unmapped": sorted(unmapped),
        }

    return assess


def _field_of(problem: str | None) -> str:
    return (problem or "unknown").split(":")[0][:60]


@dataclass
class Bucket:
    facet: str
    value: str
    users: int = 0
    ready: int = 0
    deferred: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "facet": self.facet,
            "value": self.value,
            "users": self.users,
            "ready": self.ready,
            "deferred": dict(self.deferred.most_common()),
            "unmapped": dict(self.unmapped.most_common()),
        }


@dataclass
class Readiness:
    generated_at: datetime
    users: int = 0
    ready: int = 0
    not_assessed: int = 0  # routes synced without `users sync` (CSV import only...)
    with_unmapped: int = 0
    deferred: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    buckets: list[Bucket] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def blocked(self) -> int:
        return self.users - self.ready - self.not_assessed

    def findings(self) -> list[str]:
        """Sentences, worst first: the answer to "what goes wrong if we start tomorrow"."""
        out: list[tuple[int, str]] = []
        for reason, n in self.deferred.items():
            ex = ", ".join(self.examples.get(f"deferred:{reason}", []))
            out.append((n, f"{n} users would be deferred by preflight: {reason} (e.g. {ex})"))
        for feature, n in self.unmapped.items():
            ex = ", ".join(self.examples.get(f"unmapped:{feature}", []))
            out.append((n, f"{n} users carry {feature}, which no mapping carries (e.g. {ex})"))
        if self.not_assessed:
            out.append(
                (
                    self.not_assessed,
                    f"{self.not_assessed} users were never assessed: run `twinbill users sync`",
                )
            )
        return [text for _, text in sorted(out, key=lambda t: (-t[0], t[1]))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "users": self.users,
            "ready": self.ready,
            "blocked": self.blocked,
            "not_assessed": self.not_assessed,
            "with_unmapped": self.with_unmapped,
            "deferred": dict(self.deferred.most_common()),
            "unmapped": dict(self.unmapped.most_common()),
            "findings": self.findings(),
            "buckets": [b.as_dict() for b in self.buckets],
            "examples": self.examples,
        }


def build(
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    now: datetime,
    report_facets: Sequence[str] = REPORT_FACETS,
) -> Readiness:
    """Pure: (user id, stored facets) of legacy users -> the readiness report."""
    out = Readiness(generated_at=now)
    buckets: dict[tuple[str, str], Bucket] = {}
    examples: dict[str, list[str]] = defaultdict(list)
    for user_id, stored in sorted(rows, key=lambda r: r[0]):
        f = facets_of.live(stored, now)
        out.users += 1
        if "preflight" not in f:
            out.not_assessed += 1
            continue
        verdict = f["preflight"]
        unmapped = list(f.get("unmapped") or [])
        ready = verdict == OK and not unmapped
        out.ready += ready
        out.with_unmapped += bool(unmapped)
        if verdict != OK:
            out.deferred[verdict] += 1
            if len(examples[f"deferred:{verdict}"]) < EXAMPLES:
                examples[f"deferred:{verdict}"].append(user_id)
        for feature in unmapped:
            out.unmapped[feature] += 1
            if len(examples[f"unmapped:{feature}"]) < EXAMPLES:
                examples[f"unmapped:{feature}"].append(user_id)
        for name in report_facets:
            if name not in f:
                continue
            key = (name, facets_of.bucket(name, f[name]))
            b = buckets.setdefault(key, Bucket(*key))
            b.users += 1
            b.ready += ready
            if verdict != OK:
                b.deferred[verdict] += 1
            b.unmapped.update(unmapped)
    order = {name: i for i, name in enumerate(report_facets)}
    out.buckets = sorted(buckets.values(), key=lambda b: (order[b.facet], -b.users, b.value))
    out.examples = dict(examples)
    return out


def legacy_rows(session: Session) -> list[tuple[str, dict[str, Any]]]:
    """Users still on legacy with a legacy customer: the ones a migration would move."""
    result = session.execute(
        sa.select(Route.user_id, Route.facets, Route.currency).where(
            Route.state == "legacy", Route.legacy_customer_id.is_not(None)
        )
    )
    return [(r.user_id, {"currency": r.currency, **(r.facets or {})}) for r in result]


def sync_legacy(
    ctx: Any,
    *,
    actor: str,
    on_page: Callable[[str, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_customer: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """``twinbill users sync``: the bulk inventory read, facets and verdicts, into routes.

    The read's objects wait for their entries in the database (``multiplexer.stage``,
    scope ``users sync``), a batch of customers in memory at a time: held in memory, a
    600,000-customer account (some 8 million objects) would not fit. Every sync reads
    the account afresh, under its own scope (two syncs at once never share rows); its
    rows are dropped when the sync ends, however it ends. A sync that was killed left
    its rows: the next sync drops those of syncs started over ``SYNC_LEFTOVERS`` ago."""
    now = utcnow()
    stage.drop_older(ctx.sessions, SYNC_SCOPE, f"{now - SYNC_LEFTOVERS:%Y%m%dT%H%M%S}")
    scope = f"{SYNC_SCOPE}{now:%Y%m%dT%H%M%S}:{uuid.uuid4().hex}"
    staged = stage.DbStage(ctx.sessions, scope, max_age=0)
    try:
        total, entries = ctx.legacy.read_inventory(on_page=on_page, stage=staged)
        if on_total is not None:
            on_total(total)
        guard = timedelta(seconds=ctx.settings.renewal_guard_seconds)
        return sync_inventory(
            ctx.sessions,
            entries,
            actor=actor,
            cache=ctx.cache,
            assess=assessor(renewal_guard=guard, now=utcnow()),
            on_customer=on_customer,
        )
    finally:
        stage.drop(ctx.sessions, scope)
