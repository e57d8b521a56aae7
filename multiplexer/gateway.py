"""The facade as a JSON API for the application: ``/api/v1/users/{user_id}/...``.

Bearer-token auth (hashed at rest), 409 + Retry-After while a user migrates,
404 for unknown users, 422 for bad input. Amounts are integer minor units with
an explicit currency, exactly as in the canonical model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from core.canonical import (
    BillingSummary,
    Customer,
    Invoice,
    Payment,
    Refund,
    RefundMode,
    Subscription,
)
from core.db import transaction
from core.errors import InvalidInput
from core.money import Money
from multiplexer.bootstrap import MuxContext
from multiplexer.facade import BillingMux
from multiplexer.http import Unauthorized
from multiplexer.tokens import verify_token

#: Minor units, as a JSON integer only: lax parsing would read "5.00" (five euros, meant)
#: as 5 cents, and "5" as a number someone may have formatted by hand.
MinorUnits = StrictInt

#: The one pattern of every id the gateway accepts, in a path or in a body: letters,
#: digits and ``_ : @ -``, with single dots between them (so ``.``, ``..`` and ``a..b``
#: are refused, whatever a backend or a log would make of them).
ID_PATTERN = r"^[A-Za-z0-9_:@-]+(\.[A-Za-z0-9_:@-]+)*$"
#: One-line text (names, codes, references): no control character at all (NUL broke the
#: database after a legacy customer had been created, leaving an orphan).
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: Free text (notes, reasons): line breaks and tabs allowed, no other control character.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
#: Bank dates a person may enter: not before 2000, not after tomorrow (a typo such as
#: year 9999 would otherwise be recorded and reported for ever).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


def _sane_date(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC)")
    if value < EARLIEST or value > datetime.now(UTC) + LATEST_AHEAD:
        raise ValueError("date must be between 2000-01-01 and tomorrow")
    return value.astimezone(UTC)


UserId = Annotated[str, Field(min_length=1, max_length=120, pattern=ID_PATTERN)]
RecordId = Annotated[str, Path(min_length=1, max_length=120, pattern=ID_PATTERN)]
BodyId = Annotated[str, Field(min_length=1, max_length=120, pattern=ID_PATTERN)]
Line = Annotated[str, Field(pattern=LINE_PATTERN)]
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")]
BankDate = Annotated[datetime | None, AfterValidator(_sane_date)]
IdemKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$")
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUserIn(_In):
    user_id: UserId
    email: Line | None = Field(default=None, max_length=254)
    name: Line | None = Field(default=None, max_length=200)
    currency: Currency


class SubscriptionIn(_In):
    plan_code: BodyId
    quantity: int = Field(default=1, ge=1, le=10_000)
    trial_days: int | None = Field(default=None, ge=1, le=730)


class ChangePlanIn(_In):
    plan_code: BodyId
    prorate: bool = True


class CancelIn(_In):
    at_period_end: bool = True
    refund: RefundMode = RefundMode.NONE


class RefundIn(_In):
    amount: MinorUnits | None = Field(default=None, description="minor units; omit for the rest")
    currency: Currency | None = None
    reason: Text | None = Field(default=None, max_length=500)


class OfflinePaymentIn(_In):
    amount: MinorUnits = Field(description="minor units (cents, yen, fils)")
    currency: Currency
    reference: Line = Field(min_length=1, max_length=120)
    paid_at: BankDate = Field(default=None, description="with a timezone; 2000-01-01..tomorrow")
    invoice_id: BodyId | None = None
    note: Text | None = Field(default=None, max_length=500)


class OfflineRefundIn(_In):
    amount: MinorUnits
    currency: Currency
    reference: Line = Field(min_length=1, max_length=120)
    refunded_at: BankDate = Field(default=None, description="with a timezone; 2000-01-01..tomorrow")
    payment_id: BodyId | None = None
    reason: Text | None = Field(default=None, max_length=500)


def get_context(request: Request) -> MuxContext:
    return request.app.state.mux  # type: ignore[no-any-return]


def authenticated(request: Request, ctx: Annotated[MuxContext, Depends(get_context)]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("missing bearer token (Authorization: Bearer tbk_...)")
    with transaction(ctx.sessions) as session:
        token = verify_token(session, presented.strip())
        if token is None:
            raise Unauthorized("invalid or revoked token")
        return f"token:{token.name}"


Actor = Annotated[str, Depends(authenticated)]


def facade(ctx: Annotated[MuxContext, Depends(get_context)]) -> BillingMux:
    return ctx.mux


Mux = Annotated[BillingMux, Depends(facade)]


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable kind, e.g. user_migrating, invalid_input")
    message: str
    fields: list[dict[str, str]] | None = Field(
        default=None, description="per-field problems when the request does not match the API"
    )


class ErrorOut(BaseModel):
    """The body of every error answer of the gateway (``multiplexer.http.error_body``)."""

    error: ErrorDetail


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


#: What the gateway really answers on errors, so the OpenAPI document says so too
#: (FastAPI would otherwise advertise its own ``HTTPValidationError`` shape for 422).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _documented("missing, invalid or revoked bearer token"),
    404: _documented("unknown user (no routing entry) or unknown record"),
    409: _documented(
        "user_migrating (retry after the Retry-After header) or user_read_only (held/failed)"
    ),
    413: _documented("request body over 1 MB"),
    422: _documented("bad input: nothing was written"),
    503: _documented("the user's billing system is unavailable or rate limited; Retry-After"),
}

router = APIRouter(prefix="/api/v1", tags=["billing"], responses=ERRORS)


def _utc(value: datetime | None) -> datetime | None:
    """The caller's timestamp in UTC, or None: the facade fills "now" once, when it decides
    the record, so an identical retry hashes (and replays) as the same request."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput("timestamps must carry a timezone (UTC)")
    return value.astimezone(UTC)


