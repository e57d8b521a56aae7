"""Readings that differ by legacy dialect, and tax rates. Pure: no I/O, no ``stripe``.

``current`` is real Stripe at the SDK's API version; ``localstripe`` is the emulator's
older API *and its quirks*. Each localstripe correction here is a gap written in
docs/legacy-gaps.md; shared code never guesses which server it talks to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from core.canonical import TaxRate
from core.errors import TransformError
from multiplexer.backends.stripe_fields import Obj, amount, build, req, rid, ts

#: ``current``: real Stripe at the SDK's API version; ``localstripe``: the emulator's
#: older API *and its quirks* (docs/legacy-gaps.md). Only the readings that differ take it.
Dialect = Literal["current", "localstripe"]


def customer_balance(cus: Obj, *, dialect: Dialect = "current") -> int:
    """The customer's balance in Stripe's sign: negative is credit owed to the customer.

    ``balance`` (current API) and ``account_balance`` (old API) share that sign on
    Stripe. localstripe never returns ``balance`` and stores ``account_balance`` as
    *minus* the balance it was given (a credit of 500 reads ``account_balance: 500``,
    docs/legacy-gaps.md), so its dialect flips it back: a credit stays a credit.
    """
    record = rid(cus)
    if "balance" in cus and cus["balance"] is not None:
        return amount(cus, "balance", record=record)
    raw = amount(cus, "account_balance", default=0, record=record)
    return -raw if dialect == "localstripe" else raw


def map_tax_rate(obj: Any, record: str) -> TaxRate:
    """A ``tax_rate`` object (expanded; localstripe always expands ``default_tax_rates``)."""
    if not isinstance(obj, Mapping):
        raise TransformError(
            f"tax rate is not expanded: {obj!r}", record=record, field="default_tax_rates"
        )
    tr = rid(obj)
    try:
        pct = Decimal(str(req(obj, "percentage")))
    except InvalidOperation:
        raise TransformError(
            f"not a percentage: {obj.get('percentage')!r}", record=tr, field="percentage"
        ) from None
    return build(
        TaxRate,
        tr,
        id=tr,
        legacy_id=tr,
        display_name=obj.get("display_name") or tr,
        percentage=pct,
        inclusive=bool(obj.get("inclusive")),
        jurisdiction=obj.get("jurisdiction"),
        country=obj.get("country"),
    )


def localstripe_trial(sub: Obj, now: datetime) -> bool:
    """localstripe keeps a trial ``incomplete`` with a future ``trial_end`` (legacy-gaps)."""
    end = ts(sub, "trial_end")
    return sub.get("status") == "incomplete" and end is not None and end > now
