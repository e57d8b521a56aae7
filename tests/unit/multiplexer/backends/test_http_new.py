"""HttpNewBackend error translation, idempotency header and strict bundle mapping (no server)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.errors import BackendRejected, BackendUnavailable, NotFound, RateLimited, TransformError
from core.money import Money
from multiplexer.backends.base import UserRef
from multiplexer.backends.http_new import HttpNewBackend
from multiplexer.backends.newbilling_mapping import map_bundle

SEEN: list[httpx.Request] = []


def backend(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    exc: Exception | None = None,
) -> HttpNewBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        SEEN.append(request)
        if exc is not None:
            raise exc
        return httpx.Response(status, json=body, headers=headers)

    calls: list[int] = []
    b = HttpNewBackend(
        httpx.Client(base_url="http://nb", transport=httpx.MockTransport(handler)),
        throttle=lambda: calls.append(1),
    )
    b.calls = calls  # type: ignore[attr-defined]
    return b


ERR = {
    "error": {
        "type": "validation_error",
        "message": "invalid request",
        "fields": [{"loc": "amount", "message": "must be 1..10"}],
    }
}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, NotFound),
        (409, BackendRejected),
        (422, BackendRejected),
        (500, BackendUnavailable),
        (503, BackendUnavailable),
    ],
)
def test_status_translation(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as err:
        backend(status, ERR).refund_payment(
            UserRef("u"), "py_1", amount=Money("EUR", 5), reason=None, idempotency_key="k"
        )
    assert "validation_error" in str(err.value) and "amount: must be 1..10" in str(err.value)
    assert err.value.context["fields"] == ERR["error"]["fields"]  # type: ignore[attr-defined]


def test_rate_limited_carries_retry_after() -> None:
    with pytest.raises(RateLimited) as err:
        backend(429, ERR, {"Retry-After": "7"}).get_bundle("u")
    assert err.value.retry_after == 7.0


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")])
def test_transport_errors_are_transient(exc: Exception) -> None:
    with pytest.raises(BackendUnavailable):
        backend(200, exc=exc).get_bundle("u")


def test_writes_send_idempotency_key_and_throttle() -> None:
    b = backend(201, {"id": "imp_1", "status": "pending", "user_id": "u"})
    SEEN.clear()
    result = b.create_import({"user_id": "u"}, idempotency_key="mig-1:import")
    assert result.id == "imp_1" and SEEN[0].headers["Idempotency-Key"] == "mig-1:import"
    assert b.calls == [1]  # type: ignore[attr-defined]


def test_bundle_shape_is_validated() -> None:
    with pytest.raises(TransformError) as err:
        map_bundle(
            {
                "user_id": "u",
                "customer": None,
                "subscriptions": [{"id": "sub_1"}],
                "discounts": [],
                "invoices": [],
                "payments": [],
                "refunds": [],
            }
        )
    assert err.value.record == "sub_1"
    with pytest.raises(TransformError):
        map_bundle({"user_id": "u"})


def test_bundle_maps_external_id_to_legacy_id() -> None:
    bundle = {
        "user_id": "u",
        "import": None,
        "customer": {
            "id": "cus_nb1",
            "user_id": "u",
            "external_id": "cus_S1",
            "email": None,
            "name": None,
            "currency": "JPY",
            "balance": 0,
            "payment_method_ids": [],
            "metadata": {},
            "created_at": "2026-01-01T00:00:00Z",
        },
        "subscriptions": [],
        "discounts": [],
        "invoices": [],
        "payments": [
            {
                "id": "py_1",
                "external_id": None,
                "invoice_id": None,
                "invoice_external_id": None,
                "amount": 1200,
                "currency": "JPY",
                "status": "succeeded",
                "method": "offline",
                "payment_method_id": None,
                "reference": "r",
                "note": None,
                "paid_at": "2026-01-02T00:00:00Z",
            }
        ],
        "refunds": [
            {
                "id": "re_1",
                "external_id": None,
                "payment_id": "py_1",
                "payment_external_id": None,
                "amount": 200,
                "currency": "JPY",
                "reason": None,
                "method": "offline",
                "reference": None,
                "created_at": "2026-01-03T00:00:00Z",
            }
        ],
    }
    h = map_bundle(bundle)
    assert h.customer is not None and (h.customer.id, h.customer.legacy_id) == ("cus_nb1", "cus_S1")
    assert h.payments[0].amount_refunded == 200 and h.payments[0].amount == 1200