@router.post("/users", status_code=201, response_model=Customer)
def create_user(body: NewUserIn, actor: Actor, mux: Mux, key: IdemKey = None) -> Any:
    return mux.create_user(
        body.user_id,
        email=body.email,
        name=body.name,
        currency=body.currency,
        actor=actor,
        idempotency_key=key,
    )


@router.get("/users/{user_id}/summary", response_model=BillingSummary)
def summary(user_id: UserId, _: Actor, mux: Mux) -> Any:
    return mux.summary(user_id)


@router.get("/users/{user_id}/subscriptions", response_model=list[Subscription])
def subscriptions(user_id: UserId, _: Actor, mux: Mux) -> Any:
    return mux.list_subscriptions(user_id)


@router.get("/users/{user_id}/invoices", response_model=list[Invoice])
def invoices(user_id: UserId, _: Actor, mux: Mux) -> Any:
    return mux.list_invoices(user_id)


@router.get("/users/{user_id}/payments", response_model=list[Payment])
def payments(user_id: UserId, _: Actor, mux: Mux) -> Any:
    return mux.list_payments(user_id)


@router.post("/users/{user_id}/subscriptions", status_code=201, response_model=Subscription)
def create_subscription(
    user_id: UserId, body: SubscriptionIn, actor: Actor, mux: Mux, key: IdemKey = None
) -> Any:
    return mux.create_subscription(
        user_id,
        body.plan_code,
        quantity=body.quantity,
        trial_days=body.trial_days,
        actor=actor,
        idempotency_key=key,
    )


@router.post(
    "/users/{user_id}/subscriptions/{subscription_id}/change-plan", response_model=Subscription
)
def change_plan(
    user_id: UserId,
    subscription_id: RecordId,
    body: ChangePlanIn,
    actor: Actor,
    mux: Mux,
    key: IdemKey = None,
) -> Any:
    return mux.change_plan(
        user_id,
        subscription_id,
        body.plan_code,
        prorate=body.prorate,
        actor=actor,
        idempotency_key=key,
    )


@router.post("/users/{user_id}/subscriptions/{subscription_id}/cancel", response_model=Subscription)
def cancel(
    user_id: UserId,
    subscription_id: RecordId,
    body: CancelIn,
    actor: Actor,
    mux: Mux,
    key: IdemKey = None,
) -> Any:
    return mux.cancel(
        user_id,
        subscription_id,
        at_period_end=body.at_period_end,
        refund=body.refund,
        actor=actor,
        idempotency_key=key,
    )


@router.post(
    "/users/{user_id}/payments/{payment_id}/refunds", status_code=201, response_model=Refund
)
def refund(
    user_id: UserId,
    payment_id: RecordId,
    body: RefundIn,
    actor: Actor,
    mux: Mux,
    key: IdemKey = None,
) -> Any:
    amount = None
    if body.amount is not None:
        if body.currency is None:
            raise InvalidInput("currency is required with amount")
        amount = Money(body.currency, body.amount)
    return mux.refund_payment(
        user_id, payment_id, amount=amount, reason=body.reason, actor=actor, idempotency_key=key
    )


@router.post("/users/{user_id}/offline-payments", status_code=201, response_model=Payment)
def offline_payment(
    user_id: UserId, body: OfflinePaymentIn, actor: Actor, mux: Mux, key: IdemKey = None
) -> Any:
    return mux.record_offline_payment(
        user_id,
        Money(body.currency, body.amount),
        reference=body.reference,
        paid_at=_utc(body.paid_at),
        invoice_id=body.invoice_id,
        note=body.note,
        actor=actor,
        idempotency_key=key,
    )


@router.post("/users/{user_id}/offline-refunds", status_code=201, response_model=Refund)
def offline_refund(
    user_id: UserId, body: OfflineRefundIn, actor: Actor, mux: Mux, key: IdemKey = None
) -> Any:
    return mux.record_offline_refund(
        user_id,
        Money(body.currency, body.amount),
        reference=body.reference,
        refunded_at=_utc(body.refunded_at),
        payment_id=body.payment_id,
        reason=body.reason,
        actor=actor,
        idempotency_key=key,
    )
