"""The port every billing system is spoken to through: canonical in, canonical out.

``BillingBackend`` is what the facade needs from any system. The legacy and the
new system each add what only the migration needs from them
(``LegacyBillingBackend``: raw snapshots and migration-caused cancels;
``NewBillingBackend``: pending imports). Adapters translate their SDK's errors
into ``core.errors.BackendError`` subclasses at the boundary and send an
idempotency key with every write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from core.canonical import (
    BillingHistory,
    Customer,
    Invoice,
    NextCharges,
    Payment,
    Plan,
    Refund,
    RefundMode,
    Subscription,
)
from core.money import Money
from multiplexer.facets import LegacyFeatures

#: Called before every request a backend sends; the global rate limiter plugs in here.
Throttle = Callable[[], None]


def no_throttle() -> None:
    return None


@dataclass(frozen=True, slots=True)
class UserRef:
    """Who a call is about, with the ids each system knows the user by."""

    user_id: str
    legacy_customer_id: str | None = None
    new_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class RawSnapshot:
    """A user's complete legacy state as the legacy API returned it (JSON-ready dicts)."""

    user_id: str
    customer_id: str
    objects: dict[str, Any] = field(default_factory=dict)  # customer, subscriptions, invoices...
    #: when its read *started* (stored as the snapshot's ``taken_at``; a change after it may
    #: be missing): readings that depend on time (a localstripe trial is one while its
    #: trial_end is ahead) are made as of then, so a stored snapshot maps the same later
    taken_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    """One legacy customer as the bulk inventory read saw it.

    ``history`` is None when the mapping could not read the customer's objects
    (``problem`` says why); ``customer`` is None when not even the customer could be
    read. ``user_id`` is the customer's ``app_user_id`` metadata or ``""``.
    """

    customer_id: str
    user_id: str
    customer: Customer | None
    history: BillingHistory | None
    features: LegacyFeatures = field(default_factory=LegacyFeatures)
    snapshot: RawSnapshot | None = None
    problem: str | None = None


#: the key of a change whose owner the event could not tell: every customer may have changed
ANY_CUSTOMER = "*"


@dataclass(frozen=True, slots=True)
class LegacyChange:
    """One legacy event: what it names (customer id and object ids, or ``ANY_CUSTOMER``)
    and when it happened (the legacy system's own clock, whole seconds)."""

    keys: tuple[str, ...]
    at: datetime
    event_type: str
    event_id: str


@dataclass(frozen=True, slots=True)
class LegacyChanges:
    """The account's changes since a time, read from its event stream.

    ``complete_from`` is where the stream is known complete (every change from then
    until ``read_at`` is in ``changes``); ``None`` with a ``gap`` (why) when it cannot
    be told at all (a dialect without a usable stream, too many events). A
    ``complete_from`` later than asked (retention exceeded) also carries a ``gap``.
    """

    since: datetime
    read_at: datetime  # when the read started
    changes: tuple[LegacyChange, ...] = ()
    complete_from: datetime | None = None
    gap: str | None = None
    requests: int = 0


#: one object a bulk read keeps: (customer id, list name, the object as JSON)
StagedRow = tuple[str, str, dict[str, Any]]


