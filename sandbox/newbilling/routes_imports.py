"""HTTP routes for imports, bundles, the NDJSON export and the test-only wipe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import or_, select

from . import imports, rollback
from . import models as m
from .db import wipe
from .errors import ApiError
from .ledger import customer_or_404
from .preview import preview_import, preview_user
from .schemas import ImportIn, RollbackIn
from .schemas_out import (
    BundleOut,
    ImportDetailOut,
    ImportOut,
    ImportPreviewOut,
    OkOut,
    UserPreviewOut,
    responses,
)
from .serialize import bundle
from .service import IdempotencyKey, Token, authenticate, read, service, write

router = APIRouter(dependencies=[Depends(authenticate)])
EXPORT_BATCH = 100


@router.post(
    "/v1/imports",
    status_code=201,
    tags=["imports"],
    summary="Import a user (pending)",
    responses=responses(201, ImportOut, 400, 409, 413),
)
async def create_import(
    body: ImportIn, request: Request, token: Token, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Validate and store one user's history as a *pending* import, in one transaction.

    ``Idempotency-Key`` is required. 422 lists every bad field; 409
    ``user_already_imported`` if the user has a pending or active import; 409
    ``external_id_conflict`` if an external id belongs to another user.
    """
    if idempotency_key is None:
        raise ApiError(
            400,
            "idempotency_key_required",
            "POST /v1/imports requires an Idempotency-Key header (e.g. the migration run id)",
        )
    outbox = service(request).outbox
    return await write(
        request, token, idempotency_key, lambda s: imports.create_import(s, outbox, body)
    )


@router.get(
    "/v1/imports/{import_id}",
    tags=["imports"],
    summary="Get an import",
    responses=responses(200, ImportDetailOut, 404),
)
async def get_import(import_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await read(request, lambda s: imports.get_import(s, import_id)))


@router.get(
    "/v1/imports/{import_id}/preview",
    tags=["imports"],
    summary="What the import will charge next",
    responses=responses(200, ImportPreviewOut, 404, 409),
)
async def get_import_preview(import_id: str, request: Request) -> JSONResponse:
    """Per subscription, the first charge after activation: date, amounts, tax, discount,
    the customer balance applied, and the billing state (renewing, trialing until,
    canceling at, none). Read-only; a discarded import → 409 ``import_discarded``.
    """
    return JSONResponse(await read(request, lambda s: preview_import(s, import_id)))


@router.post(
    "/v1/imports/{import_id}/activate",
    tags=["imports"],
    summary="Start billing",
    responses=responses(200, ImportDetailOut, 404, 409),
)
async def activate_import(
    import_id: str, request: Request, token: Token, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """pending → active; ``next_renewal_at`` = ``current_period_end`` (trialing: ``trial_end``).

    Activating an active import returns 200 with the same body; discarded → 409.
    """
    outbox = service(request).outbox
    return await write(
        request, token, idempotency_key, lambda s: imports.activate(s, outbox, import_id)
    )


@router.delete(
    "/v1/imports/{import_id}",
    tags=["imports"],
    summary="Discard a pending import",
    responses=responses(200, ImportDetailOut, 404, 409),
)
async def discard_import(
    import_id: str, request: Request, token: Token, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Delete every row of a pending import; the import stays as a ``discarded`` tombstone.

    Discarding twice returns 200 with the same body; an active import → 409 ``import_active``.
    """
    outbox = service(request).outbox
    return await write(
        request, token, idempotency_key, lambda s: imports.discard(s, outbox, import_id)
    )


@router.post(
    "/v1/imports/{import_id}/rollback",
    tags=["imports"],
    summary="Move the user back to legacy",
    responses=responses(200, ImportDetailOut, 404, 409, 422),
)
async def rollback_import(
    import_id: str,
    body: RollbackIn,
    request: Request,
    token: Token,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """active → rolled_back, one transaction: every billing subscription of the user canceled
    now (no proration, no refund, metadata ``twinbill_rollback``), events ``cause: rollback``.

    Again → 200 with the same body. Pending or discarded → 409 ``import_pending`` /
    ``import_discarded``; an open invoice → 409 ``invoice_open`` (nothing written).
    History stays readable; native operations answer 409 ``user_rolled_back``.
    """
    outbox = service(request).outbox
    return await write(
        request,
        token,
        idempotency_key,
        lambda s: rollback.roll_back(s, outbox, import_id, body.rollback_id),
    )


@router.get(
    "/v1/users/{user_id}/preview",
    tags=["users"],
    summary="What the user will be charged next",
    responses=responses(200, UserPreviewOut, 404),
)
async def get_user_preview(user_id: str, request: Request) -> JSONResponse:
    """Like the import preview, over every subscription the user holds here. Read-only."""
    return JSONResponse(await read(request, lambda s: preview_user(s, user_id)))


@router.get(
    "/v1/users/{user_id}/bundle",
    tags=["users"],
    summary="Everything held for a user",
    responses=responses(200, BundleOut, 404),
)
async def get_bundle(user_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await read(request, lambda s: bundle(s, customer_or_404(s, user_id))))


@router.get(
    "/v1/export",
    tags=["users"],
    summary="Every user's bundle as NDJSON",
    response_class=StreamingResponse,
    responses={
        **responses(200, None),
        200: {
            "description": "One BundleOut JSON object per line",
            "content": {
                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/BundleOut"}}
            },
        },
    },
)
def export(
    request: Request,
    status: Literal["active", "pending"] | None = Query(
        None, description="active: native users and active imports; pending: pending imports"
    ),
) -> StreamingResponse:
    """Streamed in batches by keyset pagination on ``user_id``; never held in memory whole."""
    sessions = service(request).sessions

    def lines() -> Iterator[str]:
        after = ""
        while True:
            with sessions() as session, session.begin():
                query = (
                    select(m.Customer)
                    .outerjoin(m.Import, m.Import.id == m.Customer.import_id)
                    .where(m.Customer.user_id > after)
                    .order_by(m.Customer.user_id)
                    .limit(EXPORT_BATCH)
                )
                if status == "pending":
                    query = query.where(m.Import.status == "pending")
                elif status == "active":
                    query = query.where(
                        or_(m.Customer.import_id.is_(None), m.Import.status == "active")
                    )
                customers = session.scalars(query).all()
                chunk = "".join(
                    json.dumps(bundle(session, c), separators=(",", ":")) + "\n" for c in customers
                )
            if not customers:
                return
            yield chunk
            after = customers[-1].user_id

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.delete(
    "/_test/data",
    tags=["testing"],
    summary="Wipe every row (test fixtures only)",
    responses=responses(200, OkOut),
)
async def wipe_data(request: Request) -> JSONResponse:
    """Like localstripe's ``DELETE /_config/data``: integration tests clean up between tests."""
    await read(request, wipe)
    return JSONResponse({"ok": True})
