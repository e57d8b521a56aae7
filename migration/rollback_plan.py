"""What a rollback would do for one user, and why it may not: pure, from the new system's
own bundle (``plan``), plus the reads that decide a refusal before anything is written
(``check``).

A refusal names the user and the reason and writes nothing: a user not on ``new``, an
unknown user, a user created in the new system (no legacy customer), a legacy customer
that is gone, an unpaid (open / past-due) invoice or subscription in the new system,
a subscription the legacy re-creation cannot express (paused collection, a dated
cancellation, a cancel scheduled at period end, several items) or one that renews
inside the safety window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.canonical import BillingHistory, InvoiceStatus, SubscriptionStatus
from core.errors import IllegalTransition, InvalidInput, NotFound, UnknownUser
from multiplexer import routing
from multiplexer.backends.base import Recreation, UserRef
from multiplexer.models import Route

if TYPE_CHECKING:
    from migration.deps import SagaDeps

#: metadata a rollback must not copy onto the legacy re-creation (twinbill's own marks)
OWN_KEYS = ("twinbill_rollback", "twinbill_rollback_of", "twinbill_migration")


class RollbackRefused(InvalidInput):
    """This user cannot be rolled back now; nothing was written."""


@dataclass(frozen=True)
class RollbackPlan:
    user_id: str
    import_id: str | None
    recreate: tuple[Recreation, ...]
    cancel_in_new: tuple[str, ...]  # the new system's billing subscriptions (the pivot)
    history: dict[str, list[str]] = field(default_factory=dict)  # created in new, kept there
    ignored: tuple[str, ...] = ()  # what the rollback leaves alone, with the reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "import_id": self.import_id,
            "recreate": [spec_to_dict(s) for s in self.recreate],
            "cancel_in_new": list(self.cancel_in_new),
            "history": self.history,
            "ignored": list(self.ignored),
        }


def spec_to_dict(spec: Recreation) -> dict[str, Any]:
    out = asdict(spec)
    out["renews_at"] = spec.renews_at.isoformat()
    out["tax_rate_ids"], out["coupon_ids"] = list(spec.tax_rate_ids), list(spec.coupon_ids)
    return out


def spec_from_dict(raw: dict[str, Any]) -> Recreation:
    return Recreation(
        **{
            **raw,
            "renews_at": datetime.fromisoformat(raw["renews_at"]),
            "tax_rate_ids": tuple(raw["tax_rate_ids"]),
            "coupon_ids": tuple(raw["coupon_ids"]),
        }
    )


def _refuse(user_id: str, reason: str) -> RollbackRefused:
    return RollbackRefused(f"cannot roll back {user_id!r}: {reason}; nothing was written")


def plan(
    user_id: str,
    history: BillingHistory,
    import_status: str | None,
    import_id: str | None,
    *,
    now: datetime,
    renewal_guard: timedelta,
) -> RollbackPlan:
    """The legacy re-creation of every subscription the new system bills the user for."""
    if import_status != "active":
        raise _refuse(user_id, f"its import in the new system is {import_status or 'missing'}")
    for inv in history.invoices:
        if inv.status is InvoiceStatus.OPEN:
            raise _refuse(
                user_id,
                f"unpaid invoice {inv.id} in the new system ({inv.amount_due} {inv.currency} "
                "due); settle or void it first",
            )
    customer = history.customer
    payment_method = (
        customer.payment_method_ids[0] if customer and customer.payment_method_ids else None
    )
    specs, cancel, ignored = [], [], []
    for sub in history.subscriptions:
        if sub.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
            raise _refuse(user_id, f"subscription {sub.id} is {sub.status.value} in the new system")
        if not sub.status.billing:
            ignored.append(f"{sub.id}: {sub.status.value}, nothing to re-create")
            continue
        if sub.cancel_at_period_end:
            raise _refuse(
                user_id,
                f"subscription {sub.id} is scheduled to cancel at period end: a legacy "
                "re-creation would be a trial that ends at legacy's own period end, not at the "
                "new system's (docs/legacy-gaps.md); let it end, or undo the cancel first",
            )
        if sub.collection_paused or sub.cancel_at is not None:
            what = "collection paused" if sub.collection_paused else "a dated cancellation"
            raise _refuse(
                user_id,
                f"subscription {sub.id} has {what}, which the forward saga never moves; "
                "it is not the migration's",
            )
        if len(sub.items) != 1:
            raise _refuse(
                user_id,
                f"subscription {sub.id} has {len(sub.items)} items; the re-creation takes one",
            )
        renews = (
            sub.trial_end if sub.status is SubscriptionStatus.TRIALING else sub.current_period_end
        )
        assert renews is not None
        if renews < now + renewal_guard:
            raise _refuse(
                user_id,
                f"subscription {sub.id} charges at {renews:%Y-%m-%d %H:%M} UTC, inside the "
                f"{renewal_guard} safety window; roll back after it",
            )
        (item,) = sub.items
        specs.append(
            Recreation(
                of=sub.id,
                plan_code=item.plan_code,
                quantity=item.quantity,
                renews_at=renews,
                currency=sub.currency,
                tax_rate_ids=tuple(t.legacy_id or t.id for t in sub.tax_rates),
                coupon_ids=tuple(
                    d.coupon_code for d in history.discounts if d.subscription_id == sub.id
                ),
                trialing=sub.status is SubscriptionStatus.TRIALING,
                payment_method_id=payment_method,
                metadata={k: v for k, v in sub.metadata.items() if k not in OWN_KEYS},
            )
        )
        cancel.append(sub.id)
    for d in history.discounts:
        if d.subscription_id is None:
            ignored.append(f"discount {d.id}: the customer's own, kept on the legacy customer")
    return RollbackPlan(
        user_id=user_id,
        import_id=import_id,
        recreate=tuple(specs),
        cancel_in_new=tuple(cancel),
        history=created_in_new(history),
        ignored=tuple(ignored),
    )


def created_in_new(history: BillingHistory) -> dict[str, list[str]]:
    """Records the new system made while the user lived there: not rewritten into legacy,
    readable through the facade (``BillingMux.new_system_history``) and in the report."""
    return {
        kind: [r.id for r in getattr(history, kind) if r.legacy_id is None]
        for kind in ("invoices", "payments", "refunds")
    }


def check(deps: SagaDeps, user_id: str, *, locked: bool = False) -> RollbackPlan:
    """Every refusal, from twinbill's route and both systems' own answers; reads only."""
    with deps.sessions() as session:
        route = session.get(Route, user_id)
        if route is None:
            raise UnknownUser(user_id)
        state, system = route.state, route.system
        ref = UserRef(user_id, route.legacy_customer_id, route.new_customer_id)
    expected = routing.MIGRATING if locked else routing.NEW
    if state != expected or system != "new":
        raise _refuse(user_id, f"its route is {state}/{system}, not new: only a user living in "
                      "the new system can be rolled back")  # fmt: skip
    if ref.legacy_customer_id is None:
        raise _refuse(user_id, "it was created in the new system and has no legacy customer")
    if not deps.legacy.customer_live(ref):  # type: ignore[attr-defined]
        raise _refuse(
            user_id, f"its legacy customer {ref.legacy_customer_id} is gone (deleted in legacy)"
        )
    try:
        bundle = deps.new.get_bundle(user_id)
    except NotFound as exc:
        raise IllegalTransition(
            f"user {user_id!r} routed new but unknown to the new system"
        ) from exc
    return plan_of_bundle(deps, user_id, bundle)


def plan_of_bundle(deps: SagaDeps, user_id: str, bundle: dict[str, Any]) -> RollbackPlan:
    imp = bundle.get("import") or {}
    return plan(
        user_id,
        deps.new.map_bundle(bundle),
        imp.get("status"),
        imp.get("id"),
        now=datetime.now(UTC),
        renewal_guard=deps.renewal_guard,
    )
