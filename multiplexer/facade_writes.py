"""The application's billing writes through ``BillingMux``: a new user's placement,
subscription creation, plan changes, cancels and card refunds (``BillingWritesMixin``).

Each write re-reads the route (``_writable``: migrating users get a retryable refusal,
held or failed ones a read-only one), checks that the ids it names are the path
user's own (``guards``), carries an idempotency key and leaves an audit entry naming
the actor. Kept apart from the reads (``facade.py``), as offline money is
(``facade_offline.py``), so that each file stays short enough to review.
"""

from __future__ import annotations

import sqlalchemy as sa

from core import audit
from core.canonical import Customer, Refund, RefundMode, Subscription
from core.db import transaction
from core.errors import InvalidInput
from core.money import Money
from multiplexer import guards, offline_ledger, routing
from multiplexer.backends.base import LegacyBillingBackend
from multiplexer.cache import RouteInfo
from multiplexer.facade_base import MuxBase
from multiplexer.facade_offline import derived_key
from multiplexer.placement import current_placement


class BillingWritesMixin(MuxBase):
    """The writes of ``BillingMux`` but offline money."""

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
