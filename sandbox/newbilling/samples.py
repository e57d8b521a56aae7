"""A valid, realistic import payload builder, shared by this package's tests and bench.

It lives in the package (not in tests/) so the benchmark and the HTTP contract
tests import the very same payload; it is plain data, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

BASE = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)


def ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(index: int) -> datetime:
    month = BASE.month - 1 + index
    return BASE.replace(year=BASE.year + month // 12, month=month % 12 + 1)


def sample_import(
    user_id: str,
    *,
    n_invoices: int = 2,
    currency: str = "EUR",
    amount: int = 1999,
    status: str = "active",
) -> dict[str, Any]:
    """One customer, one monthly subscription, ``n_invoices`` paid invoices, one refund."""
    key = "".join(ch if ch.isalnum() else "_" for ch in user_id)
    period_start, period_end = _month(n_invoices), _month(n_invoices + 1)
    sub = {
        "external_id": f"sub_{key}",
        "status": status,
        "currency": currency,
        "created_at": ts(BASE),
        "current_period_start": ts(period_start),
        "current_period_end": ts(period_end),
        "trial_start": ts(period_start) if status == "trialing" else None,
        "trial_end": ts(period_end) if status == "trialing" else None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "ended_at": None,
        "metadata": {"plan": "pro"},
        "items": [
            {
                "external_id": f"si_{key}",
                "plan_code": "price_pro_monthly",
                "product_name": "Pro",
                "unit_amount": amount,
                "quantity": 1,
                "interval": "month",
                "interval_count": 1,
            }
        ],
        "tax_rates": [],
    }
    invoices, payments = [], []
    for i in range(n_invoices):
        start, end = _month(i), _month(i + 1)
        invoices.append(
            {
                "external_id": f"in_{key}_{i}",
                "number": f"INV-{key}-{i:04d}",
                "subscription_external_id": sub["external_id"],
                "status": "paid",
                "currency": currency,
                "created_at": ts(start),
                "period_start": ts(start),
                "period_end": ts(end),
                "due_at": None,
                "paid_at": ts(start + timedelta(minutes=5)),
                "subtotal": amount,
                "discount_total": 0,
                "tax": 0,
                "tax_breakdown": [],
                "total": amount,
                "amount_paid": amount,
                "amount_due": 0,
                "balance_applied": 0,
                "paid_out_of_band": False,
                "metadata": {},
                "lines": [
                    {
                        "external_id": f"il_{key}_{i}",
                        "description": "1 x Pro",
                        "amount": amount,
                        "quantity": 1,
                        "period_start": ts(start),
                        "period_end": ts(end),
                        "proration": False,
                        "plan_code": "price_pro_monthly",
                    }
                ],
            }
        )
        payments.append(
            {
                "external_id": f"ch_{key}_{i}",
                "invoice_external_id": f"in_{key}_{i}",
                "amount": amount,
                "currency": currency,
                "status": "succeeded",
                "method": "card",
                "payment_method_id": f"pm_{key}",
                "reference": None,
                "paid_at": ts(start + timedelta(minutes=5)),
            }
        )
    refunds = []
    if payments:
        refunds.append(
            {
                "external_id": f"re_{key}",
                "payment_external_id": payments[0]["external_id"],
                "amount": max(1, amount // 4),
                "currency": currency,
                "reason": "requested_by_customer",
                "method": "card",
                "reference": None,
                "created_at": ts(BASE + timedelta(days=3)),
            }
        )
    return {
        "user_id": user_id,
        "source": "stripe",
        "source_ref": f"mig_{key}",
        "customer": {
            "external_id": f"cus_{key}",
            "email": f"{key}@example.com",
            "name": f"User {key}",
            "currency": currency,
            "balance": -250,
            "payment_method_ids": [f"pm_{key}"],
            "metadata": {"app_user": user_id},
        },
        "subscriptions": [sub],
        "discounts": [
            {
                "external_id": f"di_{key}",
                "subscription_external_id": sub["external_id"],
                "coupon_code": "LAUNCH",
                "percent_off_bp": 1250,
                "amount_off": None,
                "currency": None,
                "duration": "repeating",
                "duration_in_months": 3,
                "starts_at": ts(BASE),
                "ends_at": ts(_month(3)),
            }
        ],
        "invoices": invoices,
        "payments": payments,
        "refunds": refunds,
    }
