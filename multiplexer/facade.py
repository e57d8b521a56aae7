"""``BillingMux``: one billing API for the application, whichever system a user lives in.

Reads go to the system of record from the (possibly cached) route. Writes
re-read the route from the database first, refuse users that are migrating
(retryable) or held/failed (read-only), validate money against the user's
currency and the configured ceiling, carry an idempotency key, and leave an
audit entry naming the actor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.canonical import (
    BillingHistory,
    BillingSummary,
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    Refund,
    RefundMode,
    Subscription,
    System,
)
from core.db import transaction
from core.errors import CurrencyMismatch, InvalidInput, UserHeld, UserMigrating
from core.money import Money
from multiplexer import guards, offline_ledger, routing
from multiplexer.backends.base import BillingBackend, LegacyBillingBackend, UserRef
from multiplexer.cache import RouteCache, RouteInfo
from multiplexer.facade_offline import OfflineMoneyMixin, derived_key
from multiplexer.placement import current_placement
from multiplexer.scientist import Scientist

#: Seconds a caller should wait before retrying a write for a migrating user.
MIGRATING_RETRY_AFTER = 30


__all__ = ["MIGRATING_RETRY_AFTER", "BillingMux", "derived_key"]


class BillingMux(OfflineMoneyMixin):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache: RouteCache,
        backends: dict[str, BillingBackend],
        *,
        max_amount_major: int,
        new_key: Callable[[], str] = lambda: uuid.uuid4().hex,
        scientist: Scientist | None = None,
    ) -> None:
        """``scientist``: compares a shadowed user's reads with the new system in the
        background (``multiplexer.scientist``); the app always gets the legacy answer."""
        self._sessions = sessions
        self._scientist = scientist
        self._cache = cache
        self._backends = backends
        self._max_major = max_amount_major
        self._new_key = new_key

    def close(self) -> None:
        if self._scientist is not None:
            self._scientist.close()

    # -- routing -----------------------------------------------------------------------------
    def route(self, user_id: str, *, for_write: bool = False) -> RouteInfo:
        with self._sessions() as session:
            if for_write:
                return routing.resolve_for_write(session, self._cache, user_id)
            return routing.lookup(session, self._cache, user_id)

    def _backend(self, info: RouteInfo) -> BillingBackend:
        return self._backends[info.system]

    @staticmethod
    def _ref(info: RouteInfo) -> UserRef:
        return UserRef(info.user_id, info.legacy_customer_id, info.new_customer_id)

    def _writable(self, user_id: str) -> RouteInfo:
        info = self.route(user_id, for_write=True)
        if info.state == routing.MIGRATING:
            raise UserMigrating(user_id, MIGRATING_RETRY_AFTER)
        if info.state not in routing.WRITABLE:
            raise UserHeld(user_id, info.state)
        return info

    def _check_money(self, info: RouteInfo, amount: Money) -> Money:
        amount.check_positive(max_major=self._max_major)
        if info.currency and amount.currency != info.currency.upper():
            raise CurrencyMismatch(
                f"user {info.user_id!r} is billed in {info.currency.upper()}, not {amount.currency}"
            )
        return amount

    def _audit(
        self,
        info: RouteInfo,
        actor: str,
        action: str,
        after: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        with transaction(self._sessions) as session:
            audit.record(
                session,
                actor=actor,
                action=action,
                resource_type="user",
                resource_id=info.user_id,
                after={"system": info.system, **after},
                reason=reason,
            )

    def _refuser(self, info: RouteInfo, actor: str) -> guards.Refuse:
        """Audits a write refused because an id is not among the path user's records."""

        def refuse(attempted: str, ids: dict[str, Any]) -> None:
            self._audit(
                info,
                actor,
                "security.foreign_id_refused",
                {"attempted": attempted, **ids},
                "id not among this user's records: 404, nothing written",
            )

        return refuse

    # -- reads ---------------------------------------------------------------------------
    def _shadow(self, info: RouteInfo, op: str, answer: Any, read: Callable[..., Any]) -> Any:
        """Return ``answer`` unchanged; for a legacy user, let the scientist compare it with
        the new system's answer (``read(new, ref)``) in the background, shadowed users only."""
        if self._scientist is not None and info.system == "legacy":
            new = self._backends["new"]
            ref = UserRef(info.user_id, None, info.new_customer_id)
            self._scientist.observe(info.user_id, op, answer, lambda: read(new, ref))
        return answer

    def list_subscriptions(self, user_id: str) -> list[Subscription]:
        info = self.route(user_id)
        answer = self._backend(info).list_subscriptions(self._ref(info))
        return self._shadow(info, "list_subscriptions", answer, _history)  # type: ignore[no-any-return]

    def list_invoices(self, user_id: str) -> list[Invoice]:
        info = self.route(user_id)
        answer = self._backend(info).list_invoices(self._ref(info))
        return self._shadow(info, "list_invoices", answer, _history)  # type: ignore[no-any-return]

    def list_payments(self, user_id: str) -> list[Payment]:
        info = self.route(user_id)
        answer = self._backend(info).list_payments(self._ref(info))
        return self._shadow(info, "list_payments", answer, _history)  # type: ignore[no-any-return]

    def new_system_history(self, user_id: str) -> BillingHistory | None:
        """For a user rolled back to legacy: everything the new system kept from the stay
        (invoices, payments, offline money it recorded are not rewritten into legacy)."""
        info = self.route(user_id)
        if info.system == "new" or not info.new_customer_id or "new" not in self._backends:
            return None
        return self._backends["new"].get_history(self._ref(info))

    def summary(self, user_id: str) -> BillingSummary:
        info = self.route(user_id)
        answer = _summary(info, self._backend(info).get_history(self._ref(info)))
        return self._shadow(  # type: ignore[no-any-return]
            info, "summary", answer, lambda b, ref: _summary(info, b.get_history(ref))
        )

    # -- writes ------------------------------------------------------------------------------
    def create_user(
        self,
        user_id: str,
        *,
        email: str | None,
        name: str | None,
        currency: str,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Customer:
        """Place a brand-new user by the rollout policy and create it there (never migrated)."""
        from core.money import exponent

        exponent(currency)
        with transaction(self._sessions) as session:
            existing = session.get(routing.Route, user_id)
            if existing is not None:
                raise InvalidInput(f"user {user_id!r} already exists (lives in {existing.system})")
            system = current_placement(session).system_for(user_id)
        key = idempotency_key or derived_key("create-user", user_id)
        customer = self._backends[system].create_customer(
            user_id, email=email, name=name, currency=currency.upper(), idempotency_key=key
        )
        with transaction(self._sessions) as session:
            ids = (
                {"legacy_customer_id": customer.id}
                if system == "legacy"
                else {"new_customer_id": customer.id}
            )
            routing.create_route(
                session,
                user_id,
                system=system,
                actor=actor,
                reason="new user placed by rollout policy",
                cache=self._cache,
                email=email,
                name=name,
                currency=currency.upper(),
                **ids,
            )
        return customer

    def create_subscription(
        self,
        user_id: str,
        plan_code: str,
        *,
        quantity: int = 1,
        trial_days: int | None = None,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Subscription:
        info = self._writable(user_id)
        plan = self._plan(plan_code)
        guards.plan_currency(plan, info)
        sub = self._backend(info).create_subscription(
            self._ref(info),
            plan,
            quantity=quantity,
            trial_days=trial_days,
            idempotency_key=idempotency_key or self._new_key(),
        )
        self._audit(
            info, actor, "billing.subscription_created", {"subscription": sub.id, "plan": plan_code}
        )
        return sub

    def change_plan(
        self,
        user_id: str,
        subscription_id: str,
        plan_code: str,
        *,
        prorate: bool = True,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Subscription:
        info = self._writable(user_id)
        plan = self._plan(plan_code)
        guards.plan_currency(plan, info)
        current = guards.own_subscription(
            self._backend(info),
            self._ref(info),
            info,
            subscription_id,
            refuse=self._refuser(info, actor),
            attempted="change_plan",
        )
        guards.plan_currency(plan, info, current)
        sub = self._backend(info).change_plan(
            self._ref(info),
            subscription_id,
            plan,
            prorate=prorate,
            idempotency_key=idempotency_key or self._new_key(),
        )
        self._audit(
            info,
            actor,
            "billing.plan_changed",
            {"subscription": subscription_id, "plan": plan_code, "prorate": prorate},
        )
        return sub

    def cancel(
        self,
        user_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        refund: RefundMode = RefundMode.NONE,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Subscription:
        info = self._writable(user_id)
        guards.own_subscription(
            self._backend(info),
            self._ref(info),
            info,
            subscription_id,
            refuse=self._refuser(info, actor),
            attempted="cancel",
        )
        sub = self._backend(info).cancel_subscription(
            self._ref(info),
            subscription_id,
            at_period_end=at_period_end,
            refund=refund,
            idempotency_key=idempotency_key or self._new_key(),
        )
        self._audit(
            info,
            actor,
            "billing.subscription_canceled",
            {
                "subscription": subscription_id,
                "at_period_end": at_period_end,
                "refund": refund.value,
            },
        )
        return sub

    def refund_payment(
        self,
        user_id: str,
        payment_id: str,
        *,
        amount: Money | None,
        reason: str | None,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Refund:
        info = self._writable(user_id)
        if amount is not None:
            self._check_money(info, amount)
        payment = guards.own_payment(
            self._backend(info),
            self._ref(info),
            info,
            payment_id,
            refuse=self._refuser(info, actor),
            attempted="refund",
        )
        fields = {
            "payment": payment_id, "reason": reason,
            "amount": amount.amount if amount else None,
            "currency": amount.currency if amount else None,
        }  # fmt: skip
        request_hash = offline_ledger.client_hash("card_refund", fields)
        # as for offline refunds: a replay answers what the first request did, before the
        # remainder check (the first refund may have taken the whole payment); the backend
        # replays it under the same key
        replay = idempotency_key is not None and self._refunded_before(
            info, idempotency_key, request_hash
        )
        if not replay:
            guards.refundable(payment, amount)  # localstripe would accept 10,000 on 8.99
        key = idempotency_key or self._new_key()
        refund = self._backend(info).refund_payment(
            self._ref(info), payment_id, amount=amount, reason=reason, idempotency_key=key
        )
        if not replay:
            self._audit(
                info,
                actor,
                "billing.payment_refunded",
                {
                    "payment": payment_id,
                    "refund": refund.id,
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "idempotency_key": key,
                    "request_hash": request_hash,
                },
                reason,
            )
        return refund

    def _refunded_before(self, info: RouteInfo, idempotency_key: str, request_hash: str) -> bool:
        """True: this user's refund under this key was the same request (a replay).
        The key on another request is refused (``InvalidInput``), before anything is sent."""
        with self._sessions() as session:
            entries = session.scalars(
                sa.select(audit.AuditEntry).where(
                    audit.AuditEntry.resource_type == "user",
                    audit.AuditEntry.resource_id == info.user_id,
                    audit.AuditEntry.action == "billing.payment_refunded",
                )
            )
            for entry in entries:
                after = entry.after or {}
                if after.get("idempotency_key") != idempotency_key:
                    continue
                if after.get("request_hash") != request_hash:
                    raise offline_ledger.key_reused(
                        idempotency_key, f"refund {after.get('refund')} of {after.get('payment')}"
                    )
                return True
        return False

    def _plan(self, plan_code: str):  # type: ignore[no-untyped-def]
        legacy = self._backends["legacy"]
        if not isinstance(legacy, LegacyBillingBackend):
            raise InvalidInput("no plan catalogue: the legacy backend cannot list plans")
        return legacy.get_plan(plan_code)


def _history(backend: BillingBackend, ref: UserRef) -> BillingHistory:
    """The new side of a list read: the user's whole history, so that the records it points
    at (an invoice's subscription) resolve to their legacy ids before the comparison."""
    return backend.get_history(ref)


def _summary(info: RouteInfo, history: BillingHistory) -> BillingSummary:
    """The billing page's summary of one history (either system's: the shadow compares)."""
    renewals = [s.next_renewal_at for s in history.subscriptions if s.next_renewal_at]
    customer = history.customer
    return BillingSummary(
        user_id=info.user_id,
        system=System(info.system),
        customer=customer,
        subscriptions=history.subscriptions,
        next_renewal_at=min(renewals) if renewals else None,
        open_invoices=sum(1 for i in history.invoices if i.status is InvoiceStatus.OPEN),
        balance=customer.balance if customer else 0,
        currency=customer.currency if customer else info.currency,
    )
