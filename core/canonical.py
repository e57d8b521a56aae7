"""The canonical billing model: what both billing systems are mapped into.

Each backend maps its own objects here on its own side of the adapter
boundary; the facade returns these shapes whichever system answers, and the
reconciler diffs two of them field by field.

Conventions: amounts are integer minor units with the record's ISO 4217
``currency`` (uppercase); timestamps are timezone-aware UTC. Every record has
``id`` (its id in the system that produced it) and ``legacy_id`` (its id in the
legacy system: equal to ``id`` on the legacy side, the carried-over external id
on the new side, ``None`` for records the new system created itself).
References (``subscription_id``, ``invoice_id``, ``payment_id``) use the
producing system's own ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from core.money import Money, is_currency


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    return value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


def from_unix(ts: int | float | None) -> datetime | None:
    """Stripe-style unix seconds -> aware UTC datetime (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), tz=UTC)


class System(StrEnum):
    LEGACY = "legacy"
    NEW = "new"


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    PAUSED = "paused"

    @property
    def billing(self) -> bool:
        """Does a subscription in this status still bill the user?"""
        return self in {self.TRIALING, self.ACTIVE, self.PAST_DUE, self.UNPAID}


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class PaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    id: str
    legacy_id: str | None = None


class _Priced(_Record):
    currency: str

    @field_validator("currency")
    @classmethod
    def _iso(cls, value: str) -> str:
        if not is_currency(value):
            raise ValueError(f"unknown currency {value!r}")
        return value.upper()


