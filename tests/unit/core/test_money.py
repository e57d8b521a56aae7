from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidAmount, UnknownCurrency
from core.money import Money, exponent


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("12.50", "EUR", 1250),
        ("12,50", "eur", 1250),
        ("1200", "JPY", 1200),
        ("1,200", "JPY", 1200),
        ("1.250", "BHD", 1250),
        ("0.001", "KWD", 1),
        ("1 234.56", "USD", 123456),
        ("1.234,56", "EUR", 123456),
    ],
)
def test_parse_what_people_type_into_exact_minor_units(typed, currency, minor):
    assert Money.parse(typed, currency) == Money(currency.upper(), minor)


@pytest.mark.parametrize(
    ("typed", "currency", "message"),
    [
        ("0", "EUR", "greater than zero"),
        ("-5", "EUR", "greater than zero"),
        ("12.505", "EUR", "more decimals than EUR allows"),
        ("1.5", "JPY", "more decimals than JPY allows"),
        ("1.2345", "BHD", "more decimals than BHD allows"),
        ("abc", "EUR", "not a number"),
        ("nan", "EUR", "not a finite number"),
        ("5000000", "EUR", "above the ceiling"),
    ],
)
def test_parse_refuses_bad_amounts_with_a_reason(typed, currency, message):
    with pytest.raises(InvalidAmount, match=message):
        Money.parse(typed, currency)


def test_unknown_currency_is_refused():
    with pytest.raises(UnknownCurrency, match="XXX"):
        Money.parse("1", "XXX")
    with pytest.raises(UnknownCurrency):
        Money("ZZZ", 1)


def test_exponents_of_zero_and_three_decimal_currencies():
    assert (exponent("JPY"), exponent("EUR"), exponent("BHD")) == (0, 2, 3)


def test_money_refuses_floats_and_mixed_currencies():
    with pytest.raises(InvalidAmount):
        Money("EUR", 12.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="cannot combine"):
        Money("EUR", 1) + Money("USD", 1)


def test_format_uses_the_currency_exponent():
    assert Money("JPY", 1200).format() == "1200 JPY"
    assert Money("BHD", 1250).format() == "1.250 BHD"
    assert Money("EUR", -5).format() == "-0.05 EUR"


@given(st.integers(min_value=1, max_value=10**8), st.sampled_from(["EUR", "JPY", "BHD", "GBP"]))
def test_format_then_parse_round_trips(amount, currency):
    money = Money(currency, amount)
    assert Money.parse(str(money.decimal()), currency, max_major=10**9) == money
