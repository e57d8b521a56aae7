"""The new service's import preview (``GET /v1/imports/{id}/preview``) -> canonical ``NextCharges``.

Strict like the rest of the new-service mapping: a preview whose currency, amount or
date does not parse is a ``TransformError`` naming the field (the ``prove`` step fails
the user as a data error rather than migrating them unverified).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.canonical import BillingState, NextCharge, NextCharges, System
from core.errors import TransformError
from multiplexer.backends.newbilling_mapping import _build, _get, _ts, map_tax_amount

Obj = Mapping[str, Any]
_STATES = {s.value for s in BillingState}


def map_charge(obj: Any, n: int) -> NextCharge:
    if not isinstance(obj, Mapping):
        raise TransformError("not an object", record="preview", field=f"subscriptions[{n}]")
    record = str(obj.get("id") or f"preview.subscriptions[{n}]")
    state = _get(obj, "state", record, str)
    if state not in _STATES:
        raise TransformError(f"unknown billing state {state!r}", record=record, field="state")
    amounts = {
        k: _get(obj, k, record, int) for k in ("subtotal", "discount", "tax", "total", "amount_due")
    }
    return _build(
        NextCharge,
        record,
        id=_get(obj, "id", record, str),
        legacy_id=_get(obj, "external_id", record, str, optional=True),
        currency=_get(obj, "currency", record, str),
        state=state,
        until=_ts(obj, "until", record, optional=True),
        charge_at=_ts(obj, "charge_at", record, optional=True),
        tax_breakdown=tuple(
            map_tax_amount(t, record) for t in _get(obj, "tax_breakdown", record, list)
        ),
        **amounts,
    )


def map_preview(body: Any, *, endpoint: str | None = None) -> NextCharges:
    """An import's preview, or (``endpoint`` given) the user's: ``GET /v1/users/{id}/preview``."""
    if not isinstance(body, Mapping):
        raise TransformError("preview is not an object", record="preview")
    record = f"preview {body.get('import_id') or body.get('user_id') or '?'}"
    charges = tuple(
        map_charge(c, n) for n, c in enumerate(_get(body, "subscriptions", record, list))
    )
    return _build(
        NextCharges,
        record,
        user_id=_get(body, "user_id", record, str),
        system=System.NEW,
        currency=_get(body, "currency", record, str),
        balance=_get(body, "balance", record, int),
        charges=charges,
        source={"endpoint": endpoint or f"GET /v1/imports/{body.get('import_id')}/preview"},
    )