class Customer(_Priced):
    user_id: str
    email: str | None = None
    name: str | None = None
    balance: int = 0  # negative: credit owed to the customer (Stripe's sign convention)
    payment_method_ids: tuple[str, ...] = ()
    created_at: UtcDateTime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class TaxRate(_Record):
    """A tax rate a subscription (or invoice) is taxed with (Stripe ``tax_rate``).

    ``percentage`` is exact (``Decimal``, at most 4 decimal places: 19, 8.875); an
    ``inclusive`` rate is contained in the price, an exclusive one is added on top.
    """

    display_name: str
    percentage: Decimal = Field(ge=0, le=100)
    inclusive: bool = False
    jurisdiction: str | None = None
    country: str | None = None

    @field_validator("percentage")
    @classmethod
    def _four_places(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value != value.quantize(Decimal("0.0001")):
            raise ValueError(f"percentage {value} has more than 4 decimal places")
        return Decimal(format(value.normalize(), "f"))  # one spelling: 19.00 -> 19, never 1E+2


class TaxAmount(BaseModel):
    """One line of an invoice's tax breakdown: how much one rate added."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tax_rate_id: str | None
    amount: int = Field(ge=0)
    inclusive: bool = False
    percentage: Decimal | None = None


class SubscriptionItem(_Record):
    plan_code: str
    product_name: str | None = None
    unit_amount: int = Field(ge=0)
    quantity: int = Field(default=1, ge=0)
    interval: Interval
    interval_count: int = Field(default=1, ge=1)


class Subscription(_Priced):
    status: SubscriptionStatus
    created_at: UtcDateTime
    current_period_start: UtcDateTime
    current_period_end: UtcDateTime
    trial_start: UtcDateTime | None = None
    trial_end: UtcDateTime | None = None
    cancel_at_period_end: bool = False
    cancel_at: UtcDateTime | None = None  # a dated cancellation (Stripe ``cancel_at``)
    collection_paused: str | None = None  # Stripe ``pause_collection.behavior`` while paused
    collection_resumes_at: UtcDateTime | None = None
    canceled_at: UtcDateTime | None = None
    ended_at: UtcDateTime | None = None
    items: tuple[SubscriptionItem, ...] = ()
    tax_rates: tuple[TaxRate, ...] = ()  # Stripe default_tax_rates: what renewals are taxed with
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def next_renewal_at(self) -> datetime | None:
        """When billing next happens; None when it will not renew (or collection is paused:
        Stripe keeps cutting invoices then but collects none of them)."""
        if not self.status.billing or self.cancel_at_period_end or self.collection_paused:
            return None
        if self.cancel_at is not None and self.cancel_at <= self.current_period_end:
            return None
        if self.status is SubscriptionStatus.TRIALING and self.trial_end:
            return self.trial_end
        return self.current_period_end

    @property
    def recurring_amount(self) -> int:
        return sum(i.unit_amount * i.quantity for i in self.items)


class Discount(_Record):
    subscription_id: str | None = None
    coupon_code: str
    percent_off_bp: int | None = Field(default=None, ge=1, le=10_000)
    amount_off: int | None = Field(default=None, ge=0)
    currency: str | None = None
    duration: str  # once | repeating | forever
    duration_in_months: int | None = None
    starts_at: UtcDateTime | None = None
    ends_at: UtcDateTime | None = None


class InvoiceLine(_Record):
    description: str | None = None
    amount: int
    quantity: int = 1
    period_start: UtcDateTime | None = None
    period_end: UtcDateTime | None = None
    proration: bool = False
    plan_code: str | None = None


class Invoice(_Priced):
    number: str | None = None
    subscription_id: str | None = None
    status: InvoiceStatus
    created_at: UtcDateTime
    period_start: UtcDateTime | None = None
    period_end: UtcDateTime | None = None
    due_at: UtcDateTime | None = None
    paid_at: UtcDateTime | None = None
    subtotal: int
    discount_total: int = Field(default=0, ge=0)
    tax: int = Field(default=0, ge=0)
    tax_breakdown: tuple[TaxAmount, ...] = ()  # Stripe total_tax_amounts / total_taxes
    total: int
    amount_paid: int = Field(default=0, ge=0)
    amount_due: int = Field(default=0, ge=0)  # still owed (Stripe: amount_remaining)
    balance_applied: int = Field(default=0, ge=0)  # customer credit that settled part of it
    paid_out_of_band: bool = False
    lines: tuple[InvoiceLine, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def money_total(self) -> Money:
        return Money(self.currency, self.total)


class Payment(_Priced):
    invoice_id: str | None = None
    amount: int = Field(gt=0)
    status: PaymentStatus
    method: str  # card | offline | bank_transfer | other
    payment_method_id: str | None = None
    reference: str | None = None
    paid_at: UtcDateTime
    amount_refunded: int = Field(default=0, ge=0)


class Refund(_Priced):
    payment_id: str | None = None
    amount: int = Field(gt=0)
    reason: str | None = None
    method: str = "card"  # card | offline
    reference: str | None = None
    created_at: UtcDateTime


class Plan(_Priced):
    """A price point a subscription can be on (Stripe Plan/Price; newbilling plan_code)."""

    product_name: str | None = None
    unit_amount: int = Field(ge=0)
    interval: Interval
    interval_count: int = Field(default=1, ge=1)


class BillingState(StrEnum):
    """What a subscription will do next, as the system that holds it says."""

    RENEWING = "renewing"  # charges at the end of the current period
    TRIALING = "trialing"  # charges when the trial ends (``until``)
    PAUSED = "paused"  # collection paused: nothing charged until resumed
    CANCELING = "canceling"  # ends at ``until`` without another charge
    NONE = "none"  # will never charge again (canceled, incomplete, ...)


class NextCharge(_Priced):
    """One subscription's next charge, as its billing system previews it.

    ``id`` is the subscription's id in the previewing system, ``legacy_id`` the
    legacy subscription id (how the two sides are paired). ``charge_at`` is None
    when the subscription will not charge again (state ``canceling``/``none``/
    ``paused``); the amounts are then 0. ``total`` = subtotal - discount + tax
    (exclusive taxes only: inclusive ones are in the subtotal already), before
    the customer's balance; ``amount_due`` is what the card will be charged after
    the balance: ``total - amount_due`` > 0 is credit used, < 0 is debt added.
    """

    state: BillingState
    until: UtcDateTime | None = None  # trial end / cancellation date / pause end
    charge_at: UtcDateTime | None = None
    subtotal: int = 0
    discount: int = Field(default=0, ge=0)
    tax: int = Field(default=0, ge=0)
    tax_breakdown: tuple[TaxAmount, ...] = ()
    total: int = 0
    amount_due: int = Field(default=0, ge=0)

    @property
    def balance_applied(self) -> int:
        """Customer credit used by this charge (negative: debt added to it)."""
        return self.total - self.amount_due


class NextCharges(BaseModel):
    """Everything one system says it will charge a user next (``prove`` compares two)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    system: System
    currency: str | None = None
    balance: int | None = None  # the customer's balance as that system holds it (Stripe sign)
    charges: tuple[NextCharge, ...] = ()
    source: dict[str, str] = Field(default_factory=dict)  # which endpoint answered, per charge


class RefundMode(StrEnum):
    NONE = "none"
    PRORATED = "prorated"
    LAST_PAYMENT = "last_payment"


class BillingHistory(BaseModel):
    """Everything one system holds about one user, canonically."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    system: System
    customer: Customer | None
    subscriptions: tuple[Subscription, ...] = ()
    discounts: tuple[Discount, ...] = ()
    invoices: tuple[Invoice, ...] = ()
    payments: tuple[Payment, ...] = ()
    refunds: tuple[Refund, ...] = ()

    @property
    def billing_subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.status.billing)


class BillingSummary(BaseModel):
    """What the application shows on a user's billing page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    system: System
    customer: Customer | None
    subscriptions: tuple[Subscription, ...]
    next_renewal_at: UtcDateTime | None
    open_invoices: int
    balance: int
    currency: str | None
