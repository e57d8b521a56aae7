"""Response shapes, for the OpenAPI document and for tests that hold serialize.py to them.

Routes return plain dicts (so idempotent replays are byte-identical); these models
only *describe* them. ``extra="forbid"`` lets a test prove the description is
complete: a field added to serialize.py but not here fails the suite.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Ts = str  # ISO-8601 UTC, always ending in "Z"


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldErrorOut(Out):
    loc: str
    message: str


class ErrorBody(Out):
    type: str
    message: str
    fields: list[FieldErrorOut]


class ErrorOut(Out):
    error: ErrorBody


class Counts(Out):
    subscriptions: int
    invoices: int
    lines: int
    payments: int
    refunds: int
    discounts: int


class ImportOut(Out):
    id: str
    status: Literal["pending", "active", "discarded", "rolled_back"]
    user_id: str
    source: str
    source_ref: str
    created_at: Ts
    activated_at: Ts | None
    discarded_at: Ts | None
    rolled_back_at: Ts | None = Field(
        default=None, description="when a rollback moved the user back to legacy"
    )
    counts: Counts


class RenewalOut(Out):
    id: str
    external_id: str | None
    status: str
    next_renewal_at: Ts | None


class ImportDetailOut(ImportOut):
    subscriptions: list[RenewalOut]


class ChargePreviewOut(Out):
    """One subscription's first charge after activation (see sandbox/newbilling/preview.py)."""

    id: str
    external_id: str | None
    currency: str
    state: Literal["renewing", "trialing", "paused", "canceling", "none"]
    until: Ts | None
    charge_at: Ts | None
    subtotal: int
    discount: int
    tax: int
    tax_breakdown: list[TaxAmountOut]
    total: int
    balance_applied: int = Field(description="credit used (> 0) or debt added (< 0)")
    amount_due: int


class ImportPreviewOut(Out):
    import_id: str
    status: Literal["pending", "active"]
    user_id: str
    currency: str
    balance: int = Field(description="the customer's balance; negative is credit")
    subscriptions: list[ChargePreviewOut]


class UserPreviewOut(Out):
    """What the service will charge the user next, over every subscription it holds."""

    user_id: str
    currency: str
    balance: int = Field(description="the customer's balance; negative is credit")
    subscriptions: list[ChargePreviewOut]


class CustomerOut(Out):
    id: str
    user_id: str
    external_id: str | None
    email: str | None
    name: str | None
    currency: str
    balance: int
    payment_method_ids: list[str]
    metadata: dict[str, str]
    created_at: Ts


class ItemOut(Out):
    id: str
    external_id: str | None
    plan_code: str
    product_name: str | None
    unit_amount: int
    quantity: int
    interval: str
    interval_count: int


class TaxRateOut(Out):
    external_id: str
    display_name: str
    percentage: str
    inclusive: bool
    jurisdiction: str | None = None
    country: str | None = None


class TaxAmountOut(Out):
    tax_rate_external_id: str | None
    amount: int
    inclusive: bool
    percentage: str | None


class SubscriptionOut(Out):
    id: str
    user_id: str
    external_id: str | None
    status: str
    currency: str
    created_at: Ts
    current_period_start: Ts
    current_period_end: Ts
    trial_start: Ts | None
    trial_end: Ts | None
    cancel_at_period_end: bool
    canceled_at: Ts | None
    ended_at: Ts | None
    next_renewal_at: Ts | None
    metadata: dict[str, str]
    items: list[ItemOut]
    tax_rates: list[TaxRateOut]


class DiscountOut(Out):
    id: str
    external_id: str | None
    subscription_id: str | None
    subscription_external_id: str | None
    coupon_code: str
    percent_off_bp: int | None
    amount_off: int | None
    currency: str | None
    duration: str
    duration_in_months: int | None
    starts_at: Ts
    ends_at: Ts | None


class LineOut(Out):
    id: str
    external_id: str | None
    description: str | None
    amount: int
    quantity: int
    period_start: Ts
    period_end: Ts
    proration: bool
    plan_code: str | None


class InvoiceOut(Out):
    id: str
    external_id: str | None
    number: str | None
    subscription_id: str | None
    subscription_external_id: str | None
    status: str
    currency: str
    created_at: Ts
    period_start: Ts
    period_end: Ts
    due_at: Ts | None
    paid_at: Ts | None
    subtotal: int
    discount_total: int
    tax: int
    tax_breakdown: list[TaxAmountOut]
    total: int
    amount_paid: int
    amount_due: int
    balance_applied: int
    paid_out_of_band: bool
    metadata: dict[str, str]
    lines: list[LineOut]


class RefundOut(Out):
    id: str
    external_id: str | None
    payment_id: str | None
    payment_external_id: str | None
    amount: int
    currency: str
    reason: str | None
    method: Literal["card", "offline"]
    reference: str | None
    created_at: Ts


class PaymentOut(Out):
    id: str
    external_id: str | None
    invoice_id: str | None
    invoice_external_id: str | None
    amount: int
    currency: str
    status: str
    method: str
    payment_method_id: str | None
    reference: str | None
    note: str | None
    paid_at: Ts


class PaymentWithRefundsOut(PaymentOut):
    refunds: list[RefundOut]


class ImportRef(Out):
    id: str
    status: str


class BundleOut(Out):
    user_id: str
    import_: ImportRef | None = Field(alias="import")
    customer: CustomerOut
    subscriptions: list[SubscriptionOut]
    discounts: list[DiscountOut]
    invoices: list[InvoiceOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]


class SubscriptionList(Out):
    data: list[SubscriptionOut]


class InvoiceList(Out):
    data: list[InvoiceOut]


class PaymentList(Out):
    data: list[PaymentWithRefundsOut]


class ChangePlanOut(Out):
    subscription: SubscriptionOut
    invoice: InvoiceOut | None


class CancelOut(Out):
    subscription: SubscriptionOut
    refund: RefundOut | None


class OkOut(Out):
    ok: bool


EventType = Literal[
    "import.created",
    "import.activated",
    "import.discarded",
    "import.rolled_back",
    "customer.created",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.created",
    "invoice.paid",
    "payment.succeeded",
    "payment.refunded",
    "offline_payment.recorded",
    "offline_refund.recorded",
]


class EventData(Out):
    object: dict[str, object]


class EventOut(Out):
    """Webhook body; ``import_id`` is present when ``cause`` is ``import`` or ``rollback``
    (the orchestrator's own moves: receivers suppress them, they are not the user's)."""

    id: str
    type: EventType
    created: Ts
    user_id: str
    cause: Literal["import", "api", "rollback"]
    import_id: str | None = None
    data: EventData


_ERRORS = {
    400: "Missing or invalid Idempotency-Key",
    401: "Missing or invalid bearer token",
    404: "Unknown user, import, subscription, payment or invoice",
    409: "State conflict (see error.type), or Idempotency-Key reused with another body",
    413: "Request body over 1 MB",
    422: "Invalid body: error.fields names each bad field by loc",
    429: "Rate limit exceeded; wait Retry-After seconds",
}


def responses(ok: int, model: type[Out] | None, *codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses=`` for a route: its success model plus the error shape per code."""
    out: dict[int | str, dict[str, object]] = {}
    if model is not None:
        out[ok] = {"model": model}
    for code in sorted({401, 422, 429, *codes}):
        out[code] = {"model": ErrorOut, "description": _ERRORS[code]}
    return out