class Stage(Protocol):
    """Where a bulk read keeps the account-wide lists' objects until each customer's
    snapshot is assembled from them: in memory for one small read, or in the database
    (``multiplexer.stage``) so that a whole cohort's chunks share one read of the account
    and an account too big for memory can be synced.

    A read fills it (``begin``, ``add`` from several threads, ``finish``); any number of
    later calls assemble snapshots from it (``load``) without a list request."""

    #: when the read that filled it started; None: never filled, or the read did not finish
    taken_at: datetime | None
    #: the backend's own notes on the read (e.g. which lists were read account-wide)
    extra: dict[str, Any]

    def wanted(self) -> set[str] | None:
        """The customers whose objects to keep (None: every customer of the account)."""
        ...

    def begin(self) -> None:
        """Drop whatever an earlier or unfinished read left."""
        ...

    def add(self, rows: Sequence[StagedRow]) -> None:
        """Keep these objects; called from several threads at once."""
        ...

    def finish(self, taken_at: datetime, extra: dict[str, Any]) -> None: ...

    def load(self, customer_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """These customers' objects by list name, in the order they were added."""
        ...

    def customer_ids(self) -> list[str]:
        """Every customer the read kept, in the order the customer list gave them."""
        ...


@dataclass(frozen=True, slots=True)
class ImportResult:
    id: str
    status: str  # pending | active | discarded
    user_id: str
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class BillingBackend(Protocol):
    name: str

    # reads
    def get_history(self, ref: UserRef) -> BillingHistory: ...
    def list_subscriptions(self, ref: UserRef) -> list[Subscription]: ...
    def list_invoices(self, ref: UserRef) -> list[Invoice]: ...
    def list_payments(self, ref: UserRef) -> list[Payment]: ...

    # writes: each takes the caller's idempotency key
    def create_customer(
        self,
        user_id: str,
        *,
        email: str | None,
        name: str | None,
        currency: str,
        idempotency_key: str,
    ) -> Customer: ...
    def create_subscription(
        self,
        ref: UserRef,
        plan: Plan,
        *,
        quantity: int,
        trial_days: int | None,
        idempotency_key: str,
    ) -> Subscription: ...
    def change_plan(
        self,
        ref: UserRef,
        subscription_id: str,
        plan: Plan,
        *,
        prorate: bool,
        idempotency_key: str,
    ) -> Subscription: ...
    def cancel_subscription(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        at_period_end: bool,
        refund: RefundMode,
        idempotency_key: str,
    ) -> Subscription: ...
    def refund_payment(
        self,
        ref: UserRef,
        payment_id: str,
        *,
        amount: Money | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund: ...
    def record_offline_payment(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        paid_at: datetime,
        invoice_id: str | None,
        note: str | None,
        idempotency_key: str,
    ) -> Payment: ...
    def record_offline_refund(
        self,
        ref: UserRef,
        amount: Money,
        *,
        reference: str,
        refunded_at: datetime,
        payment_id: str | None,
        reason: str | None,
        idempotency_key: str,
    ) -> Refund: ...


@runtime_checkable
class LegacyBillingBackend(BillingBackend, Protocol):
    def get_plan(self, plan_code: str) -> Plan: ...
    def iter_customers(self, page_size: int = 100) -> Iterator[Customer]: ...
    def read_inventory(
        self, *, on_page: Callable[[str, int], None] | None = None, stage: Stage | None = None
    ) -> tuple[int, Iterator[InventoryEntry]]:
        """Every customer with its billing shape, from account-wide lists: (count, entries).
        ``stage``: where the read's objects wait for their entries (in memory when None; a
        big account's do not fit)."""
        ...

    def snapshot(self, ref: UserRef) -> RawSnapshot: ...
    def snapshots(
        self,
        refs: Sequence[UserRef],
        on_snapshot: Callable[[RawSnapshot], None] | None = None,
        *,
        per_customer: bool = True,
        stage: Stage | None = None,
    ) -> dict[str, RawSnapshot]:
        """Several users' snapshots from one bulk read, by user id, each equal to what
        ``snapshot`` returns and dated at the read's start; a user left out of the answer
        is read with ``snapshot``. ``on_snapshot`` is given each snapshot as soon as it is
        complete, while the read goes on. ``per_customer=False`` leaves out what costs a
        request per customer; ``complete_snapshot`` adds it. With a ``stage`` already
        filled (``taken_at`` set) the snapshots are assembled from it, dated at its read;
        else the account is read into it first, for later calls to share."""
        ...

    def complete_snapshot(self, snap: RawSnapshot) -> RawSnapshot:
        """What ``snapshots(per_customer=False)`` left out, read now; the same snapshot
        when nothing was left out."""
        ...

    def read_costs(self, members: int, account: Mapping[str, int]) -> tuple[int, int]:
        """Estimated legacy requests to snapshot ``members`` users of an account holding
        ``account`` objects per list: (one bulk read, per-user reads)."""

    #: why this system's event stream can never prove a customer unchanged (None: it can)
    @property
    def events_gap(self) -> str | None: ...

    def list_changes(self, since: datetime) -> LegacyChanges:
        """The account's changes since ``since`` from its event stream, with whether the
        stream is complete for the window (else ``gap`` says why: the caller re-reads)."""
        ...

    def map_snapshot(self, snapshot: RawSnapshot) -> BillingHistory: ...
    def cancel_for_migration(
        self,
        ref: UserRef,
        subscription_id: str,
        *,
        migration_id: str,
        idempotency_key: str,
        known_live: bool = False,
    ) -> Subscription:
        """Cancel now (no proration, no refund), marked as migration ``migration_id``'s;
        an already canceled one is returned. ``known_live``: the caller has just seen it
        live, so it needs no read first (one request per subscription)."""
        ...

    def preview_next_charges(
        self, ref: UserRef, *, known: RawSnapshot | None = None
    ) -> NextCharges:
        """What the legacy system will charge the user next, per live subscription, from its
        own upcoming-invoice preview (the ``prove`` step's legacy side). ``known``: a raw
        snapshot just proved current, whose customer and subscriptions need no re-read."""
        ...

    def subscriptions_now(self, ref: UserRef) -> list[dict[str, Any]]:
        """The user's subscriptions as the legacy server lists them now, raw (the verify
        step's "is anything still billing?" read: one list, not a whole snapshot)."""
        ...


@dataclass(frozen=True, slots=True)
class Recreation:
    """One subscription of the new system, to be re-created in legacy by a rollback.

    Billing resumes in legacy exactly where the new system would have charged next:
    the subscription is created trialing until ``renews_at`` (the new system's
    ``trial_end`` or ``current_period_end``), with no proration and no invoice now.
    """

    of: str  # the new system's subscription id
    plan_code: str  # the legacy plan / price id
    quantity: int
    renews_at: datetime
    currency: str
    tax_rate_ids: tuple[str, ...] = ()  # legacy tax rate ids (Stripe default_tax_rates)
    coupon_ids: tuple[str, ...] = ()  # legacy coupons of the subscription's discounts
    trialing: bool = False  # the new system's subscription is itself in a trial
    payment_method_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class LegacyRollbackBackend(Protocol):
    """What only a rollback needs from legacy: re-create a subscription, remove it again."""

    def recreate_subscription(
        self, ref: UserRef, spec: Recreation, *, rollback_id: str, idempotency_key: str
    ) -> Subscription: ...
    def remove_recreated(
        self, ref: UserRef, subscription_id: str, *, rollback_id: str, idempotency_key: str
    ) -> None: ...
    def recreated_by(self, ref: UserRef, rollback_id: str) -> list[str]: ...
    def customer_live(self, ref: UserRef) -> bool: ...


@runtime_checkable
class NewBillingBackend(BillingBackend, Protocol):
    def create_import(self, payload: dict[str, Any], *, idempotency_key: str) -> ImportResult: ...
    def activate_import(self, import_id: str, *, idempotency_key: str) -> ImportResult: ...
    def discard_import(self, import_id: str, *, idempotency_key: str) -> ImportResult: ...
    def get_import(self, import_id: str) -> ImportResult: ...
    def preview_import(self, import_id: str) -> NextCharges: ...
    def get_bundle(self, user_id: str) -> dict[str, Any]: ...
    def map_bundle(self, bundle: dict[str, Any]) -> BillingHistory: ...
    def export(self) -> Iterator[dict[str, Any]]: ...
