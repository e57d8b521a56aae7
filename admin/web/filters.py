"""Jinja filters and the small pure helpers pages share (money, dates, diffs).

Money is shown as people read it: babel formats the exact decimal (integer minor
units → ``Decimal``, never a float) by currency and the admin's locale
(``TWINBILL_ADMIN_LOCALE``, default en_US): ``¥12,000``, ``€12.50``,
``KWD12.345``. Minor units are never shown raw, also not in the activity log's
diffs (an ``amount`` next to a ``currency`` is formatted there too).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal, get_currency_precision
from jinja2 import Environment

from admin.web.auth import mask_email
from core.errors import TwinbillError
from core.money import Money, exponent

_locale = {"name": "en_US"}
#: keys of audit/diff dicts that hold minor units of the dict's ``currency``
MONEY_KEYS = frozenset(
    {"amount", "unit_amount", "total", "subtotal", "amount_paid", "amount_due", "refunded"}
)

STATE_TONES = {
    "legacy": "neutral",
    "new": "good",
    "migrating": "info",
    "failed": "bad",
    "held": "warn",
    "succeeded": "good",
    "running": "info",
    "pending": "neutral",
    "deferred": "warn",
    "retrying": "warn",
    "compensated": "warn",
    "dry_run": "neutral",
    "done": "good",
    "paused": "warn",
    "halted": "bad",
    "created": "neutral",
    "queued": "neutral",
    "ok": "good",
    "error": "bad",
    "active": "good",
    "trialing": "info",
    "past_due": "warn",
    "canceled": "neutral",
    "paid": "good",
    "open": "info",
    "void": "neutral",
    "uncollectible": "bad",
    "succeeded_payment": "good",
}


def money(amount: int | None, currency: str | None, locale: str | None = None) -> str:
    if amount is None or not currency:
        return "—"
    try:
        value = Money(currency.upper(), int(amount))
        digits = exponent(value.currency)
    except (TwinbillError, ValueError, TypeError):
        return f"{amount} {currency} (minor units)"
    loc = locale or _locale["name"]
    exact = get_currency_precision(value.currency) == digits
    return format_currency(
        value.decimal(),
        value.currency,
        locale=loc,
        currency_digits=exact,
        decimal_quantization=exact,  # never round a currency babel knows with other digits
    )


def number(value: int | float | None, locale: str | None = None) -> str:
    if value is None:
        return "—"
    return format_decimal(value, locale=locale or _locale["name"])


def when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return value.strftime("%Y-%m-%d %H:%M")


def tone(state: str | None) -> str:
    return STATE_TONES.get(str(state or ""), "neutral")


def safe_next(url: str | None) -> str:
    """Only local admin paths are followed after sign-in (no open redirect)."""
    if url and url.startswith("/admin") and not url.startswith("//") and "\\" not in url:
        return url
    return "/admin/search"


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """A record with its minor-unit amounts formatted in its own currency."""
    currency = data.get("currency")
    if not isinstance(currency, str):
        return data
    return {
        k: money(v, currency)
        if k in MONEY_KEYS and isinstance(v, int) and not isinstance(v, bool)
        else v
        for k, v in data.items()
    }


def version_diff(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """git-style lines between two versions of a record: (' '|'-'|'+', 'key: value')."""
    before, after = _shown(before or {}), _shown(after or {})
    lines: list[tuple[str, str]] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            lines.append((" ", f"{key}: {_value(old)}"))
            continue
        if key in before:
            lines.append(("-", f"{key}: {_value(old)}"))
        if key in after:
            lines.append(("+", f"{key}: {_value(new)}"))
    return lines


def set_locale(name: str) -> None:
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError):
        from core.errors import ConfigurationError

        raise ConfigurationError(
            f"TWINBILL_ADMIN_LOCALE: {name!r} is not a locale (e.g. en_US, de_DE)"
        ) from None
    _locale["name"] = name


def install(env: Environment, locale: str = "en_US") -> None:
    set_locale(locale)
    env.filters.update(money=money, number=number, when=when, tone=tone, mask=mask_email)
    env.globals.update(version_diff=version_diff)
