"""HTTP routes for native operations on users, subscriptions and payments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from . import offline, operations
from .schemas import (
    Cancel,
    ChangePlan,
    CustomerCreate,
    OfflinePaymentCreate,
    OfflineRefundCreate,
    RefundCreate,
    SubscriptionCreate,
)
from .schemas_out import (
    CancelOut,
    ChangePlanOut,
    CustomerOut,
    InvoiceList,
    PaymentList,
    PaymentOut,
    RefundOut,
    SubscriptionList,
    SubscriptionOut,
    responses,
)
from .service import IdempotencyKey, Token, authenticate, read, service, write

router = APIRouter(dependencies=[Depends(authenticate)])


@router.post(
    "/v1/users/{user_id}/customer",
    status_code=201,
    tags=["users"],
    responses=responses(201, CustomerOut, 404, 409, 413),
)
async def create_customer(
    user_id: str,
    body: CustomerCreate,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a brand-new (never imported) user; 409 ``user_already_exists`` if it exists."""
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: operations.create_customer(s, outbox, user_id, body),
    )


@router.post(
    "/v1/users/{user_id}/subscriptions",
    status_code=201,
    tags=["subscriptions"],
    responses=responses(201, SubscriptionOut, 404, 409, 413),
)
async def create_subscription(
    user_id: str,
    body: SubscriptionCreate,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Subscribe; without a trial the first period is invoiced and paid (simulated charge)."""
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: operations.create_subscription(s, outbox, user_id, body),
    )


def _lister(kind: str) -> Callable[[str, Request], Awaitable[JSONResponse]]:
    async def handler(user_id: str, request: Request) -> JSONResponse:
        return JSONResponse(
            await read(request, lambda s: operations.list_for_user(s, user_id, kind))
        )

    handler.__name__ = f"list_{kind}"
    handler.__doc__ = f'The user\'s {kind} as ``{{"data": [...]}}``, ordered by (time, id).'
    return handler


_LIST_MODELS = {
    "subscriptions": SubscriptionList,
    "invoices": InvoiceList,
    "payments": PaymentList,
}
for _kind in ("subscriptions", "invoices", "payments"):
    router.add_api_route(
        f"/v1/users/{{user_id}}/{_kind}",
        _lister(_kind),
        methods=["GET"],
        tags=[_kind],
        responses=responses(200, _LIST_MODELS[_kind], 404),
        name=f"list_{_kind}",
    )


@router.post(
    "/v1/subscriptions/{subscription_id}/change-plan",
    tags=["subscriptions"],
    responses=responses(200, ChangePlanOut, 404, 409, 413),
)
async def change_plan(
    subscription_id: str,
    body: ChangePlan,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Returns ``{"subscription": ..., "invoice": ...|null}`` (the proration invoice, paid)."""
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: operations.change_plan(s, outbox, subscription_id, body),
    )


@router.post(
    "/v1/subscriptions/{subscription_id}/cancel",
    tags=["subscriptions"],
    responses=responses(200, CancelOut, 404, 409, 413),
)
async def cancel_subscription(
    subscription_id: str,
    body: Cancel,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Returns ``{"subscription": ..., "refund": ...|null}``."""
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: operations.cancel(s, outbox, subscription_id, body),
    )


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=201,
    tags=["payments"],
    responses=responses(201, RefundOut, 404, 409, 413),
)
async def refund_payment(
    payment_id: str,
    body: RefundCreate,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Refund up to the refundable remainder (``amount`` omitted = all of it)."""
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: operations.refund_payment(s, outbox, payment_id, body),
    )


@router.post(
    "/v1/users/{user_id}/offline-payments",
    status_code=201,
    tags=["offline"],
    responses=responses(201, PaymentOut, 404, 409, 413),
)
async def offline_payment(
    user_id: str,
    body: OfflinePaymentCreate,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """201 new, or 200 with the first record when ``reference`` was already recorded."""
    svc = service(request)
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: offline.record_payment(s, svc.outbox, user_id, body, svc.settings.max_amount),
    )


@router.post(
    "/v1/users/{user_id}/offline-refunds",
    status_code=201,
    tags=["offline"],
    responses=responses(201, RefundOut, 404, 409, 413),
)
async def offline_refund(
    user_id: str,
    body: OfflineRefundCreate,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """201 new, or 200 with the first record when ``reference`` was already recorded."""
    svc = service(request)
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: offline.record_refund(s, svc.outbox, user_id, body, svc.settings.max_amount),
    )
