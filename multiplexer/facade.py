"""``BillingMux``: one billing API for the application, whichever system a user lives in.

Reads go to the system of record from the (possibly cached) route. Writes
re-read the route from the database first, refuse users that are migrating
(retryable) or held/failed (read-only), validate money against the user's
currency and the configured ceiling, carry an idempotency key, and leave an
audit entry naming the actor.

This module holds the class and its reads; the routing and write checks are
``facade_base.MuxBase``, the writes are mixed in from ``facade_writes`` (subscriptions,
card refunds) and ``facade_offline`` (offline money).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.canonical import (
    BillingHistory,
    BillingSummary,
    Invoice,
    InvoiceStatus,
    Payment,
    Subscription,
    System,
)
from multiplexer.backends.base import BillingBackend, UserRef
from multiplexer.cache import RouteInfo
from multiplexer.facade_base import MIGRATING_RETRY_AFTER
from multiplexer.facade_offline import OfflineMoneyMixin, derived_key
from multiplexer.facade_writes import BillingWritesMixin

__all__ = ["MIGRATING_RETRY_AFTER", "BillingMux", "derived_key"]


class BillingMux(BillingWritesMixin, OfflineMoneyMixin):
    """The application's billing API: the reads here, the writes from the mixins."""

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
