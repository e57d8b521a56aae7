"""Canonical tax rates and next-charge previews: exact percentages, balance sign."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from core.canonical import BillingState, NextCharge, TaxRate


def test_tax_rate_keeps_percentage_exact_and_refuses_more_than_four_places() -> None:
    assert TaxRate(id="txr_1", display_name="VAT", percentage=8.875).percentage == Decimal("8.875")
    assert str(TaxRate(id="txr_1", display_name="VAT", percentage="19.00").percentage) == "19"
    assert str(TaxRate(id="txr_1", display_name="VAT", percentage=100).percentage) == "100"
    with pytest.raises(ValidationError):
        TaxRate(id="txr_1", display_name="VAT", percentage="19.00001")
    with pytest.raises(ValidationError):
        TaxRate(id="txr_1", display_name="VAT", percentage="101")


def test_next_charge_balance_applied_is_credit_positive_debt_negative() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    credit = NextCharge(
        id="sub_1", currency="eur", state=BillingState.RENEWING, charge_at=at,
        subtotal=990, total=990, amount_due=490,
    )  # fmt: skip
    debt = credit.model_copy(update={"amount_due": 1490})
    assert credit.currency == "EUR"
    assert credit.balance_applied == 500
    assert debt.balance_applied == -500
