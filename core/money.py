"""Exact money: integer minor units plus an ISO 4217 currency.

Floats never touch an amount. Parsing what a person types ("12.50" EUR,
"1200" JPY, "1.250" BHD) goes through ``Decimal`` and refuses anything that
does not fit the currency's exponent instead of rounding it away.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from core.errors import InvalidAmount, UnknownCurrency

# ISO 4217 active codes with their minor-unit exponent. Written out because the
# table is small, stable and must not depend on the host's locale data.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP
        BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
        GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT
        LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN
        NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP
        SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES
        WST XCD YER ZAR ZMW ZWG""".split(),
        2,
    ),
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}

#: Amounts above this many major units are refused as absurd unless a caller
#: passes its own ceiling; a billing typo of 10^12 must not reach a ledger.
DEFAULT_MAX_MAJOR_UNITS = 1_000_000


def exponent(currency: str) -> int:
    """Minor-unit exponent of an ISO 4217 code (case-insensitive)."""
    try:
        return _EXPONENTS[currency.upper()]
    except (KeyError, AttributeError):
        raise UnknownCurrency(f"unknown currency {currency!r} (not an ISO 4217 code)") from None


def is_currency(currency: str) -> bool:
    return isinstance(currency, str) and currency.upper() in _EXPONENTS


def _normalise_separators(text: str) -> str:
    """'1,200.50' / '1.200,50' / '12,50' / '1,200' -> a plain decimal string.

    With both separators the last one is the decimal point. A lone comma
    followed by exactly three digits is a thousands separator ("1,200" JPY),
    otherwise a decimal comma ("12,50" EUR).
    """
    if "," in text and "." in text:
        if text.rfind(",") > text.rfind("."):
            return text.replace(".", "").replace(",", ".")
        return text.replace(",", "")
    if text.count(",") == 1 and len(text.split(",")[1]) != 3:
        return text.replace(",", ".")
    return text.replace(",", "")


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in minor units of one currency (cents, yen, fils)."""

    currency: str
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidAmount(f"amount must be an integer of minor units, got {self.amount!r}")
        object.__setattr__(self, "currency", self.currency.upper())
        exponent(self.currency)

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(currency=currency, amount=amount)

    @classmethod
    def parse(cls, text: str, currency: str, *, max_major: int | None = None) -> Money:
        """Parse a human-typed amount in major units ("12.50", "1 200", "1,200.5")."""
        exp = exponent(currency)
        cleaned = str(text).strip().replace(" ", "").replace("_", "").replace("\u00a0", "")
        cleaned = _normalise_separators(cleaned)
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise InvalidAmount(f"{text!r} is not a number") from None
        if not value.is_finite():
            raise InvalidAmount(f"{text!r} is not a finite number")
        minor = value.scaleb(exp)
        if minor != minor.to_integral_value():
            raise InvalidAmount(
                f"{text!r} has more decimals than {currency.upper()} allows ({exp})"
            )
        money = cls(currency=currency, amount=int(minor))
        money.check_positive(max_major=max_major)
        return money

    def check_positive(self, *, max_major: int | None = None) -> Money:
        """Refuse zero, negative and absurdly large amounts (for payments and refunds)."""
        if self.amount <= 0:
            raise InvalidAmount(f"amount must be greater than zero, got {self.format()}")
        ceiling = (max_major if max_major is not None else DEFAULT_MAX_MAJOR_UNITS) * (
            10 ** exponent(self.currency)
        )
        if self.amount > ceiling:
            raise InvalidAmount(
                f"amount {self.format()} is above the ceiling of "
                f"{Money(self.currency, ceiling).format()}"
            )
        return self

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            return NotImplemented  # type: ignore[return-value]
        if other.currency != self.currency:
            raise InvalidAmount(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.amount + other.amount)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.amount - other.amount)

    def __neg__(self) -> Money:
        return Money(self.currency, -self.amount)

    def decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def format(self) -> str:
        exp = exponent(self.currency)
        return f"{self.decimal():.{exp}f} {self.currency}"

    def __str__(self) -> str:
        return self.format()
