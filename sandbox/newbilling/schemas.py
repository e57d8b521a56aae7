"""Request bodies (pydantic). Strict on purpose: this service exists to catch mapping bugs.

* money is ``StrictInt`` minor units: ``10.0`` or ``"10"`` is refused, never rounded;
* currencies must be uppercase ISO 4217 codes from :mod:`.currencies`;
* timestamps are ISO-8601 strings with an offset, normalised to UTC; naive is refused;
* unknown fields are refused (``extra="forbid"``): a misspelt field would otherwise be
  silently dropped, which is exactly the bug a migration must not have.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from . import currencies
from .clock import to_utc

MAX_MONEY = 2**53 - 1  # largest integer every JSON client parses exactly


def _check_currency(code: str) -> str:
    if not currencies.is_known(code):
        hint = " (codes are uppercase)" if currencies.is_known(code.upper()) else ""
        raise ValueError(f"unknown ISO 4217 currency {code!r}{hint}")
    return code


def _timestamp_string(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("timestamp must be an ISO-8601 string with an offset, e.g. ...T00:00:00Z")
    return value


_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}
_TEXT_CONTROL = _CONTROL - {"\t", "\n", "\r"}


def _no_control(value: str) -> str:
    """Ids and codes: no control character at all (NUL would break the database)."""
    if any(ch in _CONTROL for ch in value):
        raise ValueError("must not contain control characters (NUL, newline, ...)")
    return value


def _text(value: str) -> str:
    """Free text: line breaks and tabs are fine, other control characters are not."""
    if any(ch in _TEXT_CONTROL for ch in value):
        raise ValueError("must not contain control characters (NUL, ...)")
    return value


Currency = Annotated[StrictStr, AfterValidator(_check_currency)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_string), AfterValidator(to_utc)]
Money = Annotated[StrictInt, Field(ge=-MAX_MONEY, le=MAX_MONEY)]
NonNegative = Annotated[StrictInt, Field(ge=0, le=MAX_MONEY)]
Positive = Annotated[StrictInt, Field(ge=1, le=MAX_MONEY)]
Count = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_no_control)]
Text = Annotated[StrictStr, Field(max_length=5000), AfterValidator(_text)]
Metadata = dict[
    Annotated[StrictStr, Field(max_length=200), AfterValidator(_no_control)],
    Annotated[StrictStr, Field(max_length=5000), AfterValidator(_text)],
]
Interval = Literal["day", "week", "month", "year"]
SubscriptionStatus = Literal[
    "active", "trialing", "past_due", "canceled", "unpaid", "incomplete", "incomplete_expired"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(Strict):
    external_id: Id
    email: Text | None = None
    name: Text | None = None
    currency: Currency
    balance: Money = 0
    payment_method_ids: list[Id] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class ItemIn(Strict):
    external_id: Id
    plan_code: Id
    product_name: Text | None = None
    unit_amount: NonNegative
    quantity: Count
    interval: Interval
    interval_count: Count


#: A tax percentage as an exact decimal string: "19", "8.875" (never a float; at most 4 places).
Percentage = Annotated[StrictStr, Field(pattern=r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$")]


class TaxRateIn(Strict):
    """A rate the subscription's renewals are taxed with (legacy ``default_tax_rates``)."""

    external_id: Id
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    percentage: Percentage
    inclusive: StrictBool = False
    jurisdiction: Text | None = None
    country: Annotated[StrictStr, Field(max_length=2)] | None = None


class TaxAmountIn(Strict):
    """One line of an invoice's tax breakdown."""

    tax_rate_external_id: Id | None = None
    amount: NonNegative
    inclusive: StrictBool = False
    percentage: Percentage | None = None


class SubscriptionIn(Strict):
    external_id: Id
    status: SubscriptionStatus
    currency: Currency
    created_at: Timestamp
    current_period_start: Timestamp
    current_period_end: Timestamp
    trial_start: Timestamp | None = None
    trial_end: Timestamp | None = None
    cancel_at_period_end: StrictBool = False
    canceled_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    metadata: Metadata = Field(default_factory=dict)
    items: list[ItemIn] = Field(min_length=1)
    tax_rates: list[TaxRateIn] = Field(default_factory=list)


