"""Field-level helpers for reading Stripe JSON dicts: ids, timestamps, amounts, enums.

Every helper names the record and the field in the ``TransformError`` it raises,
so a bad legacy object is reported as ``cus_123.currency: ...``, never as a
``KeyError`` deep in a migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from core.canonical import from_unix
from core.errors import TransformError
from core.money import is_currency

E = TypeVar("E", bound=StrEnum)
Obj = Mapping[str, Any]

#: Metadata keys twinbill writes on legacy objects (read back by the mapping).
META_USER = "app_user_id"
META_CURRENCY = "twinbill_currency"
META_OFFLINE_PAYMENT = "twinbill_offline_payment"
META_OFFLINE_REFUND = "twinbill_offline_refund"
META_REFERENCE = "twinbill_reference"
META_PAYMENT = "twinbill_payment_id"
META_REASON = "twinbill_reason"
META_INVOICE = "twinbill_invoice_id"


def rid(obj: Obj) -> str:
    return str(obj.get("id") or f"<{obj.get('object', 'object')} without id>")


def ref_id(value: Any) -> str | None:
    """An expandable reference: an id string, an expanded object, or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def req(obj: Obj, key: str, record: str | None = None) -> Any:
    value = obj.get(key)
    if value is None:
        raise TransformError("required field is missing", record=record or rid(obj), field=key)
    return value


def ts(obj: Obj, key: str, *, required: bool = False, record: str | None = None) -> Any:
    value = req(obj, key, record) if required else obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TransformError(
            f"not a unix timestamp: {value!r}", record=record or rid(obj), field=key
        )
    return from_unix(value)


def amount(obj: Obj, key: str, *, default: int | None = None, record: str | None = None) -> int:
    value = obj.get(key, default)
    if value is None:
        if default is not None:
            return default
        raise TransformError("required amount is missing", record=record or rid(obj), field=key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TransformError(
            f"amount is not an integer: {value!r}", record=record or rid(obj), field=key
        )
    return value


def currency(value: Any, record: str, field: str = "currency") -> str:
    if not isinstance(value, str) or not is_currency(value):
        raise TransformError(f"not an ISO 4217 currency: {value!r}", record=record, field=field)
    return value.upper()


def enum(kind: type[E], value: Any, record: str, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(e.value for e in kind)
        raise TransformError(
            f"unknown value {value!r} (expected {allowed})", record=record, field=field
        ) from None


def metadata(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}


def list_data(obj: Obj, key: str, record: str | None = None) -> list[Any]:
    """``{"object": "list", "data": [...]}`` or a bare list; refuses a truncated page."""
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if value.get("has_more"):
        raise TransformError(
            "list is truncated (has_more); the snapshot must page it fully",
            record=record or rid(obj),
            field=key,
        )
    return list(value.get("data") or [])


def percent_to_bp(value: Any, record: str, field: str = "percent_off") -> int:
    """12.5 -> 1250 exactly; 12.345 (not a whole basis point) is refused, never rounded."""
    try:
        bp = Decimal(str(value)) * 100
    except InvalidOperation:
        raise TransformError(f"not a number: {value!r}", record=record, field=field) from None
    if bp != bp.to_integral_value():
        raise TransformError(f"{value}% is not a whole basis point", record=record, field=field)
    return int(bp)


def build(model: type[Any], record: str, **fields: Any) -> Any:
    """Construct a canonical record, turning a validation error into TransformError."""
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise TransformError(err["msg"], record=record, field=field) from None
