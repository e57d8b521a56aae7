"""ISO 4217 currency codes with their minor-unit exponents.

Money in this service is always an integer count of minor units, so the exponent
is what tells a client how to display ``1000``: 10.00 EUR, 1000 JPY, 1.000 BHD.
The table is written out here (not taken from a library) because the service
must share no code with the orchestrator, and an unknown code must be rejected
rather than guessed.
"""

from __future__ import annotations

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES "
    "KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK "
    "MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR "
    "SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD "
    "TWD TZS UAH USD USN UZS VED VES WST XCD YER ZAR ZMW ZWL"
)

EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _TWO.split()},
    **{code: 0 for code in _ZERO.split()},
    **{code: 3 for code in _THREE.split()},
    **{code: 4 for code in _FOUR.split()},
}


def is_known(code: str) -> bool:
    """True for an uppercase ISO 4217 code in the table (lowercase is not accepted)."""
    return code in EXPONENTS


def exponent(code: str) -> int:
    """Number of decimal places of the minor unit; KeyError for an unknown code."""
    return EXPONENTS[code]