class DiscountIn(Strict):
    external_id: Id
    subscription_external_id: Id | None = None
    coupon_code: Id
    percent_off_bp: StrictInt | None = None
    amount_off: StrictInt | None = None
    currency: Currency | None = None
    duration: Literal["once", "repeating", "forever"]
    duration_in_months: StrictInt | None = None
    starts_at: Timestamp
    ends_at: Timestamp | None = None


class LineIn(Strict):
    external_id: Id
    description: Text | None = None
    amount: Money
    quantity: NonNegative
    period_start: Timestamp
    period_end: Timestamp
    proration: StrictBool = False
    plan_code: Id | None = None


class InvoiceIn(Strict):
    external_id: Id
    number: Id | None = None
    subscription_external_id: Id | None = None
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    currency: Currency
    created_at: Timestamp
    period_start: Timestamp
    period_end: Timestamp
    due_at: Timestamp | None = None
    paid_at: Timestamp | None = None
    subtotal: Money
    discount_total: NonNegative
    tax: NonNegative
    tax_breakdown: list[TaxAmountIn] = Field(default_factory=list)
    total: Money
    amount_paid: NonNegative
    amount_due: NonNegative
    balance_applied: NonNegative = 0
    paid_out_of_band: StrictBool = False
    metadata: Metadata = Field(default_factory=dict)
    lines: list[LineIn] = Field(default_factory=list)


class PaymentIn(Strict):
    external_id: Id
    invoice_external_id: Id | None = None
    amount: Positive
    currency: Currency
    status: Literal["succeeded", "pending", "failed"]
    method: Literal["card", "offline", "bank_transfer", "other"]
    payment_method_id: Id | None = None
    reference: Text | None = None
    paid_at: Timestamp


class RefundIn(Strict):
    external_id: Id
    payment_external_id: Id
    amount: Positive
    currency: Currency
    reason: Text | None = None
    method: Literal["card", "offline"]
    reference: Text | None = None
    created_at: Timestamp


class ImportIn(Strict):
    """One user's whole billing history, imported atomically as a *pending* import."""

    user_id: Id
    source: Annotated[StrictStr, Field(min_length=1, max_length=50), AfterValidator(_no_control)]
    source_ref: Id
    customer: CustomerIn
    subscriptions: list[SubscriptionIn] = Field(default_factory=list)
    discounts: list[DiscountIn] = Field(default_factory=list)
    invoices: list[InvoiceIn] = Field(default_factory=list)
    payments: list[PaymentIn] = Field(default_factory=list)
    refunds: list[RefundIn] = Field(default_factory=list)


# --- native operations -------------------------------------------------------------


class CustomerCreate(Strict):
    email: Text | None = None
    name: Text | None = None
    currency: Currency
    payment_method_ids: list[Id] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class SubscriptionCreate(Strict):
    plan_code: Id
    product_name: Text | None = None
    unit_amount: NonNegative
    currency: Currency
    interval: Interval
    interval_count: Count = 1
    quantity: Count = 1
    trial_days: Annotated[StrictInt, Field(ge=1, le=730)] | None = None


class ChangePlan(Strict):
    plan_code: Id
    product_name: Text | None = None
    unit_amount: NonNegative
    currency: Currency  # of the price point: must be the subscription's (checked on write)
    interval: Interval
    interval_count: Count = 1
    prorate: StrictBool = True
    proration_date: Timestamp | None = None


class Cancel(Strict):
    at_period_end: StrictBool = False
    refund: Literal["none", "prorated", "last_payment"] = "none"


class RefundCreate(Strict):
    amount: Positive | None = None
    reason: Text | None = None


class OfflinePaymentCreate(Strict):
    amount: Positive
    currency: Currency
    reference: Annotated[
        StrictStr, Field(min_length=1, max_length=500), AfterValidator(_no_control)
    ]
    paid_at: Timestamp | None = None
    invoice_id: Id | None = None
    note: Text | None = None


class OfflineRefundCreate(Strict):
    amount: Positive
    currency: Currency
    reference: Annotated[
        StrictStr, Field(min_length=1, max_length=500), AfterValidator(_no_control)
    ]
    payment_id: Id | None = None
    refunded_at: Timestamp | None = None
    reason: Text | None = None


class RollbackIn(Strict):
    """``POST /v1/imports/{id}/rollback``: the orchestrator's rollback run id (marks the
    canceled subscriptions and the events, so receivers can tell it from a user's cancel)."""

    rollback_id: Id
