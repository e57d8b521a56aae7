"""Jinja filters and the small pure helpers pages share (money, dates, diffs)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment

from admin.web.auth import mask_email
from core.errors import TwinbillError
from core.money import Money

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


def money(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return "—"
    try:
        return Money(currency, int(amount)).format()
    except TwinbillError:
        return f"{amount} {currency} (minor units)"


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


def version_diff(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """git-style lines between two versions of a record: (' '|'-'|'+', 'key: value')."""
    before, after = before or {}, after or {}
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


def install(env: Environment) -> None:
    env.filters.update(money=money, when=when, tone=tone, mask=mask_email)
    env.globals.update(version_diff=version_diff)
